"""Pass-through sign-ins per second against the direct-bind ceiling, in one run (see bench/README.md).

    bench/run [--profile embedded|production] [--pin [DC:REST]] [--concurrency 2,8,32] [--duration 10]
              [--scaling] [--no-half-peak] [--ad-dir DIR] [--netns auto|yes|no] [--py-spy SECONDS]
              [--out bench/results]

1. Starts the Samba AD test bed (scripts/ad-testbed) in a fresh network namespace of its own (or reuses a
   running one with --ad-dir), so it never fights another run for the fixed ports 389/636. With --pin the DC
   runs alone on its CPUs (taskset) and everything else of the run on the others, as on separate machines.
2. Direct: LDAPS binds per second from N threads, each with one persistent ldap3 connection and rebind
   (get_info=NONE, read_server_info=False, password as bytes): "bind" alone, and "bind+read" (the bind plus
   the read-as-user search the agent does on every success), the denominator of both ratios.
3. Pass-through: a real portal (Daphne -v 0; embedded profile, or production = PostgreSQL + Redis, two nodes)
   and a real pta-agent on the same DC. Concurrent asyncio clients (bench/loadgen.py), each a closed loop:
   - mode "post": every measured request is one complete password POST (/login/password/ → 302 success) on a
     session whose username step was walked before the timed window (one pre-walked session per request);
   - mode "cycle": the whole two-step sign-in repeated (GET /login/, POST /login/, POST /login/password/).
   Every outcome must be "success": anything else fails the run (exit 1) after writing the results.
4. Per component over each timed window (bench/components.py): CPU of the Daphne nodes, the agents, the DC,
   PostgreSQL and Redis (process trees in /proc), Redis commands (INFO commandstats), busy share per CPU; at the
   end the peak RSS of every process. In production, two short windows with every sign-in on the agent's node
   and every one relayed from the other node.
5. --scaling: short whole sign-in windows with one and two nodes and one, two and four agents, and the bytes of
   the request each agent receives. Optional: py-spy records the Daphne and agent processes (--py-spy SECONDS).
6. Half peak (--no-half-peak skips it): Poisson arrivals at half the best whole sign-in rate, open loop, for
   direct binds + reads (bench/direct.py) and then for whole sign-ins: the latency the pass-through adds.
7. Writes the JSON, the Markdown table and a latency plot (bench/plot.py), and prints the table with the lines
   "whole sign-in ratio X.XX" and "password POST ratio X.XX" (whole sign-ins and password POSTs per second over
   direct bind + read per second), "latency added at half peak …" and "agent CPU beyond LDAP …".

Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench import components, direct  # noqa: E402 - needs REPO on sys.path
from bench.loadgen import Client, HTTPError  # noqa: E402
from bench.plot import latency_plot  # noqa: E402

AD_TESTBED = REPO / "scripts" / "ad_testbed.py"
INNER_FLAG = "--_in-netns"
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
MAX_REQUESTS_PER_WINDOW = 20000   # hard bound on any load loop, whatever the duration
MAX_PREWALK_SESSIONS = 6000
# Debian's PostgreSQL binaries, the newest version installed (bench/run installs it for --profile production).
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), default=Path("/usr/lib/postgresql/15/bin"),
             key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0)
PRIVATE_REDIS_URL = "redis://127.0.0.1:6379/0"
PLACEMENT_SECONDS = 5.0           # each of production's local-only and relayed-only windows
SCALING_AGENTS = (1, 2, 4)
REQUEST_SIZE_SAMPLES = 20         # sequential sign-ins per agent count, each measured alone
REQUESTS_PER_SIGNIN = {"post": 1, "cycle": 3}
HALF_PEAK_CLIENTS = 64            # open-loop sign-ins in flight at once; past that an arrival waits (and it counts)
HALF_PEAK_CONNECTIONS = 8         # the direct open-loop window's LDAP connections: an agent's pool size


def log(*args) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


# --- private services inside the namespace -----------------------------------------------------------------

class PrivateServices:
    """PostgreSQL and Redis of our own, on the usual loopback ports of a fresh network namespace."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.pg_dir = directory / "pg"
        self.redis: subprocess.Popen | None = None
        self.pg_started = False

    redis_url = PRIVATE_REDIS_URL

    def start(self, *, log_statements: bool = False) -> None:
        self.redis = subprocess.Popen(["redis-server", "--port", "6379", "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", str(self.directory)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.pg_dir.mkdir(parents=True)
        shutil.chown(self.pg_dir, "postgres", "postgres")
        # mkdtemp made them 0700: the postgres user must reach its data directory inside.
        os.chmod(self.directory, 0o755)  # noqa: S103 - a throwaway directory with no secret in it
        os.chmod(self.directory.parent, 0o711)  # noqa: S103 - traversal only, no listing
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(self.pg_dir),
                        "-A", "trust", "-U", "postgres", "--no-sync"], check=True, capture_output=True, timeout=120)
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.pg_dir), "-w",
                        "-l", str(self.pg_dir / "log"), "-o",
                        f"-c listen_addresses=127.0.0.1 -p 5432 -k {self.pg_dir}"
                        + (" -c log_statement=all" if log_statements else ""),
                        "start"], check=True, capture_output=True, timeout=120)
        self.pg_started = True
        log("private PostgreSQL and Redis started in this namespace")

    def postmaster_pid(self) -> int:
        return int((self.pg_dir / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        if self.pg_started:
            subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.pg_dir),
                            "-m", "fast", "-w", "stop"], capture_output=True, timeout=60, check=False)
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.redis.wait(10)


# --- the AD test bed ---------------------------------------------------------------------------------------

def ad_start(directory: Path, cpus: str = "") -> dict:
    """Start the test bed; with ``cpus`` under `taskset -c`, so that the DC and every process it forks run there
    (the affinity is inherited)."""
    pin = ["taskset", "-c", cpus] if cpus else []
    result = subprocess.run([*pin, sys.executable, str(AD_TESTBED), "start", "--dir", str(directory), "--json"],
                            capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        raise SystemExit(f"ad-testbed start failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def ad_stop(directory: Path) -> None:
    subprocess.run([sys.executable, str(AD_TESTBED), "stop", "--dir", str(directory)],
                   capture_output=True, text=True, timeout=60, check=False)


def good_users(facts: dict) -> list[dict]:
    users = [u for u in facts["users"].values() if u["state"] == "good"]
    if not users:
        raise SystemExit("the test bed has no user in state 'good'")
    return users


# --- the portal --------------------------------------------------------------------------------------------

def start_daphne(portal, name: str):
    """Like Portal.start_node, but with `-v 0` (no per-request access log), as a benchmark should."""
    from tests.fixtures.portal import DaphneNode, environment_program, free_port, port_open, stop_process

    node = DaphneNode(portal, name, free_port(), portal.directory / f"daphne-{name}.log",
                      {**portal.env, "PTA_NODE_ID": name, "PTA_SERVER_TIMING": "1"})
    daphne = environment_program("daphne")
    with node.log_path.open("ab") as out:
        node.proc = subprocess.Popen([daphne, "-v", "0", "-b", "127.0.0.1", "-p", str(node.port),
                                      "config.asgi:application"], cwd=REPO, env=node.env, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
    portal.nodes.append(node)
    deadline = time.monotonic() + 30
    while not port_open(node.port):
        if node.proc.poll() is not None or time.monotonic() > deadline:
            stop_process(node.proc, kill=True)  # a slow start is still running: never leave it behind
            raise SystemExit(f"Daphne {name} did not start:\n{node.log()[-3000:]}")
        time.sleep(0.05)
    return node


def start_agent(portal, node, tenant: str, facts: dict, name: str):
    """Register (as tests/integration/test_signin.py does) and run a pta-agent, without -v."""
    from tests.fixtures.portal import AgentProcess, agent_env, agent_id_of, pta_agent

    config, result = portal.agent_register(node, portal.agent_token(tenant), name=name,
                                           ldap_urls=(facts["ldaps_url"],), extra=("--ca-file", facts["ca_file"]))
    if result.returncode != 0:
        raise SystemExit(f"pta-agent register failed:\n{result.stderr}")
    log_path = config.with_suffix(".log")
    with log_path.open("ab") as out:
        proc = subprocess.Popen([*pta_agent(), "run", "--config", str(config)], cwd=config.parent, env=agent_env(),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    agent = AgentProcess(config, log_path, proc, agent_id=agent_id_of(config))
    portal.agents.append(agent)
    return agent


# --- (2) load ----------------------------------------------------------------------------------------------

class Failure(Exception):
    pass


async def walk_username(client, upn: str) -> tuple[str, str]:
    """GET /login/ and POST the username: a session waiting for its password. Returns (cookie header, token)."""
    client.cookies.clear()
    page = await client.get("/login/")
    match = CSRF.search(page.text)
    if page.status_code != 200 or not match:
        raise Failure(f"username page: {page.status_code}")
    response = await client.post("/login/", data={"username": upn, "csrfmiddlewaretoken": match.group(1),
                                                  "next": ""})
    if response.status_code != 302 or not response.headers.get("location", "").endswith("/login/password/"):
        raise Failure(f"username POST: {response.status_code} {response.headers.get('pta-outcome')}")
    cookies = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    client.cookies.clear()
    return cookies, match.group(1)


async def post_password(client, session: tuple[str, str], password: str,
                        timings: list[str] | None = None) -> tuple[str, float]:
    """One password POST: its outcome and latency; its Server-Timing header (PTA_SERVER_TIMING, set on every node
    the benchmark starts) appended to ``timings`` when given."""
    cookie, token = session
    client.cookies.clear()
    t0 = time.perf_counter()
    response = await client.post("/login/password/", data={"password": password, "csrfmiddlewaretoken": token},
                                 headers={"Cookie": cookie})
    elapsed = time.perf_counter() - t0
    client.cookies.clear()
    if timings is not None:
        timings.append(response.headers.get("server-timing", ""))
    outcome = response.headers.get("pta-outcome") or f"http_{response.status_code}"
    if outcome == "success" and response.status_code != 302:
        outcome = f"success_but_{response.status_code}"
    return outcome, elapsed


@dataclass
class Site:
    """What the load windows run against (the portal's nodes, the test bed's users) and what they measure (the
    components' root pids, the private Redis)."""

    nodes: list
    users: list[dict]
    groups: dict[str, list[int]]
    redis_url: str = ""


async def load_window(site: Site, targets: list, *, concurrency: int, duration: float, mode: str, purpose: str,
                      prewalk_per_client: int = 0, on_start=None) -> dict:
    """One timed window of ``concurrency`` closed-loop clients spread over the ``targets`` nodes in turn."""
    users = site.users
    clients = [Client(targets[i % len(targets)].url) for i in range(concurrency)]
    outcomes: Counter = Counter()
    post_lat: list[float] = []
    cycle_lat: list[float] = []
    errors: list[str] = []
    try:
        sessions: list[list] = [[] for _ in range(concurrency)]
        if mode == "post":
            started = time.monotonic()

            async def prewalk(i: int) -> None:
                user = users[i % len(users)]
                for _ in range(prewalk_per_client):
                    try:
                        sessions[i].append(await walk_username(clients[i], user["upn"]))
                    except (Failure, HTTPError) as exc:
                        outcomes[f"prewalk_error:{type(exc).__name__}"] += 1
                        if len(errors) < 20:
                            errors.append(f"pre-walk {type(exc).__name__}: {exc}")

            await asyncio.gather(*(prewalk(i) for i in range(concurrency)))
            log(f"  pre-walked {sum(map(len, sessions))} username steps in {time.monotonic() - started:.1f} s")
        per_client_cap = MAX_REQUESTS_PER_WINDOW // concurrency + 1
        exhausted = [False]

        async def run_client(i: int, stop_at: float) -> None:
            user = users[i % len(users)]
            done = 0
            while time.monotonic() < stop_at and done < per_client_cap:
                c0 = time.perf_counter()
                try:
                    if mode == "post":
                        if not sessions[i]:
                            exhausted[0] = True
                            return
                        session = sessions[i].pop()
                    else:
                        session = await walk_username(clients[i], user["upn"])
                    outcome, elapsed = await post_password(clients[i], session, user["password"])
                except (Failure, HTTPError) as exc:
                    outcome, elapsed = f"error:{type(exc).__name__}", float("nan")
                    if len(errors) < 20:
                        errors.append(f"{type(exc).__name__}: {exc}")
                outcomes[outcome] += 1
                if outcome == "success":
                    post_lat.append(elapsed)
                    cycle_lat.append(time.perf_counter() - c0)
                done += 1

        if on_start is not None:
            on_start()
        with components.Window(site.groups, site.redis_url) as window:
            stop_at = time.monotonic() + duration
            await asyncio.wait_for(asyncio.gather(*(run_client(i, stop_at) for i in range(concurrency))),
                                   duration + 60)
    finally:
        for client in clients:
            await client.aclose()
    ok = outcomes.get("success", 0)
    requests = ok * REQUESTS_PER_SIGNIN[mode]
    commands = window.redis_commands
    return {
        "kind": "pass-through", "purpose": purpose, "mode": mode, "concurrency": concurrency,
        "clients_on": [node.name for node in targets], "agents": len(site.groups["agent"]),
        "seconds": round(window.wall, 3), "count": sum(outcomes.values()), "success": ok,
        "per_second": round(ok / window.wall, 1), "http_requests": requests,
        **direct.latency_fields(post_lat), **direct.latency_fields(cycle_lat, "cycle_"),
        "outcomes": dict(outcomes), "errors": errors, "sessions_exhausted": exhausted[0],
        "cpu_seconds": {k: round(v, 3) for k, v in window.used.items()},
        "cpu_ms_per_signin": {k: round(v * 1000 / max(1, ok), 3) for k, v in window.used.items()},
        "cpu_ms_per_http_request": {k: round(v * 1000 / max(1, requests), 3) for k, v in window.used.items()},
        **components.busy_fields(window),
        "redis_commands": dict(commands) if commands is not None else None,
        "redis_commands_per_signin": round(commands.total() / max(1, ok), 2) if commands is not None else None,
    }


async def rate_window(site: Site, *, rate: float, duration: float) -> dict:
    """Whole sign-ins arriving as a Poisson process of ``rate`` per second (open loop: the next one does not
    wait for the last), the same arrivals as direct.at_rate's at that rate, spread over the nodes in turn. A
    sign-in takes an idle client of its node or opens one (at most HALF_PEAK_CLIENTS at once; past that it
    waits, and the wait counts). Latency: the whole sign-in's from its arrival, and its password POST's."""
    arrivals = direct.poisson_arrivals(rate, duration)
    idle: list[list[Client]] = [[] for _ in site.nodes]
    slots = asyncio.Semaphore(HALF_PEAK_CLIENTS)
    outcomes: Counter = Counter()
    post_lat: list[float] = []
    cycle_lat: list[float] = []
    errors: list[str] = []
    opened: list[Client] = []
    samples: list[tuple[str, float, dict[str, float]]] = []  # node, password POST seconds, its Server-Timing steps

    async def sign_in(index: int, due: float) -> None:
        async with slots:
            node = index % len(site.nodes)
            if idle[node]:
                client = idle[node].pop()
            else:
                client = Client(site.nodes[node].url)
                opened.append(client)
            user = site.users[index % len(site.users)]
            try:
                session = await walk_username(client, user["upn"])
                timings: list[str] = []
                outcome, elapsed = await post_password(client, session, user["password"], timings)
            except (Failure, HTTPError) as exc:
                outcome, elapsed = f"error:{type(exc).__name__}", float("nan")
                if len(errors) < 20:
                    errors.append(f"{type(exc).__name__}: {exc}")
            idle[node].append(client)
        outcomes[outcome] += 1
        if outcome == "success":
            post_lat.append(elapsed)
            samples.append((site.nodes[node].name, elapsed, server_timing(timings[0])))
            cycle_lat.append(time.perf_counter() - due)

    tasks = []
    try:
        with components.Window(site.groups, site.redis_url) as window:
            t0 = time.perf_counter()
            for index, offset in enumerate(arrivals):
                if (wait := t0 + offset - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
                tasks.append(asyncio.create_task(sign_in(index, t0 + offset)))
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
    finally:
        for task in tasks:
            task.cancel()
        for client in opened:
            await client.aclose()
    ok = outcomes.get("success", 0)
    return {
        "kind": "pass-through", "purpose": "half-peak", "mode": "cycle", "offered_per_second": round(rate, 1),
        "arrivals": len(arrivals), "clients_opened": len(opened), "seconds": round(window.wall, 3),
        "count": sum(outcomes.values()), "success": ok, "per_second": round(ok / window.wall, 1),
        **direct.latency_fields(post_lat), **direct.latency_fields(cycle_lat, "cycle_"),
        "outcomes": dict(outcomes), "errors": errors,
        "cpu_ms_per_signin": {k: round(v * 1000 / max(1, ok), 3) for k, v in window.used.items()},
        **components.busy_fields(window),
        "tail": tail_components(samples),
    }


def server_timing(header: str) -> dict[str, float]:
    """"first_hop;dur=1.20, agent;dur=5.00" → {"first_hop": 1.2, "agent": 5.0} (signin/timing.py writes it)."""
    steps = {}
    for item in filter(None, (part.strip() for part in header.split(","))):
        name, _, params = item.partition(";")
        duration = params.strip().removeprefix("dur=")
        with contextlib.suppress(ValueError):
            steps[name.strip()] = float(duration)
    return steps


def tail_components(samples: list[tuple[str, float, dict[str, float]]]) -> dict:
    """The password POSTs' latency split into their steps (signin/timing.py), for the middle of the distribution
    (p45-p55) and its tail (p95 and above; p99 and above, a few requests in a short window): each step's mean over
    those requests, ``outside`` being the client's latency less the consumer's ``total`` (Daphne and the socket);
    and per node (local / relayed) the p50 / p99."""
    timed = [(node, seconds * 1000, steps) for node, seconds, steps in samples if steps]
    if len(timed) < 20:
        return {}
    timed.sort(key=lambda sample: sample[1])

    def band(low: float, high: float) -> dict:
        chosen = timed[int(low * len(timed)):max(int(low * len(timed)) + 1, int(high * len(timed)))]
        names = sorted({name for _, _, steps in chosen for name in steps})
        means: dict[str, object] = {name: round(statistics.fmean(steps.get(name, 0.0) for _, _, steps in chosen), 2)
                                    for name in names}
        means["outside"] = round(statistics.fmean(ms - steps.get("total", 0.0) for _, ms, steps in chosen), 2)
        means["latency"] = round(statistics.fmean(ms for _, ms, _ in chosen), 2)
        means["nodes"] = dict(Counter(node for node, _, _ in chosen))
        return {"requests": len(chosen), **means}

    by_node = {}
    for name in sorted({node for node, _, _ in timed}):
        latencies = [ms for node, ms, _ in timed if node == name]
        by_node[name] = {"count": len(latencies), "p50_ms": round(statistics.median(latencies), 2),
                         "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2)}
    return {"p50_band": band(0.45, 0.55), "p95_band": band(0.95, 1.0), "p99_band": band(0.99, 1.0),
            "by_node": by_node}


def half_peak(args, site: Site, facts: dict, report: dict) -> dict:
    """Whole sign-ins at half of the run's peak whole sign-in rate, and direct binds + reads at the same rate
    and arrivals: the latency the pass-through adds to the bind + read it is about, at a load with room left."""
    peak = max(r["per_second"] for r in report["passthrough"] if r["purpose"] == "main" and r["mode"] == "cycle")
    rate = peak / 2
    log(f"half peak: direct bind + read at {rate:.1f}/s (Poisson) for {args.duration:.0f} s")
    bind_read = direct.at_rate(facts, site.users, rate=rate, duration=args.duration,
                               connections=HALF_PEAK_CONNECTIONS, groups={"samba": site.groups["samba"]})
    log(f"half peak: whole sign-ins at {rate:.1f}/s (Poisson) for {args.duration:.0f} s")
    signins = asyncio.run(rate_window(site, rate=rate, duration=args.duration))
    added = {f"added_{p}_ms": round(signins[f"{p}_ms"] - bind_read[f"{p}_ms"], 2) for p in ("p50", "p95", "p99")}
    added |= {f"added_whole_{p}_ms": round(signins[f"cycle_{p}_ms"] - bind_read[f"{p}_ms"], 2)
              for p in ("p50", "p95", "p99")}
    log(f"  direct p50/p99 {bind_read['p50_ms']}/{bind_read['p99_ms']} ms, password POST "
        f"{signins['p50_ms']}/{signins['p99_ms']} ms, whole sign-in {signins['cycle_p50_ms']}/"
        f"{signins['cycle_p99_ms']} ms, outcomes {signins['outcomes']}")
    if signins.get("tail"):
        log(f"  p99 band {signins['tail']['p99_band']}")
        log(f"  p50 band {signins['tail']['p50_band']}")
    return {"peak_per_second": peak, "rate": round(rate, 1), "direct": bind_read, "signin": signins, **added}


async def warm_up(site: Site) -> None:
    """One sign-in per user and node: users exist (just-in-time), keys are cached, connections are open."""
    for node in site.nodes:
        async with Client(node.url) as client:
            for user in site.users:
                session = await walk_username(client, user["upn"])
                outcome, _ = await post_password(client, session, user["password"])
                if outcome != "success":
                    raise SystemExit(f"warm-up sign-in of {user['upn']} on {node.name} ended {outcome}")


async def request_frame_bytes(site: Site) -> dict:
    """What the agents' WebSockets receive from the portal per sign-in, one sign-in at a time: the request frame
    (with its few bytes of WebSocket header; the agent turns compression off). Nothing else flows that way but
    a rare WebSocket ping or pong, which the minimum and the median leave out."""
    agents = set(site.groups["agent"])
    ports = {node.port for node in site.nodes}
    sizes = []
    async with Client(site.nodes[0].url) as client:
        for i in range(REQUEST_SIZE_SAMPLES):
            user = site.users[i % len(site.users)]
            session = await walk_username(client, user["upn"])
            before = components.socket_bytes_received(agents, ports)
            outcome, _ = await post_password(client, session, user["password"])
            if outcome != "success":
                raise SystemExit(f"request size: sign-in of {user['upn']} ended {outcome}")
            sizes.append(components.socket_bytes_received(agents, ports) - before)
    return {"agents": len(agents), "samples": len(sizes), "min_bytes": min(sizes),
            "median_bytes": statistics.median(sizes), "max_bytes": max(sizes)}


# --- report ------------------------------------------------------------------------------------------------

def agent_beyond_ldap(report: dict) -> float | None:
    """The agent's CPU per whole sign-in (the main windows' lowest) less what the LDAP client work of one bind +
    read costs: the load generator's CPU per operation in the direct bind + read windows (the same ldap3 calls,
    the lowest of the windows)."""
    agent = [r["cpu_ms_per_signin"]["agent"] for r in report["passthrough"]
             if r["purpose"] == "main" and r["mode"] == "cycle"]
    ldap = [r["cpu_ms_per_op"]["loadgen"] for r in report["direct"] if r["op"] == "bind+read"]
    return round(min(agent) - min(ldap), 3) if agent and ldap else None


def ratio_line(name: str, value: float | None) -> str:
    """One of the two summary lines scripts grep for: "whole sign-in ratio 0.42" (n/a when not measured)."""
    return f"{name} ratio {value:.2f}" if value is not None else f"{name} ratio n/a"


def _latencies(row: dict, prefix: str = "") -> str:
    return " / ".join(f"{row[f'{prefix}p{p}_ms']:g}" for p in (50, 95, 99))


def _describe(row: dict) -> str:
    if row["purpose"] == "profile":
        return "whole sign-in [py-spy attached]"
    if row["purpose"] == "placement":
        return f"whole sign-in, every one {row['placement']} (clients on {'+'.join(row['clients_on'])})"
    if row["purpose"] == "scaling":
        return f"whole sign-in, {row['agents']} agent(s), clients on {'+'.join(row['clients_on'])}"
    return ("password POST (pre-walked sessions)" if row["mode"] == "post"
            else "whole sign-in (GET, username POST, password POST)")


def _busy(row: dict) -> str:
    per_cpu = ", ".join(f"{name} {value:.0%}" for name, value in sorted(row["cpu_busy_fraction"].items()))
    return f"{row['machine_busy_fraction']:.0%} ({per_cpu})"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown(report: dict) -> str:
    pin = report["pin"]
    bind = report["ceiling_bind_per_second"] or float("nan")
    bind_read = report["ceiling_bind_read_per_second"] or float("nan")
    lines = [f"### {report['profile']} profile{', pinned' if pin else ''}, {report['started']}", "",
             f"Machine: {report['machine']['cpus']} CPUs, {report['machine']['python']}; "
             f"DC {report['ad']['ldaps_url']}; {report['topology']}; load from {report['loadgen']}.",
             (f"Pinned with taskset: the DC on CPU {pin['dc']}, everything else (portal, agents, load generator, "
              f"PostgreSQL, Redis) on CPU {pin['rest']}." if pin else
              "Not pinned: every process shares every CPU."), "",
             "Latency: of one bind (+ read) for the direct rows, of the password POST for `post` rows, of the three "
             "requests for whole sign-ins (their password POST alone in the next column).", "",
             "| what | conc. | per s | ÷ bind | ÷ bind+read | p50 / p95 / p99 ms | password POST p50 / p95 / p99 ms "
             "| CPU busy | outcomes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in report["direct"]:
        lines.append(f"| direct LDAPS {row['op']} | {row['connections']} conn | {row['per_second']} | "
                     f"{row['per_second'] / bind:.2f} | {row['per_second'] / bind_read:.2f} | {_latencies(row)} | – | "
                     f"{_busy(row)} | {row['count']} ok{' ' + str(row['failures']) if row['failures'] else ''} |")
    for row in report["passthrough"]:
        whole = row["mode"] == "cycle"
        lines.append(f"| {_describe(row)} | {row['concurrency']} | {row['per_second']} | "
                     f"{row['per_second'] / bind:.2f} | {row['per_second'] / bind_read:.2f} | "
                     f"{_latencies(row, 'cycle_' if whole else '')} | {_latencies(row) if whole else '–'} | "
                     f"{_busy(row)} | {', '.join(f'{k} {v}' for k, v in sorted(row['outcomes'].items()))} |")
    lines += ["", "Cost per sign-in (per bind for the direct rows): CPU ms of each component over the window, from "
              "/proc (portal: every Daphne node; DC, PostgreSQL: their process trees), and Redis commands "
              "(INFO commandstats).", "",
              "| what | conc. | portal ms / sign-in | portal ms / HTTP request | agent | DC | PostgreSQL | Redis "
              "| load generator | Redis commands / sign-in |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in report["direct"]:
        cost = row["cpu_ms_per_op"]
        lines.append(f"| direct LDAPS {row['op']} | {row['connections']} conn | – | – | – | {_ms(cost['samba'])} | – "
                     f"| – | {_ms(cost['loadgen'])} | – |")
    for row in report["passthrough"]:
        cost, per_request = row["cpu_ms_per_signin"], row["cpu_ms_per_http_request"]
        portal = sum(v for k, v in cost.items() if k.startswith("daphne"))
        portal_request = sum(v for k, v in per_request.items() if k.startswith("daphne"))
        lines.append(f"| {_describe(row)} | {row['concurrency']} | {portal:.2f} | {portal_request:.2f} | "
                     f"{_ms(cost['agent'])} | {_ms(cost['samba'])} | {_ms(cost.get('postgres'))} | "
                     f"{_ms(cost.get('redis'))} | {_ms(cost['loadgen'])} | "
                     f"{_ms(row['redis_commands_per_signin'])} |")
    placed = [row for row in report["passthrough"] if row["purpose"] == "placement" and row["redis_commands"]]
    if placed:
        lines += ["", "Redis commands per whole sign-in, by command (HELLO and SELECT open a connection):", "",
                  f"| command | {' | '.join(row['placement'] for row in placed)} |", f"| --- |{' --- |' * len(placed)}"]
        lines += [f"| {command} | " + " | ".join(f"{row['redis_commands'].get(command, 0) / max(1, row['success']):.2f}"
                                                 for row in placed) + " |"
                  for command in sorted(set().union(*(row["redis_commands"] for row in placed)))]
    lines += ["", "Peak RSS (VmHWM) at the end of the run; a tree's sum counts shared pages once per process.", "",
              "| component | processes | peak RSS, sum MiB | largest process MiB |", "| --- | --- | --- | --- |"]
    for name, peak in report["peak_rss_kib"].items():
        lines.append(f"| {name} | {peak['processes']} | {peak['sum_kib'] / 1024:.1f} | {peak['max_kib'] / 1024:.1f} |")
    if report.get("request_size"):
        lines += ["", "Bytes the agents' WebSockets receive per sign-in (the request frame and its WebSocket header), "
                  f"{REQUEST_SIZE_SAMPLES} sign-ins one at a time per agent count:", "",
                  "| agents | min | median | max |", "| --- | --- | --- | --- |"]
        lines += [f"| {size['agents']} | {size['min_bytes']} | {size['median_bytes']:g} | {size['max_bytes']} |"
                  for size in report["request_size"]]
    if half := report.get("half_peak"):
        signin, bind_read_row = half["signin"], half["direct"]
        lines += ["", f"Half of the peak whole sign-in rate ({half['peak_per_second']}/s): {half['rate']}/s offered "
                  "as Poisson arrivals (open loop), the same arrivals for both rows; latency from each arrival, "
                  f"{HALF_PEAK_CONNECTIONS} LDAP connections for the direct row, at most {HALF_PEAK_CLIENTS} sign-ins "
                  "in flight.", "",
                  "| what | offered per s | done per s | p50 / p95 / p99 ms | CPU busy | outcomes |",
                  "| --- | --- | --- | --- | --- | --- |",
                  f"| direct LDAPS bind+read | {bind_read_row['offered_per_second']} | {bind_read_row['per_second']} | "
                  f"{_latencies(bind_read_row)} | {_busy(bind_read_row)} | {bind_read_row['count']} ok |",
                  f"| password POST of each whole sign-in | {signin['offered_per_second']} | {signin['per_second']} | "
                  f"{_latencies(signin)} | {_busy(signin)} | "
                  f"{', '.join(f'{k} {v}' for k, v in sorted(signin['outcomes'].items()))} |",
                  f"| whole sign-in (3 requests) | {signin['offered_per_second']} | {signin['per_second']} | "
                  f"{_latencies(signin, 'cycle_')} | – | – |", "",
                  f"Latency the pass-through adds to a direct bind + read (password POST less bind + read, per "
                  f"percentile): p50 {_ms(half['added_p50_ms'])} ms, p95 {_ms(half['added_p95_ms'])} ms, p99 "
                  f"{_ms(half['added_p99_ms'])} ms; the whole sign-in's three requests less bind + read: p50 "
                  f"{_ms(half['added_whole_p50_ms'])} ms, p99 {_ms(half['added_whole_p99_ms'])} ms."]
        lines += tail_markdown(signin.get("tail") or {})
    lines += ["", f"Denominator of both ratios: the best direct bind+read rate, {bind_read}/s (the best bind alone: "
              f"{bind}/s).", "",
              ratio_line("whole sign-in", report["whole_signin_ratio"]),
              ratio_line("password POST", report["password_post_ratio"])]
    if half:
        lines.append(f"latency added at half peak p50 {_ms(half['added_p50_ms'])} ms "
                     f"p99 {_ms(half['added_p99_ms'])} ms")
    lines += [f"agent CPU beyond LDAP {_ms(report.get('agent_beyond_ldap_ms'))} ms per sign-in", ""]
    return "\n".join(lines)


def tail_markdown(tail: dict) -> list[str]:
    """The half-peak password POSTs' steps (Server-Timing) in the middle and in the tail of their latency."""
    if not tail:
        return []
    middle, high, worst = tail["p50_band"], tail.get("p95_band", {}), tail["p99_band"]
    names = [n for n in sorted(set(middle) | set(high) | set(worst))
             if n not in ("requests", "nodes", "latency", "total")]
    lines = ["", "Where the half-peak password POST's time goes (`Server-Timing`, signin/timing.py; mean ms over the "
             f"requests of each band: p45-p55 {middle['requests']} requests, p95 and above "
             f"{high.get('requests', 0)}, p99 and above {worst['requests']}; "
             "`<hop>-wait`: a worker hop's queue and wake-up; `outside`: the client's latency less the consumer's "
             "`total`, i.e. Daphne and the socket; `gc`: collections during the request):", "",
             "| band | latency | total | " + " | ".join(names) + " | nodes |",
             "| --- | --- | --- | " + " | ".join("---" for _ in names) + " | --- |"]
    for label, row in (("p45-p55", middle), ("p95+", high), ("p99+", worst)):
        if not row:
            continue
        lines.append(f"| {label} | {row['latency']} | {row.get('total', 0.0)} | "
                     + " | ".join(str(row.get(n, 0.0)) for n in names)
                     + f" | {', '.join(f'{k} {v}' for k, v in sorted(row['nodes'].items()))} |")
    lines += ["", "Password POST by node (web1 holds the agent: local; web2 relays): " + "; ".join(
        f"{node} p50 {v['p50_ms']} ms p99 {v['p99_ms']} ms ({v['count']})" for node, v in tail["by_node"].items())]
    return lines


# --- main --------------------------------------------------------------------------------------------------

def levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def pin_cpus(text: str) -> dict[str, str]:
    """--pin DC:REST, two disjoint CPU lists of this process's CPUs."""
    dc, _, rest = text.partition(":")
    allowed = os.sched_getaffinity(0)
    try:
        dc_cpus, rest_cpus = components.cpu_list(dc), components.cpu_list(rest)
    except ValueError:
        dc_cpus = rest_cpus = set()
    if not dc_cpus or not rest_cpus or dc_cpus & rest_cpus or not (dc_cpus | rest_cpus) <= allowed:
        raise SystemExit(f"--pin {text}: two disjoint CPU lists of {sorted(allowed)} expected, like 0:1 or 0:1-3")
    return {"dc": dc, "rest": rest}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=["embedded", "production"], default=None,
                        help="embedded (the default) or production; --costs: production unless embedded is given")
    parser.add_argument("--pin", nargs="?", const="0:1", default="", metavar="DC:REST",
                        help="run the DC alone on the CPUs DC, the rest on REST (taskset; default 0:1)")
    parser.add_argument("--concurrency", default="2,8,32", help="comma-separated HTTP client counts")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed window (max 120)")
    parser.add_argument("--direct-connections", default="2,8,32", help="comma-separated LDAP connection counts")
    parser.add_argument("--modes", default="post,cycle", help="post (pre-walked password POSTs) and/or cycle")
    parser.add_argument("--scaling", action="store_true",
                        help="also 1 and 2 nodes (production) x 1, 2 and 4 agents, and the request size per agents")
    parser.add_argument("--scaling-duration", type=float, default=3.0, help="seconds per scaling window (max 30)")
    parser.add_argument("--ad-dir", default="", help="reuse the test bed running in DIR (and its namespace)")
    parser.add_argument("--netns", choices=["auto", "yes", "no"], default="auto",
                        help="run everything in a fresh network namespace (auto: yes unless --ad-dir)")
    parser.add_argument("--half-peak", action=argparse.BooleanOptionalAction, default=True,
                        help="whole sign-ins and direct binds + reads at half the peak sign-in rate (open loop)")
    parser.add_argument("--py-spy", type=float, default=0.0, metavar="SECONDS",
                        help="also record the portal with py-spy during an extra whole sign-in window; with "
                             "--costs (any value > 0): during each placement's sign-ins made once more")
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    parser.add_argument("--no-docs-plot", action="store_true",
                        help="write the latency plot beside the results only, not to docs/")
    # Modes with simulated agents and no directory (bench/fleet.py); one of them per run.
    parser.add_argument("--costs", action="store_true",
                        help="Redis commands and SQL statements per whole sign-in, local and relayed (production)")
    parser.add_argument("--signins", type=int, default=40, help="--costs: whole sign-ins per placement (max 1000)")
    parser.add_argument("--warm", type=int, default=0, metavar="N",
                        help="--costs: whole sign-ins per node before anything is counted (default: each user once)")
    parser.add_argument("--soak", type=int, default=0, metavar="N",
                        help="N whole sign-ins (80%% good, 10%% wrong, 10%% unknown); memory every 1,000")
    parser.add_argument("--fleet", default="", metavar="N,N,...",
                        help="simulated agent fleets of these sizes on two nodes (production)")
    parser.add_argument("--tenants", default="1", help="--fleet: comma-separated tenant counts, a portal each")
    parser.add_argument("--handshake-waits", default="0,default", metavar="S,S,...",
                        help="--fleet: web1 restarted once per PTA_AGENT_HANDSHAKE_WAIT_SECONDS value (0: the fixed "
                             "limit alone; default: the setting's default)")
    parser.add_argument("--cost-ms", type=float, default=5.0, help="the simulated directory's time per answer")
    parser.add_argument(INNER_FLAG, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.signins = min(max(1, args.signins), 1000)
    if sum(map(bool, (args.costs, args.soak, args.fleet))) > 1:
        parser.error("--costs, --soak and --fleet are separate runs: give one")
    if args.fleet or (args.costs and args.profile is None):
        args.profile = "production"  # Redis and two nodes are what they measure
    args.profile = args.profile or "embedded"
    args.warm = min(max(0, args.warm), 5000)
    args.duration = min(max(1.0, args.duration), 120.0)
    args.scaling_duration = min(max(1.0, args.scaling_duration), 30.0)
    if not levels(args.concurrency) or not levels(args.direct_connections):
        parser.error("--concurrency and --direct-connections need at least one level each")
    if args.pin and args.ad_dir:
        parser.error("--pin starts its own DC on its CPUs: it cannot reuse --ad-dir")
    args.pin = pin_cpus(args.pin) if args.pin else None
    return args


def reexec_in_netns(argv: list[str]) -> int:
    inner = " ".join(map(_quote, [sys.executable, str(Path(__file__).resolve()), *argv, INNER_FLAG]))
    log("re-running inside a fresh network namespace (unshare --net)")
    # unshare and bash exec: the child's pid is the inner run's, which stops what it started on SIGTERM (main).
    child = subprocess.Popen(["unshare", "--net", "bash", "-c", f"ip link set lo up && exec {inner}"])
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda signum, frame: child.send_signal(signum))
    return child.wait()


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def passed(row: dict) -> bool:
    if set(row["outcomes"]) == {"success"}:
        return True
    log(f"  NOT ALL SUCCESS: {row['outcomes']} {row['errors'][:5]}")
    return False


def run_window(site: Site, targets: list, **kwargs) -> dict:
    row = asyncio.run(load_window(site, targets, **kwargs))
    log(f"  {row['per_second']}/s, password POST p50 {row['p50_ms']} p95 {row['p95_ms']} ms, whole sign-in p50 "
        f"{row['cycle_p50_ms']} ms, CPU ms/sign-in {row['cpu_ms_per_signin']}, outcomes {row['outcomes']}")
    return row


def main_windows(args, site: Site) -> list[dict]:
    """The measured windows: every --concurrency level in every --modes, clients over every node."""
    rows = []
    for concurrency in levels(args.concurrency):
        rate_guess = 0.0
        for mode in sorted(m for m in args.modes.split(",") if m):  # "cycle" first: it calibrates "post"
            prewalk = 0
            if mode == "post":
                guess = max(rate_guess * 1.6, 150.0)
                prewalk = min(MAX_PREWALK_SESSIONS // concurrency, math.ceil(guess * args.duration / concurrency) + 5)
            log(f"pass-through {mode} c={concurrency} for {args.duration:.0f} s")
            row = run_window(site, site.nodes, concurrency=concurrency, duration=args.duration, mode=mode,
                             purpose="main", prewalk_per_client=prewalk)
            rows.append(row)
            rate_guess = row["per_second"] if mode == "cycle" else rate_guess
    return rows


def placement_windows(args, site: Site) -> list[dict]:
    """Production: whole sign-ins all on the agents' node, then all on the other one (each relayed over Redis),
    so that the relay's cost (Redis commands and CPU per sign-in) is the difference of the two."""
    rows = []
    duration = min(args.duration, PLACEMENT_SECONDS)
    for placement, targets in (("local", site.nodes[:1]), ("relayed", site.nodes[1:])):
        log(f"placement: every sign-in {placement} for {duration:.0f} s")
        row = run_window(site, targets, concurrency=max(levels(args.concurrency)), duration=duration, mode="cycle",
                         purpose="placement")
        row["placement"] = placement
        rows.append(row)
    return rows


def scaling(args, site: Site, portal, tenant: str, facts: dict, agents: list) -> tuple[list[dict], list[dict]]:
    """One, two and four agents of the tenant, all connected to the first node; for each, the bytes of the
    request an agent receives, and a short whole sign-in window with clients on one node, then on every node.
    Returns (windows, request sizes)."""
    from tests.fixtures.portal import local_agents, wait_for

    rows, sizes = [], []
    for count in SCALING_AGENTS:
        while len(agents) < count:
            agents.append(start_agent(portal, site.nodes[0], tenant, facts, f"bench-agent-{len(agents) + 1}"))
        wait_for(lambda n=count: local_agents(site.nodes[0]) == n, timeout=30, message=f"{count} agents to connect")
        site.groups["agent"] = [agent.proc.pid for agent in agents]
        size = asyncio.run(request_frame_bytes(site))
        log(f"scaling: {count} agent(s), request bytes per sign-in min {size['min_bytes']} "
            f"median {size['median_bytes']} max {size['max_bytes']}")
        sizes.append(size)
        for node_count in range(1, len(site.nodes) + 1):
            log(f"scaling: {count} agent(s), clients on {node_count} node(s), {args.scaling_duration:.0f} s")
            rows.append(run_window(site, site.nodes[:node_count], concurrency=max(levels(args.concurrency)),
                                   duration=args.scaling_duration, mode="cycle", purpose="scaling"))
    return rows, sizes


def pinning_holds(pin: dict[str, str], placed: dict[str, list[str]]) -> bool:
    """Every thread of the DC on the DC's CPUs, every other one measured on the rest."""
    wrong = {name: lists for name, lists in placed.items()
             if not all(components.cpu_list(cpus) <= components.cpu_list(pin["dc" if name == "samba" else "rest"])
                        for cpus in lists)}
    if wrong:
        log(f"PINNING DID NOT HOLD: {wrong}")
    return not wrong


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    use_netns = args.netns == "yes" or (args.netns == "auto" and not args.ad_dir)
    if use_netns and not args._in_netns:
        return reexec_in_netns(argv)
    # SIGTERM (a timeout, an operator) unwinds like Ctrl-C: the finally blocks stop the portal, agents and services.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    pin = args.pin
    if pin:  # this process first: everything it starts inherits the CPUs, the DC is started elsewhere
        os.sched_setaffinity(0, components.cpu_list(pin["rest"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}-{args.profile}{'-pinned' if pin else ''}"
    work = Path(tempfile.mkdtemp(prefix="pta-bench-"))
    services = PrivateServices(work / "services") if (use_netns and args.profile == "production") else None
    ad_dir = Path(args.ad_dir) if args.ad_dir else work / "ad"
    portal = None
    report: dict = {"profile": args.profile, "started": stamp, "netns": use_netns, "pin": pin,
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "kernel": platform.release()},
                    "loadgen": "bench/loadgen.py, one keep-alive HTTP/1.1 connection per client, in the bench process"}
    failed = False
    if args.costs or args.soak or args.fleet:  # simulated agents, no directory: bench/fleet.py
        from bench import fleet

        try:
            if services:
                (work / "services").mkdir()
                services.start(log_statements=args.costs)
            elif args.profile == "production":
                raise SystemExit("--costs, --fleet and a production --soak need the private namespace (--netns)")
            return fleet.main(args, services, out, name + ("-costs" if args.costs else "-soak" if args.soak
                                                           else "-fleet"))
        finally:
            if services:
                services.stop()
            shutil.rmtree(work, ignore_errors=True)
    try:
        if services:
            (work / "services").mkdir()
            services.start()
        log(f"AD test bed in {ad_dir}" + (f" on CPU {pin['dc']}" if pin else ""))
        facts = ad_start(ad_dir, pin["dc"] if pin else "")
        users = good_users(facts)
        report["ad"] = {"ldaps_url": facts["ldaps_url"], "users": [u["upn"] for u in users]}
        samba = [int(facts["pid"])]

        report["direct"] = []
        for read in (False, True):
            for n in levels(args.direct_connections):
                row = direct.closed_loop(facts, users, connections=n, duration=args.duration, read=read,
                                         groups={"samba": samba})
                log(f"direct {row['op']} x{n}: {row['per_second']}/s p50 {row['p50_ms']} ms")
                report["direct"].append(row)

        from tests.fixtures.portal import local_agents, make_portal, wait_for

        timings = {"PTA_AGENT_HEARTBEAT_SECONDS": "10", "PTA_PRESENCE_FLUSH_SECONDS": "2",
                   "PTA_LAST_SEEN_SECONDS": "30", "PTA_LOG_LEVEL": "WARNING",
                   # a fresh Redis holds no keys of a previous release: the lockout as after an upgrade's period
                   "PTA_LOCKOUT_UPGRADE_SECONDS": "0"}
        portal = make_portal(args.profile, timings=timings)
        tenant = portal.tenant_create("Bench", facts["upn_suffix"])
        nodes = [start_daphne(portal, "web1")]
        if args.profile == "production":
            nodes.append(start_daphne(portal, "web2"))
        agents = [start_agent(portal, nodes[0], tenant, facts, "bench-agent-1")]
        wait_for(lambda: local_agents(nodes[0]) == 1, timeout=20, message="the agent to connect")
        report["nodes"] = len(nodes)
        report["topology"] = ("one Daphne node, the agent connected to it" if len(nodes) == 1 else
                              "two Daphne nodes, the agents connected to web1; clients alternate web1/web2, so "
                              "half of the sign-ins cross nodes over RedisPubSubChannelLayer")
        groups = {f"daphne_{node.name}": [node.proc.pid] for node in nodes}
        groups["agent"] = [agents[0].proc.pid]
        groups["samba"] = samba
        if services:
            assert services.redis is not None  # started above
            groups["postgres"] = [services.postmaster_pid()]
            groups["redis"] = [services.redis.pid]
        # Redis commands only from our own server: the shared one (--netns no) counts everyone's.
        site = Site(nodes, users, groups, PRIVATE_REDIS_URL if services else "")
        asyncio.run(warm_up(site))

        report["passthrough"] = main_windows(args, site)
        if len(nodes) > 1:
            report["passthrough"] += placement_windows(args, site)
        if args.half_peak and "cycle" in args.modes.split(","):
            report["half_peak"] = half_peak(args, site, facts, report)
        if args.py_spy > 0:
            report["profile_files"] = record_profile(args, site, out, name, report)
        if args.scaling:
            rows, report["request_size"] = scaling(args, site, portal, tenant, facts, agents)
            report["passthrough"] += rows
        checked = report["passthrough"] + ([report["half_peak"]["signin"]] if "half_peak" in report else [])
        failed = not all([passed(row) for row in checked])
        report["pids"] = groups
        report["peak_rss_kib"] = components.peak_rss(groups)
        report["affinity"] = components.affinity({**groups, "loadgen": [os.getpid()]})
        if pin and not pinning_holds(pin, report["affinity"]):
            failed = True

        bind_read = max(r["per_second"] for r in report["direct"] if r["op"] == "bind+read")
        report["ceiling_bind_per_second"] = max(r["per_second"] for r in report["direct"] if r["op"] == "bind")
        report["ceiling_bind_read_per_second"] = bind_read
        for key, mode in (("whole_signin_ratio", "cycle"), ("password_post_ratio", "post")):
            rates = [r["per_second"] for r in report["passthrough"] if r["purpose"] == "main" and r["mode"] == mode]
            report[key] = round(max(rates) / bind_read, 3) if rates and bind_read else None
        report["agent_beyond_ldap_ms"] = agent_beyond_ldap(report)
        for node in nodes:
            if not node.running:
                failed = True
                log(f"Daphne {node.name} died:\n{node.log()[-2000:]}")
            tail_500 = [line for line in node.log().splitlines() if "Traceback" in line or " 500 " in line]
            if tail_500:
                report.setdefault("portal_log_errors", {})[node.name] = tail_500[:20]
        agent_errors = [line for agent in agents for line in agent.log().splitlines()
                        if "ERROR" in line or "Traceback" in line]
        if agent_errors:
            report["agent_log_errors"] = agent_errors[:20]
    finally:
        if portal is not None:
            for node in portal.nodes:  # keep the evidence: the portal's directory is removed on close
                lines = node.log().splitlines()
                keep = [i for i, line in enumerate(lines) if "Traceback" in line or "Error" in line]
                if keep:
                    report.setdefault("portal_log_excerpts", {})[node.name] = lines[max(0, keep[0] - 2):keep[0] + 60]
                    (out / f"{name}-{node.name}-daphne.log").write_text("\n".join(lines[-4000:]))
            with contextlib.suppress(BaseException):
                portal.close()
        if not args.ad_dir:
            ad_stop(ad_dir)
        if services:
            services.stop()
        shutil.rmtree(work, ignore_errors=True)

    report["failed"] = failed
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (out / f"{name}.md").write_text(table)
    plots = [out / f"{name}-latency.png"]
    if not args.no_docs_plot:
        plots.append(REPO / "docs" / f"benchmark-latency-{args.profile}{'-pinned' if pin else ''}.png")
    latency_plot(report, plots)
    print(table)
    log(f"results: {out / name}.json, .md and -latency.png{f', plot also in {plots[1]}' if len(plots) > 1 else ''}")
    if failed:
        log("FAILED: not every sign-in succeeded or the pinning did not hold (see the JSON)")
    return 1 if failed else 0


def record_profile(args, site: Site, out: Path, name: str, report: dict) -> list[str]:
    """py-spy on every Daphne and agent process during one extra whole sign-in ("cycle") window."""
    py_spy = shutil.which("py-spy")
    if not py_spy:
        log("py-spy not found on PATH: no profile")
        return []
    concurrency = max(levels(args.concurrency))
    files, procs = [], []

    recorded = [(node.name, node.proc.pid) for node in site.nodes]
    recorded += [(f"agent{i + 1}", pid) for i, pid in enumerate(site.groups["agent"])]

    def start() -> None:
        for label, pid in recorded:
            path = out / f"{name}-{label}-profile.folded"
            procs.append(subprocess.Popen([py_spy, "record", "-d", str(int(args.py_spy)), "-r", "200", "-p",
                                           str(pid), "-f", "raw", "-o", str(path), "--nonblocking", "--gil"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            files.append(str(path))
        time.sleep(0.5)

    log(f"py-spy: recording the portal for {args.py_spy:.0f} s of whole sign-ins at c={concurrency}")
    report["passthrough"].append(run_window(site, site.nodes, concurrency=concurrency, duration=args.py_spy,
                                            mode="cycle", purpose="profile", on_start=start))
    for proc in procs:
        try:  # communicate, not wait: py-spy must never block on a full stderr pipe
            _, err = proc.communicate(timeout=args.py_spy + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=5)
        if proc.returncode:
            log(f"py-spy exited {proc.returncode}: {err.decode()[-500:]}")
    return files


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main(sys.argv[1:]))
