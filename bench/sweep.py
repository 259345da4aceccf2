"""The health tasks' cost per run as agents and tenants grow (issue 27): what one run of each periodic task of
health/tasks.py costs (time, SQL statements, Redis commands) with A agents over T tenants, run in this process
against a fresh portal database, as a Celery worker runs them.

    .venv/bin/python bench/sweep.py --tenants 1,100,10000 --agents 100,1000,5000 [--signins 5000] [--runs 3]
    .venv/bin/python bench/sweep.py … --tree /tmp/main-copy     # the same against another checkout's code

Run it inside `/work/tools/nsrun` (PostgreSQL on 127.0.0.1:5432, PTA_TEST_PG_URL, and a private Redis on
loopback): the database is made and dropped here (tests.fixtures.portal.make_portal), the Redis keys live under a
prefix of their own and go with it.

Per tenant count, a fresh set of tables; per agent count (ascending, agents added to those already there, agent j
of tenant j mod T): rows written in bulk (no keys, no certificates: the tasks read rows, not certificates), 90 %
of the agents present in Redis as a node's flush writes them, and ``--signins`` sign-in records (in place of the
level before's) spread over the agents in the last two minutes (what a rollup run reads). Then each task: its
first run (the marks and incidents a new fleet causes: work per change, which is the point of the run) and
``--runs`` more with nothing changed (the steady cost, what a sweep costs every PTA_HEALTH_SWEEP_SECONDS), timed,
its statements counted (CaptureQueriesContext) and its Redis commands (INFO commandstats).
Summary line, per point:
`sweep T tenants A agents: availability X ms N sql R redis, alerts X ms N sql, rollups X ms N sql`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LATER = datetime.timedelta(minutes=5)  # beyond PTA_ALERT_GRACE_SECONDS: the fleet's registration is not a restart
MAX_AGENTS = 20_000
MAX_TENANTS = 20_000


def redis_calls(client) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def measure(task, *, runs: int, redis_client, refresh) -> dict:
    """One first run, then ``runs`` more: each one's milliseconds, SQL statements and Redis commands. Before
    each, ``refresh()`` (untimed) republishes the present agents, as the nodes do every 2 s: a run slower than the
    presence TTL would otherwise see the fleet lapse."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    samples: list[dict] = []
    for _ in range(1 + runs):
        refresh()
        connection.queries_log.clear()  # it keeps 9,000: past that the capture's slice of it counts nothing
        before = redis_calls(redis_client)
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            result = task()
            elapsed = (time.perf_counter() - started) * 1000
        after = redis_calls(redis_client)
        commands = sum(after.get(k, 0) - before.get(k, 0) for k in after if k not in ("info",))
        samples.append({"ms": round(elapsed, 1), "sql": len(queries), "redis": commands,
                        "result": result if isinstance(result, (int, dict)) else str(result)})
    steady = samples[1:] or samples
    return {"first": samples[0], "steady": samples[1:],
            "steady_ms": round(statistics.median(s["ms"] for s in steady), 1),
            "steady_sql": max(s["sql"] for s in steady), "steady_redis": max(s["redis"] for s in steady)}


def seed_tenants(count: int) -> list:
    from tenant.models import Domain, Tenant

    tenants = [Tenant(name=f"Sweep {i}", slug=f"sweep-{i}") for i in range(count)]
    Tenant.objects.bulk_create(tenants, batch_size=2000)
    Domain.objects.bulk_create([Domain(tenant=t, name=f"t{i}.sweep.test", verified=True)
                                for i, t in enumerate(tenants)], batch_size=2000)
    return tenants


def seed_agents(tenants: list, first: int, total: int) -> list:
    from django.utils import timezone

    from agents.models import Agent

    not_after = timezone.now() + datetime.timedelta(days=365)
    agents = [Agent(tenant=tenants[j % len(tenants)], name=f"agent-{j}", certificate_pem="-", certificate_serial=str(j),
                    key_fingerprint=uuid.uuid4().hex * 2, certificate_not_after=not_after)
              for j in range(first, total)]
    Agent.objects.bulk_create(agents, batch_size=2000)
    return agents


def publish_presence(agents: list) -> None:
    """90 % of ``agents`` present, as a node's flush publishes them (one script per 500 records)."""
    from asgiref.sync import async_to_sync

    from agents.presence import PresenceRecord, presence_close, presence_registry

    now = time.time()
    records = [PresenceRecord(agent_id=str(a.pk), tenant_id=str(a.tenant_id), domains=("sweep.test",), node_id="web1",
                              channel_name=f"specific.{uuid.uuid4().hex}", key_id=a.key_fingerprint, capacity=64,
                              connected_at=now, last_beat=now)
               for j, a in enumerate(agents) if j % 10]

    async def publish() -> None:
        registry = presence_registry()
        try:
            for start in range(0, len(records), 500):
                await registry.publish(records[start:start + 500])
        finally:
            await presence_close()

    async_to_sync(publish)()


def seed_signins(agents: list, count: int) -> None:
    """``count`` sign-in records over the last two minutes, spread over the agents (and their tenants)."""
    from django.utils import timezone

    from signin.models import SignInEvent

    now = timezone.now()
    outcomes = ("success", "success", "success", "invalid_credentials")
    events = [SignInEvent(created_at=now - datetime.timedelta(seconds=120 * i / count), tenant_id=agents[i % len(
        agents)].tenant_id, agent=agents[i % len(agents)], username=f"user{i}@sweep.test", outcome=outcomes[i % 4],
        total_ms=10.0 + i % 7, agent_ms=5.0 + i % 5) for i in range(count)]
    SignInEvent.objects.bulk_create(events, batch_size=2000)


def truncate() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE tenant_tenant, signin_signinevent, health_signinrollup CASCADE")


def flush_redis(client, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start:start + 1000])


def run(args) -> dict:
    import redis
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from health import tasks
    from health.services.incidents import alerts_evaluate

    client = redis.Redis.from_url(settings.PTA_REDIS_URL)
    import health.services.availability

    report: dict = {"points": [], "load": os.getloadavg(), "tree": str(args.tree or REPO),
                    "code": health.services.availability.__file__}
    print("measuring the code of", report["code"], flush=True)
    for tenant_count in sorted({min(MAX_TENANTS, int(t)) for t in args.tenants.split(",")}):
        truncate()
        flush_redis(client, settings.PTA_REDIS_PREFIX)
        tenants = seed_tenants(tenant_count)
        agents: list = []
        for agent_count in sorted({min(MAX_AGENTS, int(a)) for a in args.agents.split(",")}):
            new = seed_agents(tenants, len(agents), agent_count)
            agents += new
            with connection.cursor() as cursor:  # --signins records in the window, over every agent so far
                cursor.execute("TRUNCATE signin_signinevent, health_signinrollup")
            seed_signins(agents, args.signins)
            point: dict = {"tenants": tenant_count, "agents": agent_count}
            later = timezone.now() + LATER
            options = {"runs": args.runs, "redis_client": client, "refresh": lambda a=agents: publish_presence(a)}
            point["availability"] = measure(tasks.mark_agent_availability, **options)
            point["alerts"] = measure(lambda at=later: alerts_evaluate(now=at), **options)
            point["certificates"] = measure(tasks.sweep_certificates, **options)
            point["rollups"] = measure(tasks.rollup_signins, **options)
            report["points"].append(point)
            print(summary(point), flush=True)
    client.close()
    report["load_after"] = os.getloadavg()
    return report


def summary(point: dict) -> str:
    a, al, r = point["availability"], point["alerts"], point["rollups"]
    return (f"sweep {point['tenants']} tenants {point['agents']} agents: availability {a['steady_ms']:g} ms "
            f"{a['steady_sql']} sql {a['steady_redis']} redis (first run {a['first']['ms']:g} ms "
            f"{a['first']['sql']} sql), alerts {al['steady_ms']:g} ms {al['steady_sql']} sql (first run "
            f"{al['first']['ms']:g} ms {al['first']['sql']} sql), rollups {r['steady_ms']:g} ms {r['steady_sql']} sql")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", default="1,100,10000")
    parser.add_argument("--agents", default="100,1000,5000")
    parser.add_argument("--signins", type=int, default=5000, help="sign-in records in the rollup's window")
    parser.add_argument("--runs", type=int, default=3, help="steady runs after the first, per task")
    parser.add_argument("--tree", type=Path, help="another checkout whose code to measure (its health/ and agents/)")
    parser.add_argument("--out", type=Path, help="the JSON report")
    parser.add_argument("--_inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tree and not args._inner:
        # Again in a Python that reads the other checkout only: without `site` (-S), so that .venv's editable
        # install, which maps the portal's packages to this checkout, is not loaded; .venv's packages by path.
        import site
        import subprocess

        tree = args.tree.resolve()
        path = [str(tree), str(tree / "agents" / "onprem"), *site.getsitepackages()]
        out = [str(args.out.resolve())] if args.out else []
        return subprocess.call([sys.executable, "-S", str(Path(__file__).resolve()), *argv, "--_inner",
                                *(["--out", *out] if out else [])],
                               cwd=tree, env={**os.environ, "PYTHONPATH": os.pathsep.join(path)})
    code = args.tree.resolve() if args.tree else REPO
    sys.path.insert(0, str(code))
    from tests.fixtures.portal import make_portal

    portal = make_portal("production", pg_url=os.environ.get("PTA_TEST_PG_URL", ""))
    try:
        os.environ.update(portal.env)
        os.environ["PTA_LOG_LEVEL"] = "WARNING"
        import django

        django.setup()
        report = run(args)
    finally:
        from django.db import connections

        connections.close_all()
        portal.close()
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
