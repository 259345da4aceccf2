"""What choosing an agent reads, as a tenant's agents grow: the presence registry's full read of a tenant (every
record, as each sign-in did before issue 27's second pass) against the bounded sample a sign-in reads now
(agents.selectors.SAMPLE records), in this process against a Redis on loopback. No portal, no agent: the records are
written as a node's flush writes them, then each read is timed ``--reads`` times and its median and p99 printed, with
the bytes it brings back.

    .venv/bin/python bench/choice.py --agents 100,1000,5000 [--redis redis://127.0.0.1:6379/12] [--reads 300]

Run it inside the benchmark's namespace (its own Redis): `/work/tools/nsrun` or `bench/run`'s. The keys are written
under a prefix of their own and deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def record(n: int, tenant_id: str):
    from agents.presence import PresenceRecord

    return PresenceRecord(agent_id=str(uuid.UUID(int=n)), tenant_id=tenant_id, domains=("t0.fleet.test",),
                          node_id="web1", channel_name=f"specific.{uuid.uuid4().hex}!{uuid.uuid4().hex}",
                          key_id=uuid.uuid4().hex * 2, in_flight=n % 3, capacity=64, version="bench",
                          connected_at=time.time(), last_beat=time.time(), capabilities=("groups",), protocol=2,
                          node_protocol=2)


async def timed(read, reads: int) -> tuple[float, float, int]:
    samples, size = [], 0
    for _ in range(reads):
        started = time.perf_counter()
        found = await read()
        samples.append((time.perf_counter() - started) * 1000)
        size = len(found)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))], size


async def main(args: argparse.Namespace) -> None:
    import django

    django.setup()
    from agents.presence import RedisPresence
    from agents.selectors import SAMPLE, _serving

    registry = RedisPresence(args.redis, prefix=f"bench-choice-{uuid.uuid4().hex[:8]}", ttl_seconds=600)
    tenant = str(uuid.uuid4())
    written = 0
    print("| agents of the tenant | full read p50 / p99 ms (records) | sample read p50 / p99 ms (records) |")
    print("| --- | --- | --- |")
    try:
        for size in args.agents:
            batch = [record(n, tenant) for n in range(written, size)]
            for i in range(0, len(batch), 500):
                await registry.publish(batch[i:i + 500])
            written = size

            async def full():
                return _serving(await registry.for_tenant(tenant_id=tenant), tenant_id=tenant,
                                domain="t0.fleet.test", capability="")

            async def sample():
                records, _ = await registry.sample_tenant(tenant_id=tenant, count=SAMPLE)
                return _serving(records, tenant_id=tenant, domain="t0.fleet.test", capability="")

            f50, f99, fn = await timed(full, args.reads)
            s50, s99, sn = await timed(sample, args.reads)
            print(f"| {size:,} | {f50:.2f} / {f99:.2f} ({fn}) | {s50:.2f} / {s99:.2f} ({sn}) |", flush=True)
    finally:
        keys = [k async for k in registry.client.scan_iter(match=f"{registry.prefix}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await registry.client.delete(*keys[i:i + 1000])
        await registry.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", default="100,1000,5000",
                        type=lambda v: sorted(int(n) for n in v.split(",")), help="tenant sizes, growing")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--reads", type=int, default=300, help="reads timed per size and kind (bounded)")
    arguments = parser.parse_args()
    arguments.reads = max(10, min(arguments.reads, 5000))
    asyncio.run(main(arguments))
