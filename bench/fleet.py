"""The benchmark's modes without a directory: simulated agents (bench/simagents.py) in place of pta-agent + AD.

    bench/run --costs [--signins 40]                 Redis commands and SQL statements per whole sign-in, local
                                                     and relayed, each command listed (production profile)
    bench/run --costs --profile embedded [--warm N] [--py-spy 1]
                                                     one embedded node: SQL statements and CPU per sign-in; with
                                                     --py-spy (either profile) the nodes' CPU by component
    bench/run --soak N [--profile production]        N whole sign-ins (80 % good over 200 accounts, 10 % wrong
                                                     password, 10 % unknown name); memory every 1,000
    bench/run --fleet 1,10,100,1000 [--tenants 1,100] agent fleets on two nodes: memory per agent, hand-off time,
                                                     reconnect after a node restart, sign-in rate with the fleet

Everything runs in the benchmark's private network namespace with its own PostgreSQL and Redis (bench/README.md).
The simulated directory answers after --cost-ms (5 ms): times are reported with that cost taken out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench import components, direct, sqlcount
from bench.fleet_seed import tenant_domain
from bench.loadgen import Client, HTTPError
from bench.simagents import FLEET_PASSWORD
from bench.sqlcount import statement_kind

REPO = Path(__file__).resolve().parents[1]
SOAK_ACCOUNTS = 200
SOAK_SAMPLE_EVERY = 1000
SOAK_CLIENTS = 8
MAX_SOAK_SIGNINS = 200_000
MAX_FLEET_AGENTS = 10_000
HANDOFF_WINDOW_SECONDS = 3.0
IDLE_WINDOW_SECONDS = 10.0  # web1's CPU with its fleet connected and no sign-in
RATE_WINDOW_SECONDS = 5.0
RATE_CONCURRENCY = 16
RECONNECT_LIMIT_SECONDS = 300.0
SIMULATOR_LOAD_LIMIT_SECONDS = 1200.0
PROFILE_RATE = 250  # --costs --py-spy: samples per second of every node
FLEET_USERS = 40  # signed in once on each node before a level's windows, then over and over in them


def log(*args) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


# --- pieces shared by the modes ---------------------------------------------------------------------------

def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def redis_used_memory(url: str) -> int:
    import redis

    with redis.Redis.from_url(url) as client:
        return int(client.info("memory")["used_memory"])


@dataclass
class Fleet:
    """The simulated agents' processes and their configs."""

    portal: object
    state: Path
    cost_ms: float
    configs: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)

    def grow(self, node, *, total: int, tenants: int) -> float:
        """Register agents up to ``total`` (agent j to tenant j mod ``tenants``) and run the new ones in one more
        process. Returns the seconds registration took."""
        first, count = len(self.configs), total - len(self.configs)
        if count <= 0:
            return 0.0
        started = time.monotonic()
        tokens = seed(self.portal, tenants=tenants, agents=count, first=first)
        tokens_file = self.state / f"tokens-{first}.json"
        tokens_file.write_text(json.dumps(tokens))
        tokens_file.chmod(0o600)
        result = subprocess.run([sys.executable, str(REPO / "bench" / "simagents.py"), "register", "--portal",
                                 node.url, "--tokens", str(tokens_file), "--out", str(self.state / "agents"),
                                 "--first", str(first)], capture_output=True, text=True, timeout=3600, check=False)
        tokens_file.unlink()
        if result.returncode != 0:
            raise SystemExit(f"registering simulated agents failed:\n{result.stderr[-3000:]}")
        new = json.loads(result.stdout.strip().splitlines()[-1])
        seconds = time.monotonic() - started
        self.configs += new
        configs_file = self.state / f"configs-{first}.json"
        configs_file.write_text(json.dumps(new))
        log_path = self.state / f"simagents-{first}.log"
        log_file = log_path.open("ab")
        self.procs.append(subprocess.Popen([sys.executable, str(REPO / "bench" / "simagents.py"), "run", "--configs",
                                            str(configs_file), "--cost-ms", str(self.cost_ms)],
                                           stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True))
        # The simulator loads every agent's key and certificate before the first connects (minutes for thousands
        # on a loaded machine): the connect time counts from its "running" line, not from its start.
        loading = time.monotonic()
        while b"simulated agent(s)" not in log_path.read_bytes()[:4096]:
            if self.procs[-1].poll() is not None or time.monotonic() - loading > SIMULATOR_LOAD_LIMIT_SECONDS:
                raise SystemExit(f"the simulator of agents {first}… did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        log(f"  simulator of {count} agent(s) loaded in {time.monotonic() - loading:.1f} s")
        return seconds

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def seed(portal, *, tenants: int, agents: int, first: int = 0) -> list[str]:
    result = subprocess.run([sys.executable, str(REPO / "bench" / "fleet_seed.py"), "--tenants", str(tenants),
                             "--agents", str(agents), "--first", str(first)], cwd=REPO, env=portal.env,
                            capture_output=True, text=True, timeout=3600, check=False)
    if result.returncode != 0:
        raise SystemExit(f"bench/fleet_seed.py failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def fleet_users(tenants_with_agents: int, per_tenant: int = 20, *, total: int = 0) -> list[dict]:
    """Users of the tenants that have agents: ``per_tenant`` each, or ``total`` spread over them in turn."""
    if total:
        return [{"upn": f"user{i // tenants_with_agents}@{tenant_domain(i % tenants_with_agents)}",
                 "password": FLEET_PASSWORD} for i in range(total)]
    return [{"upn": f"user{k}@{tenant_domain(t)}", "password": FLEET_PASSWORD}
            for k in range(per_tenant) for t in range(tenants_with_agents)]


def wait_connected(node, count: int, limit: float) -> float | None:
    """Seconds until ``count`` agents are connected to ``node`` (its /metrics), None past ``limit``."""
    from tests.fixtures.portal import local_agents

    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            if local_agents(node) >= count:
                return time.monotonic() - started
        except Exception:  # noqa: BLE001, S110 - a node starting answers nothing yet
            pass
        time.sleep(0.2)
    with contextlib.suppress(Exception):
        log(f"  {local_agents(node)} of {count} agents connected to {node.name} after {limit:.0f} s")
    return None


def new_portal(profile: str, nodes: int, *, extra_env: dict[str, str] | None = None):
    from bench.benchmark import start_daphne
    from tests.fixtures.portal import make_portal

    # Every simulated agent connects from 127.0.0.1, where a real fleet comes from its organisations' addresses: one
    # address may hold as many openings as the node (PTA_AGENT_OPENINGS_PER_ADDRESS), or the fleet would meet the
    # per-address share no real storm meets.
    timings = {"PTA_AGENT_HEARTBEAT_SECONDS": "10", "PTA_PRESENCE_FLUSH_SECONDS": "2",
               "PTA_LAST_SEEN_SECONDS": "30", "PTA_LOG_LEVEL": "WARNING", "PTA_AGENT_OPENINGS_PER_ADDRESS": "256",
               # a fresh Redis holds no keys of a previous release: the lockout as after an upgrade's period
               "PTA_LOCKOUT_UPGRADE_SECONDS": "0"}
    portal = make_portal(profile, timings=timings)
    portal.env.update(extra_env or {})
    started = [start_daphne(portal, f"web{i + 1}") for i in range(nodes)]
    return portal, started


def keep_errors(portal, report: dict) -> None:
    """Before the portal's directory goes: every node's lines around its first tracebacks, into the report."""
    for node in portal.nodes:
        if not node.log_path.exists():  # a 5,000-agent run lost one: the run's figures must not go with it
            continue
        lines = node.log().splitlines()
        starts = [i for i, line in enumerate(lines) if "Traceback" in line][:3]
        if starts:
            report.setdefault("portal_log_errors", {})[node.name] = [
                "\n".join(lines[max(0, i - 3):i + 40]) for i in starts]
            log(f"{node.name} logged {sum('Traceback' in line for line in lines)} traceback(s); the first ones are "
                "in the JSON (portal_log_errors)")


# --- --costs: Redis commands and SQL statements per sign-in ------------------------------------------------

def statement_lines(log_path: Path, offset: int) -> tuple[list[str], int]:
    """PostgreSQL's log_statement=all lines written since ``offset``: the statements, and the new offset."""
    with log_path.open("rb") as handle:
        handle.seek(offset)
        text = handle.read()
    statements = []
    for line in text.decode("utf-8", "replace").splitlines():
        if match := re.search(r"LOG:\s+(?:statement|execute [^:]*):\s*(.*)", line):
            statements.append(match.group(1))
    return statements, offset + len(text)


async def sequential_signins(node, users: list[dict], count: int, timings: list[str] | None = None) -> Counter:
    from bench.benchmark import Failure, post_password, walk_username

    outcomes: Counter = Counter()
    async with Client(node.url) as client:
        for i in range(count):
            user = users[i % len(users)]
            try:
                session = await walk_username(client, user["upn"])
                outcome, _ = await post_password(client, session, user["password"], timings)
            except (Failure, HTTPError) as exc:
                outcome = f"error:{type(exc).__name__}"
            outcomes[outcome] += 1
    return outcomes


def monitored_commands(redis_url: str, action) -> list[str]:
    """Every Redis command run while ``action()`` runs (MONITOR), the command names with their first key."""
    import redis

    lines: list[str] = []
    client = redis.Redis.from_url(redis_url)
    monitor = client.monitor()
    with monitor as stream:
        stream.connection.send_command("MONITOR")
        stream.connection.read_response()
        action()
        client.ping()  # the marker: everything before it was the action's
        for item in stream.listen():
            command = item["command"]
            if command.upper() == "PING":
                break
            lines.append(command)
    client.close()
    while lines and lines[-1].split()[0].upper() in ("HELLO", "SELECT", "CLIENT"):
        lines.pop()  # the marker's connection being opened
    return lines


def command_shape(command: str, prefix: str) -> str:
    """`GET pta:cache:…` → `GET cache:<key>`: the name and what its first key is, without the key's secret part."""
    parts = command.split()
    name = parts[0].upper() if parts else "?"
    key = parts[1].strip('"') if len(parts) > 1 else ""
    if key.startswith(prefix):
        key = key[len(prefix):].lstrip(":")
        key = re.sub(r"[0-9a-f]{16,}|[0-9a-z]{32}|[0-9a-f-]{36}", "…", key)
    elif name in ("EVALSHA", "EVAL"):
        key = ""
    return f"{name} {key}".strip()


def run_costs(args, services, report: dict, *, out: Path | None = None, name: str = "") -> None:
    """Whole sign-ins one at a time, what each costs. Production: two nodes, one simulated agent on web1, sign-ins
    on web1 (local), then on web2 (relayed); INFO commandstats and PostgreSQL's statement log around each, MONITOR
    around one of each. Embedded: one node, the agent on it; the node counts its SQLite statements
    (bench/sqlcount.py). CPU of every node and of the agent from their process counters in both; with --py-spy,
    each placement once more with py-spy on every node, its samples split by component (bench/profile_buckets.py)."""
    production = args.profile == "production"
    sql_log = None
    extra_env = {}
    if not production:
        sql_log = Path(tempfile.mkdtemp(prefix="pta-bench-sql-")) / "statements"
        extra_env = {"DJANGO_SETTINGS_MODULE": "bench.sqlcount_settings", "BENCH_SQL_LOG": str(sql_log)}
    portal, nodes = new_portal(args.profile, 2 if production else 1, extra_env=extra_env)
    fleet = Fleet(portal, Path(portal.directory), args.cost_ms)
    try:
        fleet.grow(nodes[0], total=1, tenants=1)
        if wait_connected(nodes[0], 1, 30) is None:
            raise SystemExit("the simulated agent did not connect")
        users = fleet_users(1, per_tenant=10)
        for node in nodes:  # users exist, keys and routes are cached, connections open
            asyncio.run(sequential_signins(node, users, max(len(users), args.warm)))
        import redis

        rows: list[dict] = []
        # CPU of each node and of the simulated agent per sign-in (process counters: one at a time, so what a
        # sign-in costs each, not what waiting for a busy CPU does to its latency).
        cpu_groups = {**{f"daphne_{n.name}": [n.proc.pid] for n in nodes},
                      "agent": [proc.pid for proc in fleet.procs]}
        # PostgreSQL's (its statement log on: dearer than without) and Redis's, apart: not the portal's figure.
        service_groups = ({"postgres": [services.postmaster_pid()], "redis": [services.redis.pid]}
                          if production and services and services.redis is not None else {})
        placements = (("local", nodes[0]), ("relayed", nodes[1])) if production else (("local", nodes[0]),)
        for placement, node in placements:
            client = redis.Redis.from_url(services.redis_url) if production else None
            before = components.redis_command_calls(client) if client else Counter()
            offset = statement_offset(services, sql_log)
            timings: list[str] = []
            cpu_before = components.group_cpu_seconds({**cpu_groups, **service_groups})
            outcomes = asyncio.run(sequential_signins(node, users, args.signins, timings))
            cpu_after = components.group_cpu_seconds({**cpu_groups, **service_groups})
            after = components.redis_command_calls(client) if client else Counter()
            if client:
                client.close()
            statements = statements_since(services, sql_log, offset)
            ok = outcomes.get("success", 0)
            commands = after - before
            commands.pop("info", None)
            cpu_ms = {k: round((cpu_after[k] - cpu_before[k]) * 1000 / max(1, ok), 3) for k in cpu_groups}
            row: dict = {
                "placement": placement, "signins": sum(outcomes.values()), "outcomes": dict(outcomes),
                "cpu_ms_per_signin": cpu_ms,
                "sql_per_signin": round(len(statements) / max(1, ok), 2),
                "sql_by_kind": {k: round(v / max(1, ok), 2) for k, v in Counter(statements).most_common()},
                "password_post_server_timing_ms": mean_timing(timings),
            }
            row["portal_cpu_ms_per_signin"] = round(sum(v for k, v in cpu_ms.items() if k.startswith("daphne_")), 3)
            if service_groups:
                row["services_cpu_ms_per_signin"] = {
                    k: round((cpu_after[k] - cpu_before[k]) * 1000 / max(1, ok), 3) for k in service_groups}
            if production:
                trace = monitored_commands(services.redis_url,
                                           lambda n=node: asyncio.run(sequential_signins(n, users[:1], 1)))
                row.update({"redis_commands_per_signin": round(commands.total() / max(1, ok), 2),
                            "redis_by_command": {k: round(v / max(1, ok), 2) for k, v in commands.most_common()},
                            "one_signin_redis": [command_shape(c, portal.redis_prefix) for c in trace]})
            if args.py_spy > 0 and out is not None:
                row["profile"] = profiled_window(args, nodes, node, users, cpu_groups, out, f"{name}-{placement}")
            rows.append(row)
            log(f"{placement}: {row.get('redis_commands_per_signin', '–')} Redis commands and "
                f"{row['sql_per_signin']} SQL statements per whole sign-in, CPU ms per sign-in "
                f"{row['cpu_ms_per_signin']}, outcomes {dict(outcomes)}")
        report["costs"] = rows
        report["costs_profile"] = args.profile
        report["failed"] = any(set(row["outcomes"]) != {"success"} for row in rows)
    finally:
        fleet.stop()
        keep_errors(portal, report)
        portal.close()
        if sql_log is not None:
            shutil.rmtree(sql_log.parent, ignore_errors=True)


def statement_offset(services, sql_log: Path | None) -> int:
    if sql_log is not None:
        return sqlcount.read_kinds(sql_log, 0)[1]
    return statement_lines(services.pg_dir / "log", 0)[1]


def statements_since(services, sql_log: Path | None, offset: int) -> list[str]:
    """The kinds (`SELECT tenant_user`) of the statements run since ``offset``: SQLite's counted by the node
    (already kinds), PostgreSQL's from its log."""
    if sql_log is not None:
        return sqlcount.read_kinds(sql_log, offset)[0]
    return [statement_kind(sql) for sql in statement_lines(services.pg_dir / "log", offset)[0]]


def mean_timing(headers: list[str]) -> dict[str, float]:
    """The mean of each Server-Timing step over the password POSTs (``gc``: the collector's pauses)."""
    from bench.benchmark import server_timing

    steps = [server_timing(h) for h in headers if h]
    names = dict.fromkeys(name for step in steps for name in step)
    return {name: round(sum(s.get(name, 0.0) for s in steps) / len(steps), 3) for name in names} if steps else {}


def profiled_window(args, nodes, node, users: list[dict], cpu_groups: dict, out: Path, stem: str) -> dict:
    """The placement's sign-ins once more with py-spy on every node (on-CPU samples: no --gil, no --idle; see
    bench/profile_buckets.py), stopped by SIGINT when they are done. Each component's ms per sign-in is its share
    of the samples times the nodes' counter CPU over the same sign-ins; ``coverage`` is the samples' time over
    that CPU (below 1: samples lost; above: threads runnable but waiting for a CPU, counted as running)."""
    from bench import profile_buckets

    py_spy = shutil.which("py-spy")
    if not py_spy:
        log("py-spy not found on PATH: no profile")
        return {}
    procs, files = [], []
    for n in nodes:
        path = out / f"{stem}-{n.name}.folded"
        procs.append(subprocess.Popen([py_spy, "record", "-r", str(PROFILE_RATE), "-p", str(n.proc.pid), "-f", "raw",
                                       "-o", str(path), "--nonblocking"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        files.append(path)
    time.sleep(1.0)  # py-spy attached to every node before the first sign-in
    cpu_before = components.group_cpu_seconds(cpu_groups)
    outcomes = asyncio.run(sequential_signins(node, users, args.signins))
    cpu_after = components.group_cpu_seconds(cpu_groups)
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:  # communicate, not wait: py-spy must never block on a full stderr pipe
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=5)
        if proc.returncode not in (0, -signal.SIGINT):
            log(f"py-spy exited {proc.returncode}: {err.decode()[-500:]}")
    ok = max(1, outcomes.get("success", 0))
    portal_ms = sum(cpu_after[k] - cpu_before[k] for k in cpu_groups if k.startswith("daphne_")) * 1000 / ok
    lines = profile_buckets.read_lines([f for f in files if f.exists()])
    counts = profile_buckets.bucket_counts(lines)
    samples = profile_buckets.on_cpu(counts)
    portal_seconds = portal_ms * ok / 1000
    return {"files": [f.name for f in files], "rate": PROFILE_RATE, "outcomes": dict(outcomes),
            "portal_cpu_ms_per_signin": round(portal_ms, 3), "samples": samples,
            "waiting_samples": counts.get(profile_buckets.WAITING, 0),
            "coverage": round(samples / PROFILE_RATE / portal_seconds, 2) if portal_seconds else None,
            "samples_by_component": dict(counts.most_common()),
            "ms_per_signin_by_component": profile_buckets.split_ms(counts, portal_ms),
            "top_frames": {c: profile_buckets.top_frames(lines, c, 3) for c, _ in counts.most_common(8)
                           if c != profile_buckets.WAITING}}


def costs_markdown(report: dict) -> str:
    rows = report["costs"]
    production = report.get("costs_profile", "production") == "production"
    lines = [f"### Redis commands and SQL statements per whole sign-in ({report.get('costs_profile', 'production')})",
             "", "| placement | sign-ins | Redis commands | SQL statements | CPU ms per sign-in | Redis by command "
             "| SQL by kind |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in row.get("cpu_ms_per_signin", {}).items())
        lines.append(f"| {row['placement']} | {row['signins']} | {row.get('redis_commands_per_signin', '–')} | "
                     f"{row['sql_per_signin']} | {cpu} | "
                     + (", ".join(f"{k} {v:g}" for k, v in row.get("redis_by_command", {}).items()) or "–") + " | "
                     + ", ".join(f"{k} {v:g}" for k, v in row["sql_by_kind"].items()) + " |")
    for row in rows:
        if "one_signin_redis" in row:
            lines += ["", f"One whole sign-in, {row['placement']}, every Redis command in order (MONITOR):", ""]
            lines += [f"{i + 1}. `{c}`" for i, c in enumerate(row["one_signin_redis"])]
    lines += profile_markdown(rows)
    if production:
        lines += ["", f"redis commands per sign-in local {rows[0]['redis_commands_per_signin']:g} relayed "
                  f"{rows[-1]['redis_commands_per_signin']:g}; sql statements per sign-in local "
                  f"{rows[0]['sql_per_signin']:g} relayed {rows[-1]['sql_per_signin']:g}"]
    else:
        lines += ["", f"sql statements per sign-in local {rows[0]['sql_per_signin']:g}"]
    lines += [f"cpu ms per sign-in {row['placement']} portal {row['portal_cpu_ms_per_signin']:g} agent "
              f"{row['cpu_ms_per_signin']['agent']:g}" for row in rows if "portal_cpu_ms_per_signin" in row]
    return "\n".join(lines) + "\n"


def profile_markdown(rows: list[dict]) -> list[str]:
    """The py-spy split of the nodes' CPU per sign-in by component, one column per profiled placement."""
    profiled = [row for row in rows if row.get("profile")]
    if not profiled:
        return []
    from bench.profile_buckets import ORDER

    lines = ["", "Where the nodes' CPU goes (py-spy on-CPU samples, the placement's sign-ins once more; ms per "
             "sign-in: a component's share of the samples times the nodes' counter CPU over those sign-ins):", "",
             "| component | " + " | ".join(row["placement"] for row in profiled) + " |",
             "| --- |" + " --- |" * len(profiled)]
    for name in ORDER:
        values = [row["profile"]["ms_per_signin_by_component"].get(name, 0.0) for row in profiled]
        if any(values):
            lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    lines.append("| **nodes' CPU ms per sign-in (profiled window)** | "
                 + " | ".join(f"{row['profile']['portal_cpu_ms_per_signin']:.2f}" for row in profiled) + " |")
    lines.append("| samples at work (coverage: their time ÷ counter CPU); waiting, left out | "
                 + " | ".join(f"{row['profile']['samples']} ({row['profile']['coverage']}); "
                              f"{row['profile'].get('waiting_samples', 0)}" for row in profiled) + " |")
    return lines


# --- --soak N ---------------------------------------------------------------------------------------------

def soak_mix(index: int, rng: random.Random, domain: str) -> dict:
    """80 % a good password of one of SOAK_ACCOUNTS accounts, 10 % a wrong one, 10 % an unknown name."""
    draw = rng.random()
    if draw < 0.8:
        return {"upn": f"user{rng.randrange(SOAK_ACCOUNTS)}@{domain}", "password": FLEET_PASSWORD, "want": "success"}
    if draw < 0.9:
        return {"upn": f"user{rng.randrange(SOAK_ACCOUNTS)}@{domain}", "password": "wrong-" + FLEET_PASSWORD,
                "want": "invalid_credentials"}
    return {"upn": f"nobody{index}@{domain}", "password": FLEET_PASSWORD, "want": "invalid_credentials"}


def growth_per_10k(samples: list[dict], key: str) -> float:
    """The least-squares slope of ``key`` (KiB) over sign-ins, per 10,000 sign-ins, after the first sample."""
    points = [(s["signins"], s[key]) for s in samples[1:] if s.get(key) is not None]
    if len(points) < 2:
        return float("nan")
    xs, ys = zip(*points, strict=True)
    slope = statistics.linear_regression(xs, ys).slope
    return round(slope * 10_000 / 1024, 2)  # MiB per 10k


def run_soak(args, services, report: dict) -> None:
    portal, nodes = new_portal(args.profile, 1)
    node = nodes[0]
    fleet = Fleet(portal, Path(portal.directory), args.cost_ms)
    redis_url = services.redis_url if (services and args.profile == "production") else ""
    try:
        fleet.grow(node, total=1, tenants=1)
        if wait_connected(node, 1, 30) is None:
            raise SystemExit("the simulated agent did not connect")
        total = min(args.soak, MAX_SOAK_SIGNINS)
        rng = random.Random(20261207)  # noqa: S311 - a reproducible mix, not a secret
        plan = [soak_mix(i, rng, tenant_domain(0)) for i in range(total)]
        samples: list[dict] = []

        def sample(done: int) -> None:
            row = {"signins": done, "portal_kib": rss_kib(node.proc.pid), "agent_kib": rss_kib(fleet.pids[0])}
            if redis_url:
                row["redis_kib"] = redis_used_memory(redis_url) // 1024
            samples.append(row)
            log(f"soak: {done} sign-ins, portal {row['portal_kib'] / 1024:.1f} MiB, agent "
                f"{row['agent_kib'] / 1024:.1f} MiB" + (f", Redis {row['redis_kib'] / 1024:.1f} MiB"
                                                          if redis_url else ""))

        outcomes = asyncio.run(soak_drive(node, plan, sample))
        report["soak"] = {
            "profile": args.profile, "signins": total, "outcomes": dict(outcomes), "samples": samples,
            "portal_mib_per_10k": growth_per_10k(samples, "portal_kib"),
            "agent_mib_per_10k": growth_per_10k(samples, "agent_kib"),
            "redis_mib_per_10k": growth_per_10k(samples, "redis_kib") if redis_url else None,
        }
        report["failed"] = outcomes.get("unexpected", 0) > 0
    finally:
        fleet.stop()
        keep_errors(portal, report)
        portal.close()


async def soak_drive(node, plan: list[dict], sample) -> Counter:
    from bench.benchmark import Failure, post_password, walk_username

    outcomes: Counter = Counter()
    position = [0]
    sample(0)

    async def client_loop() -> None:
        async with Client(node.url) as client:
            while position[0] < len(plan):
                attempt = plan[position[0]]
                position[0] += 1
                try:
                    session = await walk_username(client, attempt["upn"])
                    outcome, _ = await post_password(client, session, attempt["password"])
                except (Failure, HTTPError) as exc:
                    outcome = f"error:{type(exc).__name__}"
                outcomes[outcome] += 1
                if outcome != attempt["want"]:
                    outcomes["unexpected"] += 1
                done = sum(v for k, v in outcomes.items() if k != "unexpected")
                if done % SOAK_SAMPLE_EVERY == 0:
                    await asyncio.to_thread(sample, done)

    await asyncio.gather(*(client_loop() for _ in range(SOAK_CLIENTS)))
    return outcomes


def soak_markdown(report: dict) -> str:
    soak = report["soak"]
    lines = [f"### Soak: {soak['signins']} whole sign-ins, {soak['profile']} profile, one node, one simulated agent",
             "", f"Outcomes: {soak['outcomes']}", "", "| sign-ins | portal MiB | agent MiB | Redis MiB |",
             "| --- | --- | --- | --- |"]
    for s in soak["samples"]:
        redis_mib = f"{s['redis_kib'] / 1024:.1f}" if "redis_kib" in s else "–"
        lines.append(f"| {s['signins']} | {s['portal_kib'] / 1024:.1f} | {s['agent_kib'] / 1024:.1f} | {redis_mib} |")
    redis_part = (f" redis {soak['redis_mib_per_10k']:g} MiB" if soak["redis_mib_per_10k"] is not None else "")
    lines += ["", f"memory per 10k sign-ins: portal {soak['portal_mib_per_10k']:g} MiB agent "
                  f"{soak['agent_mib_per_10k']:g} MiB{redis_part}"]
    return "\n".join(lines) + "\n"


# --- --fleet 1,10,100,1000 --------------------------------------------------------------------------------

async def handoff_window(nodes, users: list[dict], *, concurrency: int, duration: float) -> dict:
    """Closed-loop whole sign-ins on every node in turn: the password POST's latency and the rate, and the mean of
    each step its Server-Timing names (signin/timing.py: the worker hops, the agent, the collector's pauses) over
    all of them and over the slowest 5 %."""
    from bench.benchmark import Failure, post_password, server_timing, walk_username

    latencies: list[float] = []
    timed: list[tuple[float, dict[str, float]]] = []
    outcomes: Counter = Counter()
    stop_at = time.monotonic() + duration

    async def loop(i: int) -> None:
        async with Client(nodes[i % len(nodes)].url) as client:
            n = i
            while time.monotonic() < stop_at:
                user = users[n % len(users)]
                n += concurrency
                timings: list[str] = []
                try:
                    session = await walk_username(client, user["upn"])
                    outcome, elapsed = await post_password(client, session, user["password"], timings)
                except (Failure, HTTPError) as exc:
                    outcome, elapsed = f"error:{type(exc).__name__}", float("nan")
                outcomes[outcome] += 1
                if outcome == "success":
                    latencies.append(elapsed)
                    timed.append((elapsed, server_timing(timings[0]) if timings else {}))

    started = time.monotonic()
    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    wall = time.monotonic() - started
    timed.sort(key=lambda sample: sample[0])

    def means(samples: list[tuple[float, dict[str, float]]]) -> dict[str, float]:
        names = {name for _, steps in samples for name in steps}
        return {name: round(statistics.fmean(steps.get(name, 0.0) for _, steps in samples), 2)
                for name in sorted(names)} if samples else {}

    return {"outcomes": dict(outcomes), "per_second": round(outcomes.get("success", 0) / wall, 1),
            **direct.latency_fields(latencies), "steps_mean_ms": means(timed),
            "steps_tail_mean_ms": means(timed[int(len(timed) * 0.95):])}


def presence_bytes(redis_url: str, prefix: str) -> dict:
    """Presence keys in Redis and their bytes (MEMORY USAGE of every agent record and tenant set)."""
    import redis

    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=f"{prefix}:presence:*", count=1000))
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.memory_usage(key, samples=0)
        sizes = pipe.execute() if keys else []
    agents = sum(1 for k in keys if b":presence:agent:" in k)
    return {"keys": len(keys), "agent_records": agents, "bytes": int(sum(s or 0 for s in sizes))}


def reconnect_after_restart(node, size: int, *, wait: str | None) -> dict:
    """Restart ``node`` (with PTA_AGENT_HANDSHAKE_WAIT_SECONDS=``wait``, or the default) and time its agents'
    return. Meanwhile a probe GETs the login page every 0.2 s (is the node serving people while its agents
    storm back?). Returns the seconds (None past the limit), the hellos told to try later, the node's CPU
    seconds since its start, and the probe's latencies and failures."""
    import threading

    import httpx

    from tests.fixtures.portal import node_metric

    if wait is None:
        node.env.pop("PTA_AGENT_HANDSHAKE_WAIT_SECONDS", None)
    else:
        node.env["PTA_AGENT_HANDSHAKE_WAIT_SECONDS"] = wait
    latencies: list[float] = []
    failures = [0]
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get(f"{node.url}/login/").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)  # seconds, as latency_fields takes them
                else:
                    failures[0] += 1
                stop.wait(0.2)

    node.restart()
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        seconds = wait_connected(node, size, RECONNECT_LIMIT_SECONDS)
    finally:
        stop.set()
        prober.join(15)
    refused = waited = refused_openings = None
    with contextlib.suppress(Exception):
        refused = int(node_metric(node, "pta_agent_handshakes_refused_total"))
        waited = int(node_metric(node, "pta_agent_handshakes_waited_total"))
        refused_openings = int(node_metric(node, "pta_agent_openings_refused_total"))
    return {"seconds": round(seconds, 1) if seconds is not None else None, "refused": refused, "waited": waited,
            "refused_openings": refused_openings,
            "portal_cpu_seconds": round(components.group_cpu_seconds({"web1": [node.proc.pid]})["web1"], 2),
            "probe": {"requests": len(latencies) + failures[0], "failures": failures[0],
                      **(direct.latency_fields(latencies) if latencies else {})}}


def wait_label(wait: str) -> str:
    return {"0": "fixed limit", "default": "adaptive (default wait)"}.get(wait, f"adaptive, wait {wait} s")


def run_fleet(args, services, report: dict) -> None:
    waits = [w.strip() for w in args.handshake_waits.split(",") if w.strip()] or ["default"]
    sizes = sorted({min(MAX_FLEET_AGENTS, max(1, int(n))) for n in args.fleet.split(",") if n.strip()})
    tenant_counts = [max(1, int(t)) for t in args.tenants.split(",") if t.strip()]
    report["fleet"] = []
    failed = False
    for tenants in tenant_counts:
        portal, nodes = new_portal("production", 2)
        fleet = Fleet(portal, Path(portal.directory), args.cost_ms)
        try:
            seed_started = time.monotonic()
            seed(portal, tenants=tenants, agents=0)
            log(f"fleet: {tenants} tenant(s) made in {time.monotonic() - seed_started:.1f} s")
            baseline_rss = rss_kib(nodes[0].proc.pid)
            one_agent_rate = None
            for size in sizes:
                before_rss = rss_kib(nodes[0].proc.pid)
                before_redis = redis_used_memory(services.redis_url)
                added = size - len(fleet.configs)
                registered = fleet.grow(nodes[0], total=size, tenants=tenants)
                connect = wait_connected(nodes[0], size, RECONNECT_LIMIT_SECONDS)
                time.sleep(3)  # a presence flush and a heartbeat round after the last hello
                row: dict = {"tenants": tenants, "agents": size, "register_seconds": round(registered, 1),
                             "connect_seconds": round(connect, 1) if connect is not None else None}
                after_rss = rss_kib(nodes[0].proc.pid)
                row["portal_kib_per_agent"] = round((after_rss - before_rss) / max(1, added), 1)
                row["portal_kib_over_baseline_per_agent"] = round((after_rss - baseline_rss) / size, 1)
                row["redis_bytes_per_agent"] = round((redis_used_memory(services.redis_url) - before_redis)
                                                     / max(1, added))
                row["presence"] = presence_bytes(portal.redis_url, portal.redis_prefix)
                # web1's own work for its fleet with no sign-in: heartbeats, presence flushes, last_seen
                idle = components.group_cpu_seconds({"web1": [nodes[0].proc.pid]})["web1"]
                time.sleep(IDLE_WINDOW_SECONDS)
                row["idle_cpu_percent"] = round((components.group_cpu_seconds({"web1": [nodes[0].proc.pid]})["web1"]
                                                 - idle) * 100 / IDLE_WINDOW_SECONDS, 1)
                users = fleet_users(min(size, tenants), total=FLEET_USERS)
                for node in nodes:  # the users exist and every route is known before anything is timed
                    asyncio.run(sequential_signins(node, users, len(users)))
                handoff = asyncio.run(handoff_window(nodes, users, concurrency=2, duration=HANDOFF_WINDOW_SECONDS))
                row["handoff"] = handoff
                row["handoff_p50_ms"] = round(handoff["p50_ms"] - args.cost_ms, 2)
                row["handoff_p99_ms"] = round(handoff["p99_ms"] - args.cost_ms, 2)
                rate = asyncio.run(handoff_window(nodes, users, concurrency=RATE_CONCURRENCY,
                                                  duration=RATE_WINDOW_SECONDS))
                row["rate"] = rate
                one_agent_rate = one_agent_rate or rate["per_second"]
                row["rate_vs_one_agent"] = round(rate["per_second"] / one_agent_rate, 2) if one_agent_rate else None
                # web1 restarted once per --handshake-waits value (PTA_AGENT_HANDSHAKE_WAIT_SECONDS; by default 0,
                # the fixed limit alone, then the default adaptive admission, which the node then keeps).
                row["reconnects"] = []
                for wait in waits:
                    restart = reconnect_after_restart(nodes[0], size, wait=None if wait == "default" else wait)
                    restart.update(wait=wait, label=wait_label(wait))
                    row["reconnects"].append(restart)
                    if wait in ("0", "default"):
                        row["reconnect_fixed" if wait == "0" else "reconnect_adaptive"] = restart
                    log(f"  reconnect after restart, {restart['label']}: {restart['seconds']} s, "
                        f"{restart['refused']} hellos told to try later, {restart.get('refused_openings')} openings, "
                        f"{restart['waited']} waited, web1 CPU "
                        f"{restart['portal_cpu_seconds']} s, login page p50 {restart['probe'].get('p50_ms')} p99 "
                        f"{restart['probe'].get('p99_ms')} ms")
                kept = row.get("reconnect_adaptive") or row["reconnects"][-1]
                row["reconnect_seconds"] = kept["seconds"]
                row["reconnect_portal_cpu_seconds"] = kept["portal_cpu_seconds"]
                reconnect = (kept["seconds"] if all(r["seconds"] is not None for r in row["reconnects"]) else None)
                row["simulator_kib"] = sum(rss_kib(pid) for pid in fleet.pids)
                bad = {k: v for k, v in [*handoff["outcomes"].items(), *rate["outcomes"].items()] if k != "success"}
                failed = failed or bool(bad) or connect is None or reconnect is None
                log(f"fleet: {tenants} tenant(s), {size} agents: connect {row['connect_seconds']} s, hand-off p50 "
                    f"{row['handoff_p50_ms']} p99 {row['handoff_p99_ms']} ms, portal {row['portal_kib_per_agent']} "
                    f"KiB/agent, Redis {row['redis_bytes_per_agent']} B/agent, rate {rate['per_second']}/s, "
                    f"reconnect {row['reconnect_seconds']} s" + (f", NOT ALL SUCCESS {bad}" if bad else ""))
                log(f"  web1 idle with its fleet: {row['idle_cpu_percent']} % of a CPU; the rate window's steps "
                    f"(mean ms) {rate['steps_mean_ms']}, slowest 5 % {rate['steps_tail_mean_ms']}")
                report["fleet"].append(row)
        finally:
            fleet.stop()
            keep_errors(portal, report)
            portal.close()
    report["failed"] = failed


def fleet_markdown(report: dict) -> str:
    lines = ["### Agent fleets (simulated agents, two nodes, every agent on web1)", "",
             "| tenants | agents | connect s | portal KiB / agent | Redis B / agent | presence keys / bytes | "
             "hand-off p50 / p99 ms | sign-ins / s (c=16) | ÷ one agent | reconnect after restart s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in report["fleet"]:
        lines.append(f"| {row['tenants']} | {row['agents']} | {row['connect_seconds']} | "
                     f"{row['portal_kib_per_agent']} | {row['redis_bytes_per_agent']} | "
                     f"{row['presence']['keys']} / {row['presence']['bytes']} | {row['handoff_p50_ms']} / "
                     f"{row['handoff_p99_ms']} | {row['rate']['per_second']} | {row['rate_vs_one_agent']} | "
                     f"{row['reconnect_seconds']} |")
    if any("reconnects" in row for row in report["fleet"]):
        lines += ["", "Reconnect after `web1`'s restart, per `PTA_AGENT_HANDSHAKE_WAIT_SECONDS` (0: the fixed limit "
                  "alone; the default: the adaptive admission); the login page probed every 0.2 s on `web1` "
                  "meanwhile:", "",
                  "| tenants | agents | admission | all back s | hellos told to try later | openings told to try "
                  "later | waited for a place | web1 CPU s | login page p50 / p99 ms (failures / requests) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in report["fleet"]:
            for r in row.get("reconnects", []):
                probe = r["probe"]
                lines.append(f"| {row['tenants']} | {row['agents']} | {r['label']} | {r['seconds']} | "
                             f"{r['refused']} | {r.get('refused_openings', '–')} | {r['waited']} | "
                             f"{r['portal_cpu_seconds']} | "
                             f"{probe.get('p50_ms', '–')} / "
                             f"{probe.get('p99_ms', '–')} ({probe['failures']} / {probe['requests']}) |")
    for tenants in dict.fromkeys(row["tenants"] for row in report["fleet"]):
        lines += ["", f"{tenants} tenant(s):"]
        for row in (r for r in report["fleet"] if r["tenants"] == tenants):
            lines.append(f"fleet {row['agents']} agents: hand-off p50 {row['handoff_p50_ms']:g} ms p99 "
                         f"{row['handoff_p99_ms']:g} ms, portal memory per agent {row['portal_kib_per_agent']:g} KiB, "
                         f"reconnect all {row['reconnect_seconds']} s")
    return "\n".join(lines) + "\n"


def main(args, services, out: Path, name: str) -> int:
    report: dict = {"started": name, "cost_ms": args.cost_ms, "machine": {"cpus": os.cpu_count()},
                    "load": os.getloadavg()}
    if args.costs:
        run_costs(args, services, report, out=out, name=name)
        text = costs_markdown(report)
    elif args.soak:
        run_soak(args, services, report)
        text = soak_markdown(report)
    else:
        run_fleet(args, services, report)
        text = fleet_markdown(report)
        from bench.plot import fleet_plot

        # This run's curves beside its results; docs/benchmark-fleet.png draws several runs' JSON together
        # (`python bench/plot.py fleet RUN.json … --out docs/benchmark-fleet.png`).
        with contextlib.suppress(Exception):  # a picture that fails must not lose the run's figures
            fleet_plot([report], [out / f"{name}.png"])
    report["load_after"] = os.getloadavg()
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{name}.md").write_text(text)
    print(text)
    log(f"results: {out / name}.json and .md; machine load average before {report['load']}, after "
        f"{report['load_after']}")
    return 1 if report.get("failed") else 0
