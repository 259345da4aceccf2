"""What one round trip to each store costs the calling thread's CPU: redis-py, psycopg and sqlite3, driver level.

    .venv/bin/python bench/roundtrips.py [--ops 3000]       # inside /work/tools/nsrun (its Redis and PostgreSQL)

py-spy cannot tell a thread that works from one that a send has just made wait for the server it woke (both are
running to Linux), so the profile of `bench/run --costs --py-spy` overstates what talking to Redis and PostgreSQL
costs on a busy machine. This measures it directly: ``time.thread_time()`` (the calling thread's user + system
CPU, the send's and the receive's kernel work included, the server's not) around ``--ops`` round trips of each
kind, the same way the portal makes them (redis-py's synchronous client with hiredis, one pooled connection;
psycopg 3 on loopback TCP; the sqlite3 module on a file), against small rows. Prints µs of CPU and of wall time per
operation. Driver level only: what Django's cache and ORM add on top is in the profile's own buckets.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("PTA_TEST_PG_URL", "postgres://postgres:postgres@127.0.0.1:5432/postgres")


def per_op(action: Callable[[], object], ops: int) -> tuple[float, float]:
    """µs of this thread's CPU and of wall time per call of ``action``, after ops // 10 calls of warm-up."""
    for _ in range(max(1, ops // 10)):
        action()
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(ops):
        action()
    return (time.thread_time() - cpu) * 1e6 / ops, (time.perf_counter() - wall) * 1e6 / ops


def measure(ops: int) -> dict[str, tuple[float, float]]:
    import psycopg
    import redis

    results: dict[str, tuple[float, float]] = {}
    prefix = f"bench-roundtrips-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.set(f"{prefix}:k", b"x" * 200)
        results["redis GET (200 B)"] = per_op(lambda: client.get(f"{prefix}:k"), ops)
        results["redis SET EX (200 B)"] = per_op(lambda: client.set(f"{prefix}:k", b"y" * 200, ex=60), ops)
        pipe_ops = max(1, ops // 2)

        def pipeline() -> None:
            with client.pipeline(transaction=False) as pipe:
                pipe.get(f"{prefix}:k")
                pipe.set(f"{prefix}:k", b"z" * 200, ex=60)
                pipe.execute()
        results["redis pipeline GET + SET"] = per_op(pipeline, pipe_ops)
    finally:
        client.delete(f"{prefix}:k")
        client.close()

    table = f"bench_roundtrips_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as pg:
        pg.execute(f"CREATE TEMP TABLE {table} (id int PRIMARY KEY, v text)")
        pg.execute(f"INSERT INTO {table} SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g")  # noqa: S608
        cursor = pg.cursor()
        results["psycopg SELECT by key (autocommit)"] = per_op(
            lambda: cursor.execute(f"SELECT * FROM {table} WHERE id = %s", (7,)).fetchall(), ops)  # noqa: S608

        def pg_write() -> None:
            with pg.transaction():
                pg.execute(f"UPDATE {table} SET v = %s WHERE id = %s", ("y" * 100, 7))  # noqa: S608
        results["psycopg BEGIN, UPDATE, COMMIT"] = per_op(pg_write, ops)

    with tempfile.TemporaryDirectory(prefix="bench-roundtrips-") as directory:
        lite = sqlite3.connect(Path(directory) / "db.sqlite3", isolation_level=None, check_same_thread=False)
        lite.execute("PRAGMA journal_mode=WAL")
        lite.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
        lite.executemany(f"INSERT INTO {table} VALUES (?, ?)", [(i, "x" * 100) for i in range(1, 1001)])  # noqa: S608
        results["sqlite3 SELECT by key"] = per_op(
            lambda: lite.execute(f"SELECT * FROM {table} WHERE id = ?", (7,)).fetchall(), ops)  # noqa: S608

        def lite_write() -> None:
            lite.execute("BEGIN")
            lite.execute(f"UPDATE {table} SET v = ? WHERE id = ?", ("y" * 100, 7))  # noqa: S608
            lite.execute("COMMIT")
        results["sqlite3 BEGIN, UPDATE, COMMIT"] = per_op(lite_write, ops)
        lite.close()
    return results


def thread_hops(ops: int) -> dict[str, tuple[float, float]]:
    """A hop from the event loop to a worker thread and back, as the portal's consumers make them (asgiref's
    ``sync_to_async``, and a plain ``run_in_executor``): the process's CPU (every thread's: the loop's submit and
    wake-up, the worker's wake-up and its call_soon_threadsafe) per hop of a no-op."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from asgiref.sync import sync_to_async

    def noop() -> None:
        return None

    async def hops(make) -> tuple[float, float]:
        for _ in range(max(1, ops // 10)):
            await make()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(ops):
            await make()
        return (time.process_time() - cpu) * 1e6 / ops, (time.perf_counter() - wall) * 1e6 / ops

    async def both() -> dict[str, tuple[float, float]]:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=4) as pool:
            plain = await hops(lambda: loop.run_in_executor(pool, noop))
        return {"thread hop: run_in_executor, no-op (process CPU)": plain,
                "thread hop: sync_to_async(thread_sensitive=False), no-op (process CPU)":
                    await hops(lambda: sync_to_async(noop, thread_sensitive=False)())}

    return asyncio.run(both())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=3000, help="round trips per kind (at most 100,000)")
    args = parser.parse_args(argv)
    ops = min(max(10, args.ops), 100_000)
    print(f"load average {os.getloadavg()[0]:.2f}; {ops} operations per kind")
    print("| operation | CPU µs (calling thread; hops: the process) | wall µs |")
    print("| --- | --- | --- |")
    for name, (cpu, wall) in {**measure(ops), **thread_hops(ops)}.items():
        print(f"| {name} | {cpu:.0f} | {wall:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
