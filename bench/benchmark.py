"""Pass-through sign-ins per second against the direct-bind ceiling, in one run (see bench/README.md).

    bench/run [--profile embedded|production] [--concurrency 8,32] [--duration 10] [--ad-dir DIR]
              [--netns auto|yes|no] [--py-spy SECONDS] [--out bench/results]

1. Starts the Samba AD test bed (scripts/ad-testbed) in a fresh network namespace of its own (or reuses a
   running one with --ad-dir), so it never fights another run for the fixed ports 389/636.
2. Direct: LDAPS binds per second from N threads, each with one persistent ldap3 connection and rebind
   (get_info=NONE, read_server_info=False, password as bytes): "bind" alone, and "bind+read" (the bind plus
   the read-as-user search the agent does on every success).
3. Pass-through: a real portal (Daphne -v 0; embedded profile, or production = PostgreSQL + Redis, two nodes)
   and a real pta-agent on the same DC. Concurrent httpx/asyncio clients, each a closed loop:
   - mode "post": every measured request is one complete password POST (/login/password/ → 302 success) on a
     session whose username step was walked before the timed window (one pre-walked session per request);
   - mode "cycle": the whole two-step sign-in repeated (GET /login/, POST /login/, POST /login/password/);
     the rate is complete sign-ins per second, the latency percentiles are those of the password POST.
   Every outcome must be "success": anything else fails the run (exit 1) after writing the results.
4. Portal CPU per request from /proc/PID/stat (utime+stime) of each Daphne process over the timed window.
5. Optional: py-spy records the Daphne process during an extra "post" window (--py-spy SECONDS).

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
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
AD_TESTBED = REPO / "scripts" / "ad_testbed.py"
INNER_FLAG = "--_in-netns"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
MAX_REQUESTS_PER_WINDOW = 20000   # hard bound on any load loop, whatever the duration
MAX_PREWALK_SESSIONS = 6000
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def log(*args) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


# --- CPU accounting ----------------------------------------------------------------------------------------

def proc_cpu_seconds(pid: int) -> float:
    """utime+stime of pid; a negative pid means -pid plus its reaped children (cutime+cstime), e.g. the
    postmaster, whose per-connection backends come and go."""
    try:
        fields = Path(f"/proc/{abs(pid)}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if pid < 0:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def pids_matching(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
    return found


def descendants(root: int) -> list[int]:
    """root and every process below it (Samba's pre-fork workers rename themselves)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [root], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLK_TCK, sum(values) / CLK_TCK


class CpuWindow:
    def __init__(self, groups: dict[str, list[int]]):
        self.groups = groups

    def __enter__(self):
        self.started = time.monotonic()
        self.before = {name: sum(proc_cpu_seconds(p) for p in pids) for name, pids in self.groups.items()}
        self.machine_before = machine_busy_seconds()
        self.self_before = time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.monotonic() - self.started
        self.used = {name: sum(proc_cpu_seconds(p) for p in pids) - self.before[name]
                     for name, pids in self.groups.items()}
        busy, total = machine_busy_seconds()
        self.used["loadgen"] = time.process_time() - self.self_before
        self.used["machine"] = busy - self.machine_before[0]
        self.machine_busy_fraction = (busy - self.machine_before[0]) / max(1e-9, total - self.machine_before[1])


# --- private services inside the namespace -----------------------------------------------------------------

class PrivateServices:
    """PostgreSQL and Redis of our own, on the usual loopback ports of a fresh network namespace."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.pg_dir = directory / "pg"
        self.redis: subprocess.Popen | None = None
        self.pg_started = False

    def start(self) -> None:
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
                        f"-c listen_addresses=127.0.0.1 -p 5432 -k {self.pg_dir}",
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

def ad_start(directory: Path) -> dict:
    result = subprocess.run([sys.executable, str(AD_TESTBED), "start", "--dir", str(directory), "--json"],
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


# --- (1) direct binds --------------------------------------------------------------------------------------

def direct_binds(facts: dict, users: list[dict], *, connections: int, duration: float, read: bool) -> dict:
    import ldap3
    from pta_agent.directory import USER_ATTRIBUTES

    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=facts["ca_file"])
    stop_at = [0.0]
    started_at = [0.0]

    def go() -> None:  # runs once, when every connection is bound, before any thread is released
        started_at[0] = time.monotonic()
        stop_at[0] = started_at[0] + duration

    barrier = threading.Barrier(connections + 1, action=go)
    latencies: list[list[float]] = [[] for _ in range(connections)]
    failures: Counter[str] = Counter()
    cap = MAX_REQUESTS_PER_WINDOW // connections + 1

    def worker(index: int) -> None:
        user = users[index % len(users)]
        server = ldap3.Server(facts["ldaps_url"], use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=5)
        conn = ldap3.Connection(server, user=user["upn"], password=user["password"].encode(), read_only=True,
                                receive_timeout=5, raise_exceptions=False)
        try:
            conn.open()
            conn.bind()
            barrier.wait(30)
            mine = latencies[index]
            while time.monotonic() < stop_at[0] and len(mine) < cap:
                t0 = time.perf_counter()
                conn.rebind(user=user["upn"], password=user["password"].encode(), read_server_info=False)
                if conn.result.get("result") != 0:
                    failures[str(conn.result.get("description"))] += 1
                    continue
                if read:
                    conn.search(facts["base_dn"], f"(userPrincipalName={user['upn']})",
                                search_scope=ldap3.SUBTREE, attributes=list(USER_ATTRIBUTES), size_limit=1)
                mine.append(time.perf_counter() - t0)
        finally:
            with contextlib.suppress(Exception):
                conn.unbind()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(connections)]
    for t in threads:
        t.start()
    barrier.wait(30)
    started = started_at[0]
    for t in threads:
        t.join(duration + 30)
    wall = time.monotonic() - started
    flat = [x for lat in latencies for x in lat]
    return {"kind": "direct", "op": "bind+read" if read else "bind", "connections": connections,
            "count": len(flat), "seconds": round(wall, 3), "per_second": round(len(flat) / wall, 1),
            "p50_ms": round(percentile(flat, 50) * 1000, 2), "p95_ms": round(percentile(flat, 95) * 1000, 2),
            "p99_ms": round(percentile(flat, 99) * 1000, 2), "failures": dict(failures)}


# --- the portal --------------------------------------------------------------------------------------------

def start_daphne(portal, name: str):
    """Like Portal.start_node, but with `-v 0` (no per-request access log), as a benchmark should."""
    from tests.fixtures.portal import DaphneNode, environment_program, free_port, port_open

    node = DaphneNode(portal, name, free_port(), portal.directory / f"daphne-{name}.log",
                      {**portal.env, "PTA_NODE_ID": name})
    daphne = environment_program("daphne")
    with node.log_path.open("ab") as out:
        node.proc = subprocess.Popen([daphne, "-v", "0", "-b", "127.0.0.1", "-p", str(node.port),
                                      "config.asgi:application"], cwd=REPO, env=node.env, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
    portal.nodes.append(node)
    deadline = time.monotonic() + 30
    while not port_open(node.port):
        if node.proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"Daphne {name} did not start:\n{node.log()[-3000:]}")
        time.sleep(0.05)
    return node


def start_agent(portal, node, tenant: str, facts: dict):
    """Register (as tests/integration/test_signin.py does) and run a pta-agent, without -v."""
    from tests.fixtures.portal import AgentProcess, agent_env, agent_id_of, pta_agent

    config, result = portal.agent_register(node, portal.agent_token(tenant), name="bench-agent",
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


def local_agents(node) -> int:
    import httpx

    from tests.fixtures.portal import metrics_headers

    text = httpx.get(f"{node.url}/metrics", headers=metrics_headers(node), timeout=5).text
    match = re.search(r"^pta_agents_local (\S+)$", text, re.M)
    return int(float(match.group(1))) if match else 0


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
        raise Failure(f"username POST: {response.status_code} {response.headers.get('PTA-Outcome')}")
    cookies = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    client.cookies.clear()
    return cookies, match.group(1)


async def post_password(client, session: tuple[str, str], password: str) -> tuple[str, float]:
    cookie, token = session
    client.cookies.clear()
    t0 = time.perf_counter()
    response = await client.post("/login/password/", data={"password": password, "csrfmiddlewaretoken": token},
                                 headers={"Cookie": cookie})
    elapsed = time.perf_counter() - t0
    client.cookies.clear()
    outcome = response.headers.get("PTA-Outcome") or f"http_{response.status_code}"
    if outcome == "success" and response.status_code != 302:
        outcome = f"success_but_{response.status_code}"
    return outcome, elapsed


async def load_window(urls: list[str], users: list[dict], *, concurrency: int, duration: float, mode: str,
                      cpu_groups: dict[str, list[int]], prewalk_per_client: int = 0, on_start=None) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=urls[i % len(urls)], timeout=30, limits=limits,
                                 follow_redirects=False) for i in range(concurrency)]
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
                    except (Failure, httpx.HTTPError) as exc:
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
                except (Failure, httpx.HTTPError) as exc:
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
        with CpuWindow(cpu_groups) as cpu:
            stop_at = time.monotonic() + duration
            await asyncio.wait_for(asyncio.gather(*(run_client(i, stop_at) for i in range(concurrency))),
                                   duration + 60)
    finally:
        for client in clients:
            await client.aclose()
    total = sum(outcomes.values())
    ok = outcomes.get("success", 0)
    result = {
        "kind": "pass-through", "mode": mode, "concurrency": concurrency, "seconds": round(cpu.wall, 3),
        "count": total, "success": ok, "per_second": round(ok / cpu.wall, 1),
        "p50_ms": round(percentile(post_lat, 50) * 1000, 2), "p95_ms": round(percentile(post_lat, 95) * 1000, 2),
        "p99_ms": round(percentile(post_lat, 99) * 1000, 2),
        "cycle_p50_ms": round(percentile(cycle_lat, 50) * 1000, 2),
        "outcomes": dict(outcomes), "errors": errors, "sessions_exhausted": exhausted[0],
        "cpu_seconds": {k: round(v, 3) for k, v in cpu.used.items()},
        "cpu_ms_per_request": {k: round(v * 1000 / max(1, ok), 3) for k, v in cpu.used.items()},
        "machine_busy_fraction": round(cpu.machine_busy_fraction, 3),
    }
    return result


async def warm_up(urls: list[str], users: list[dict]) -> None:
    """One sign-in per user and node: users exist (just-in-time), keys are cached, connections are open."""
    import httpx

    for url in urls:
        async with httpx.AsyncClient(base_url=url, timeout=30, follow_redirects=False) as client:
            for user in users:
                session = await walk_username(client, user["upn"])
                outcome, _ = await post_password(client, session, user["password"])
                if outcome != "success":
                    raise SystemExit(f"warm-up sign-in of {user['upn']} on {url} ended {outcome}")


# --- report ------------------------------------------------------------------------------------------------

def markdown(report: dict) -> str:
    lines = [f"### {report['profile']} profile, {report['started']}", "",
             f"Machine: {report['machine']['cpus']} CPUs, {report['machine']['python']}; "
             f"DC {report['ad']['ldaps_url']}; portal nodes: {report['nodes']}; load from {report['loadgen']}.", "",
             "| what | conc. | req/s | p50 ms | p95 ms | p99 ms | ratio to direct bind | portal CPU ms/req "
             "| agent CPU ms/req | DC CPU ms/req | machine busy | outcomes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    ceiling = report["ceiling_per_second"] or float("nan")
    for row in report["direct"]:
        ratio = row["per_second"] / ceiling
        lines.append(f"| direct LDAPS {row['op']} | {row['connections']} conn | {row['per_second']} | "
                     f"{row['p50_ms']} | {row['p95_ms']} | {row['p99_ms']} | {ratio:.2f} | – | – | – | – | "
                     f"{row['count']} ok {row['failures'] or ''} |")
    for row in report["passthrough"]:
        per = row["cpu_ms_per_request"]
        portal_ms = sum(v for k, v in per.items() if k.startswith("daphne"))
        what = ("password POST (pre-walked sessions)" if row["mode"] == "post"
                else "whole sign-in (username + password)")
        label = f"{what}{' [py-spy attached]' if row.get('profiled') else ''}"
        lines.append(f"| {label} | {row['concurrency']} | {row['per_second']} | {row['p50_ms']} | {row['p95_ms']} | "
                     f"{row['p99_ms']} | {row['per_second'] / ceiling:.2f} | {portal_ms:.2f} | "
                     f"{per.get('agent', 0):.2f} | {per.get('samba', 0):.2f} | {row['machine_busy_fraction']:.0%} | "
                     f"{', '.join(f'{k} {v}' for k, v in sorted(row['outcomes'].items()))} |")
    lines += ["", f"Ceiling (best direct bind rate): {ceiling} binds/s. Best pass-through password POST rate: "
              f"{report['best_passthrough_per_second']} req/s, ratio **{report['ratio']:.2f}**.", ""]
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=["embedded", "production"], default="embedded")
    parser.add_argument("--concurrency", default="8,32", help="comma-separated HTTP client counts")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed window (max 120)")
    parser.add_argument("--direct-connections", default="2,8", help="comma-separated LDAP connection counts")
    parser.add_argument("--modes", default="post,cycle", help="post (pre-walked password POSTs) and/or cycle")
    parser.add_argument("--ad-dir", default="", help="reuse the test bed running in DIR (and its namespace)")
    parser.add_argument("--netns", choices=["auto", "yes", "no"], default="auto",
                        help="run everything in a fresh network namespace (auto: yes unless --ad-dir)")
    parser.add_argument("--py-spy", type=float, default=0.0, metavar="SECONDS",
                        help="also record the portal with py-spy during an extra post window")
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    parser.add_argument(INNER_FLAG, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.duration = min(max(1.0, args.duration), 120.0)
    return args


def reexec_in_netns(argv: list[str]) -> int:
    inner = " ".join(map(_quote, [sys.executable, str(Path(__file__).resolve()), *argv, INNER_FLAG]))
    log("re-running inside a fresh network namespace (unshare --net)")
    return subprocess.call(["unshare", "--net", "bash", "-c", f"ip link set lo up && exec {inner}"])


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    use_netns = args.netns == "yes" or (args.netns == "auto" and not args.ad_dir)
    if use_netns and not args._in_netns:
        return reexec_in_netns(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = Path(tempfile.mkdtemp(prefix="pta-bench-"))
    services = PrivateServices(work / "services") if (use_netns and args.profile == "production") else None
    ad_dir = Path(args.ad_dir) if args.ad_dir else work / "ad"
    portal = None
    report: dict = {"profile": args.profile, "started": stamp, "netns": use_netns,
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "kernel": platform.release()},
                    "loadgen": "httpx.AsyncClient, one keep-alive connection per client, in the bench process"}
    failed = False
    try:
        if services:
            (work / "services").mkdir()
            services.start()
        log(f"AD test bed in {ad_dir}")
        facts = ad_start(ad_dir)
        users = good_users(facts)
        report["ad"] = {"ldaps_url": facts["ldaps_url"], "users": [u["upn"] for u in users]}
        samba_pids = descendants(int(facts["pid"]))

        report["direct"] = []
        for read in (False, True):
            for n in [int(x) for x in args.direct_connections.split(",") if x]:
                row = direct_binds(facts, users, connections=n, duration=args.duration, read=read)
                log(f"direct {row['op']} x{n}: {row['per_second']}/s p50 {row['p50_ms']} ms")
                report["direct"].append(row)
        ceiling = max(r["per_second"] for r in report["direct"] if r["op"] == "bind")
        report["ceiling_per_second"] = ceiling

        from tests.fixtures.portal import make_portal, wait_for

        timings = {"PTA_AGENT_HEARTBEAT_SECONDS": "10", "PTA_PRESENCE_FLUSH_SECONDS": "2",
                   "PTA_LAST_SEEN_SECONDS": "30", "PTA_LOG_LEVEL": "WARNING"}
        portal = make_portal(args.profile, timings=timings)
        tenant = portal.tenant_create("Bench", facts["upn_suffix"])
        nodes = [start_daphne(portal, "web1")]
        if args.profile == "production":
            nodes.append(start_daphne(portal, "web2"))
        agent = start_agent(portal, nodes[0], tenant, facts)
        wait_for(lambda: local_agents(nodes[0]) == 1, timeout=20, message="the agent to connect")
        report["nodes"] = len(nodes)
        report["topology"] = ("one Daphne node, agent connected to it" if len(nodes) == 1 else
                              "two Daphne nodes, agent connected to web1; clients alternate web1/web2, so half of "
                              "the sign-ins cross nodes over RedisPubSubChannelLayer")
        urls = [n.url for n in nodes]
        asyncio.run(warm_up(urls, users))
        groups = {f"daphne_{n.name}": [n.proc.pid] for n in nodes}
        groups["agent"] = [agent.proc.pid]
        groups["samba"] = samba_pids
        if services:
            assert services.redis is not None  # started above
            groups["postgres"] = [-services.postmaster_pid()]
            groups["redis"] = [services.redis.pid]
        report["pids"] = groups

        report["passthrough"] = []
        modes = [m for m in args.modes.split(",") if m]
        for concurrency in [int(x) for x in args.concurrency.split(",") if x]:
            rate_guess = 0.0
            for mode in sorted(modes):  # "cycle" first: it calibrates how many sessions "post" needs
                prewalk = 0
                if mode == "post":
                    guess = max(rate_guess * 1.6, 150.0)
                    prewalk = min(MAX_PREWALK_SESSIONS // concurrency,
                                  math.ceil(guess * args.duration / concurrency) + 5)
                log(f"pass-through {mode} c={concurrency} for {args.duration:.0f} s")
                row = asyncio.run(load_window(urls, users, concurrency=concurrency, duration=args.duration,
                                              mode=mode, cpu_groups=groups, prewalk_per_client=prewalk))
                log(f"  {row['per_second']}/s p50 {row['p50_ms']} p95 {row['p95_ms']} p99 {row['p99_ms']} ms, "
                    f"portal CPU {row['cpu_ms_per_request']}, outcomes {row['outcomes']}")
                report["passthrough"].append(row)
                rate_guess = row["per_second"] if mode == "cycle" else rate_guess
                if set(row["outcomes"]) != {"success"}:
                    failed = True
                    log(f"  NOT ALL SUCCESS: {row['outcomes']} {row['errors'][:5]}")

        if args.py_spy > 0:
            report["profile_files"] = record_profile(args, urls, users, groups, nodes, out, stamp, report)

        posts = [r["per_second"] for r in report["passthrough"] if r["mode"] == "post" and not r.get("profiled")]
        best = max(posts or [r["per_second"] for r in report["passthrough"]] or [0])
        report["best_passthrough_per_second"] = best
        report["ratio"] = round(best / ceiling, 3) if ceiling else float("nan")
        for node in nodes:
            if not node.running:
                failed = True
                log(f"Daphne {node.name} died:\n{node.log()[-2000:]}")
            tail_500 = [line for line in node.log().splitlines() if "Traceback" in line or " 500 " in line]
            if tail_500:
                report.setdefault("portal_log_errors", {})[node.name] = tail_500[:20]
        agent_errors = [line for line in agent.log().splitlines() if "ERROR" in line or "Traceback" in line]
        if agent_errors:
            report["agent_log_errors"] = agent_errors[:20]
    finally:
        if portal is not None:
            for node in portal.nodes:  # keep the evidence: the portal's directory is removed on close
                lines = node.log().splitlines()
                keep = [i for i, line in enumerate(lines) if "Traceback" in line or "Error" in line]
                if keep:
                    report.setdefault("portal_log_excerpts", {})[node.name] = lines[max(0, keep[0] - 2):keep[0] + 60]
                    (out / f"{stamp}-{args.profile}-{node.name}-daphne.log").write_text("\n".join(lines[-4000:]))
            with contextlib.suppress(BaseException):
                portal.close()
        if not args.ad_dir:
            ad_stop(ad_dir)
        if services:
            services.stop()
        shutil.rmtree(work, ignore_errors=True)

    report["failed"] = failed
    name = f"{stamp}-{args.profile}"
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (out / f"{name}.md").write_text(table)
    print(table)
    log(f"results: {out / name}.json and .md")
    if failed:
        log("FAILED: not every sign-in succeeded (see outcomes and errors in the JSON)")
    return 1 if failed else 0


def record_profile(args, urls, users, groups, nodes, out: Path, stamp: str, report: dict) -> list[str]:
    """py-spy on every Daphne process during one extra "post" window (started after the pre-walk)."""
    py_spy = shutil.which("py-spy")
    if not py_spy:
        log("py-spy not found on PATH: no profile")
        return []
    concurrency = max(int(x) for x in args.concurrency.split(",") if x)
    files, procs = [], []

    def start() -> None:
        for node in nodes:
            path = out / f"{stamp}-{args.profile}-{node.name}-profile.folded"
            procs.append(subprocess.Popen([py_spy, "record", "-d", str(int(args.py_spy)), "-r", "200", "-p",
                                           str(node.proc.pid), "-f", "raw", "-o", str(path), "--nonblocking"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            files.append(str(path))
        time.sleep(0.5)

    rate_guess = max((r["per_second"] for r in report["passthrough"]), default=150)
    prewalk = min(MAX_PREWALK_SESSIONS // concurrency, math.ceil(rate_guess * 1.6 * args.py_spy / concurrency) + 5)
    log(f"py-spy: recording the portal for {args.py_spy:.0f} s of password POSTs at c={concurrency}")
    row = asyncio.run(load_window(urls, users, concurrency=concurrency, duration=args.py_spy, mode="post",
                                  cpu_groups=groups, prewalk_per_client=prewalk, on_start=start))
    row["profiled"] = True
    report["passthrough"].append(row)
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
