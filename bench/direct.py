"""The directory alone: LDAPS binds (and reads) straight to the DC, as the agent makes them, the ceiling every
pass-through figure is compared with.

    closed_loop(...)  N connections, each sending its next bind as soon as the last is answered: the peak rate
    at_rate(...)      binds arriving at a given rate (Poisson, open loop) on N connections: the latency a bind
                      + read has at that rate, queueing included, what the pass-through's added latency is
                      measured against

Each connection is one thread with one persistent ldap3 connection (get_info=NONE, certificate verified), and
each bind is ``rebind(user=UPN, password=bytes, read_server_info=False)``; "read" adds the read-as-user subtree
search the agent does after every successful bind (pta_agent/directory.py::_bind_and_read).
"""

from __future__ import annotations

import contextlib
import math
import queue
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable

from bench import components

MAX_OPERATIONS_PER_WINDOW = 20000  # hard bound on any load loop, whatever the duration


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def latency_fields(latencies: list[float], prefix: str = "") -> dict[str, float]:
    """p50, p95 and p99 in ms as a result row keeps them: ``{prefix}p50_ms``…"""
    return {f"{prefix}p{p}_ms": round(percentile(latencies, p) * 1000, 2) for p in (50, 95, 99)}


def poisson_arrivals(rate: float, duration: float, *, seed: int = 1) -> list[float]:
    """Arrival offsets (seconds from the start) of a Poisson process of ``rate`` per second, the same for a
    given seed, so that the direct and the pass-through windows at one rate face the same arrivals."""
    rng = random.Random(seed)  # noqa: S311 - a load schedule, not a secret
    offsets: list[float] = []
    at = rng.expovariate(rate)
    while at < duration and len(offsets) < MAX_OPERATIONS_PER_WINDOW:
        offsets.append(at)
        at += rng.expovariate(rate)
    return offsets


def _open(facts: dict, user: dict):
    import ldap3

    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=facts["ca_file"])
    server = ldap3.Server(facts["ldaps_url"], use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=5)
    connection = ldap3.Connection(server, user=user["upn"], password=user["password"].encode(), read_only=True,
                                  receive_timeout=5, raise_exceptions=False)
    connection.open()
    connection.bind()
    return connection


def _operation(facts: dict, read: bool) -> Callable[[object, dict], str]:
    """One bind (+ read) on a connection: "" when it succeeded, else the DC's description."""
    import ldap3
    from pta_agent.directory import USER_ATTRIBUTES

    def bind_and_read(connection, user: dict) -> str:
        connection.rebind(user=user["upn"], password=user["password"].encode(), read_server_info=False)
        if connection.result.get("result") != 0:
            return str(connection.result.get("description"))
        if read:
            connection.search(facts["base_dn"], f"(userPrincipalName={user['upn']})", search_scope=ldap3.SUBTREE,
                              attributes=list(USER_ATTRIBUTES), size_limit=1)
        return ""

    return bind_and_read


def _start_connections(facts: dict, users: list[dict], count: int, barrier: threading.Barrier,
                       body: Callable[[int, object, dict], None]) -> list[threading.Thread]:
    """``count`` threads, each with one connection bound as its user (user i mod n): each waits at ``barrier``,
    runs ``body(index, connection, user)`` and unbinds."""

    def worker(index: int) -> None:
        user = users[index % len(users)]
        connection = _open(facts, user)
        try:
            barrier.wait(30)
            body(index, connection, user)
        finally:
            with contextlib.suppress(Exception):
                connection.unbind()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


def _row(*, op: str, connections: int, latencies: list[float], wall: float, failures: Counter,
         window: components.Window) -> dict:
    return {"kind": "direct", "op": op, "connections": connections, "count": len(latencies),
            "seconds": round(wall, 3), "per_second": round(len(latencies) / wall, 1),
            **latency_fields(latencies), "failures": dict(failures),
            "cpu_ms_per_op": {k: round(v * 1000 / max(1, len(latencies)), 3) for k, v in window.used.items()},
            **components.busy_fields(window)}


def closed_loop(facts: dict, users: list[dict], *, connections: int, duration: float, read: bool,
                groups: dict[str, list[int]]) -> dict:
    """Every connection binds (+ reads) in a loop for ``duration`` seconds, all released at once."""
    operation = _operation(facts, read)
    stop_at = [0.0]
    window = components.Window(groups)

    def go() -> None:  # runs once, when every connection is bound, before any thread is released
        window.start()
        stop_at[0] = time.monotonic() + duration

    barrier = threading.Barrier(connections + 1, action=go)
    latencies: list[list[float]] = [[] for _ in range(connections)]
    failures: Counter[str] = Counter()
    cap = MAX_OPERATIONS_PER_WINDOW // connections + 1

    def loop(index: int, connection, user: dict) -> None:
        mine = latencies[index]
        while time.monotonic() < stop_at[0] and len(mine) < cap:
            t0 = time.perf_counter()
            if failure := operation(connection, user):
                failures[failure] += 1
                continue
            mine.append(time.perf_counter() - t0)

    threads = _start_connections(facts, users, connections, barrier, loop)
    barrier.wait(30)
    started = window.started
    for thread in threads:
        thread.join(duration + 30)
    wall = time.monotonic() - started
    window.stop()
    return _row(op="bind+read" if read else "bind", connections=connections,
                latencies=[x for mine in latencies for x in mine], wall=wall, failures=failures, window=window)


def at_rate(facts: dict, users: list[dict], *, rate: float, duration: float, connections: int,
            groups: dict[str, list[int]]) -> dict:
    """Binds + reads arriving as a Poisson process of ``rate`` per second for ``duration`` seconds, each taken
    by the first free of ``connections`` connections; a latency runs from the arrival to the answer, so time
    spent waiting for a free connection counts, as it would for a sign-in."""
    operation = _operation(facts, read=True)
    arrivals = poisson_arrivals(rate, duration)
    work: queue.Queue[float | None] = queue.Queue()
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    lock = threading.Lock()
    ready = threading.Barrier(connections + 1)

    def serve(index: int, connection, user: dict) -> None:
        while (due := work.get()) is not None:
            failure = operation(connection, user)
            done = time.perf_counter()
            with lock:
                if failure:
                    failures[failure] += 1
                else:
                    latencies.append(done - due)

    threads = _start_connections(facts, users, connections, ready, serve)
    ready.wait(30)
    window = components.Window(groups).start()
    t0 = time.perf_counter()
    for offset in arrivals:
        if (wait := t0 + offset - time.perf_counter()) > 0:
            time.sleep(wait)
        work.put(t0 + offset)
    for _ in threads:
        work.put(None)
    for thread in threads:
        thread.join(duration + 30)
    wall = time.monotonic() - window.started
    window.stop()
    row = _row(op="bind+read", connections=connections, latencies=latencies, wall=wall, failures=failures,
               window=window)
    row.update(purpose="half-peak", offered_per_second=round(rate, 1), arrivals=len(arrivals))
    return row
