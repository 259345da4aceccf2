"""Reads behind the health page, /api/agents/health/ and /healthz.

An agent's live state (connected, node, load, DC reachability) comes from the presence registry; its last 24
hours and the charts' history from the per-minute rollups (``SignInRollup``), so a page that refreshes every few
seconds sums a few hundred rows instead of reading the sign-in records. Only the queue waits of the last hour,
which the rollups do not keep, are read from the records.
"""

from __future__ import annotations

import asyncio
import datetime
import logging

from asgiref.sync import sync_to_async
from django.db.models import ExpressionWrapper, F, FloatField, Sum
from django.utils import timezone

from agents.models import Agent
from agents.queue import slot_queues
from agents.selectors import agent_presence, agent_status
from health.models import SignInRollup
from health.services.rollups import percentile
from signin.models import SignInEvent
from tenant.models import Tenant

logger = logging.getLogger(__name__)

HEALTH_WINDOW_HOURS = 24
# Fewer than this many active agents is a warning (vendors recommend three); none is critical.
RECOMMENDED_ACTIVE_AGENTS = 2
# The charts' windows; minutes are summed into wider points so that no chart has more than HISTORY_POINTS.
HISTORY_HOURS = (1, 3, 6, 12, 24)
DEFAULT_HISTORY_HOURS = 3
HISTORY_POINTS = 180
# The latency chart draws the busiest agents of the window only: more lines than this cannot be told apart.
LATENCY_SERIES = 6
# /healthz: a part that has not answered by then is failing (a load balancer's probe must not hang on it).
READINESS_TIMEOUT_SECONDS = 2.0


async def health_tenants(*, user, slug: str = "") -> list[Tenant]:
    """Whose health this administrator may see: their own tenant, or any (``slug``: that one) for a platform
    administrator."""
    if user.is_superuser:
        query = Tenant.objects.filter(slug=slug) if slug else Tenant.objects.all()
    else:
        query = Tenant.objects.filter(pk=user.tenant_id)
    return [tenant async for tenant in query.order_by("name")]


def _weighted(total: float | None, count: float) -> float | None:
    return round(total / count, 1) if count and total is not None else None


def _times_count(field: str) -> ExpressionWrapper:
    # A minute's percentile weighted by its sign-ins: summed, then divided by the count, it is the mean of the
    # per-minute percentiles (the rollups keep no samples to take a true percentile of a longer span).
    return ExpressionWrapper(F(field) * F("count"), output_field=FloatField())


def _latency_by(rollups, *keys: str) -> list[dict]:
    return list(rollups.filter(latency_p50_ms__isnull=False).order_by().values(*keys).annotate(
        n=Sum("count"), p50=Sum(_times_count("latency_p50_ms")), p95=Sum(_times_count("latency_p95_ms"))))


def _agent_rows(tenant_ids: list[str]) -> list[dict]:
    now = timezone.now()
    agents = list(Agent.objects.filter(tenant_id__in=tenant_ids).select_related("tenant")
                  .prefetch_related("domains").order_by("tenant__name", "name"))
    rollups = SignInRollup.objects.filter(tenant_id__in=tenant_ids, agent__isnull=False,
                                          minute__gte=now - datetime.timedelta(hours=HEALTH_WINDOW_HOURS))
    counts: dict[str, dict[str, int]] = {}
    for row in rollups.order_by().values("agent_id", "outcome").annotate(n=Sum("count")):
        counts.setdefault(str(row["agent_id"]), {})[row["outcome"]] = row["n"]
    latency = {str(row["agent_id"]): row for row in _latency_by(rollups, "agent_id")}
    rows = []
    for agent in agents:
        key = str(agent.pk)
        ms = latency.get(key, {"n": 0, "p50": None, "p95": None})
        rows.append({
            "id": key, "name": agent.name, "tenant": agent.tenant.slug, "tenant_name": agent.tenant.name,
            "hostname": agent.hostname,
            "version": agent.version, "domains": [d.name for d in agent.domains.all()],
            "revoked": agent.revoked_at is not None, "expired": agent.certificate_not_after <= now,
            "last_seen": agent.last_seen.isoformat() if agent.last_seen else None,
            "certificate_not_after": agent.certificate_not_after.isoformat(),
            "certificate_days_left": (agent.certificate_not_after - now).days,
            "outcomes_24h": counts.get(key, {}),
            "agent_ms_p50": _weighted(ms["p50"], ms["n"]),
            "agent_ms_p95": _weighted(ms["p95"], ms["n"]),
        })
    return rows


def _queue_waits(tenant_ids: list[str]) -> dict[str, list[float]]:
    since = timezone.now() - datetime.timedelta(hours=1)
    waits: dict[str, list[float]] = {}
    rows = (SignInEvent.objects.filter(tenant_id__in=tenant_ids, created_at__gte=since, queued_ms__isnull=False)
            .order_by("-created_at").values_list("tenant_id", "queued_ms")[:20_000])
    for tenant_id, queued_ms in rows:
        waits.setdefault(str(tenant_id), []).append(queued_ms or 0.0)
    return waits


def _history(tenant_ids: list[str], hours: int) -> dict:
    """Sign-ins by outcome, and each busy agent's round trip, per point of the last ``hours``, the current
    minute included (as far as it is rolled up yet)."""
    bucket = max(1, hours * 60 // HISTORY_POINTS)
    points = hours * 60 // bucket
    end = timezone.now().replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    start = end - datetime.timedelta(minutes=points * bucket)
    starts = [start + datetime.timedelta(minutes=i * bucket) for i in range(points)]

    def index(minute: datetime.datetime) -> int:
        return int((minute - start).total_seconds() // 60) // bucket

    rollups = SignInRollup.objects.filter(tenant_id__in=tenant_ids, minute__gte=start, minute__lt=end)
    signins: list[dict[str, int]] = [{} for _ in starts]
    for row in rollups.order_by().values("minute", "outcome").annotate(n=Sum("count")):
        outcomes = signins[index(row["minute"])]
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + row["n"]
    by_agent: dict[str, list[list[float]]] = {}  # agent → per point: [sign-ins, Σ p50 × n, Σ p95 × n]
    for row in _latency_by(rollups.filter(agent__isnull=False), "minute", "agent_id"):
        sums = by_agent.setdefault(str(row["agent_id"]), [[0, 0.0, 0.0] for _ in starts])[index(row["minute"])]
        sums[0] += row["n"]
        sums[1] += row["p50"]
        sums[2] += row["p95"]
    busiest = sorted(by_agent, key=lambda a: -sum(s[0] for s in by_agent[a]))[:LATENCY_SERIES]
    names = {str(pk): name for pk, name in Agent.objects.filter(pk__in=busiest).values_list("pk", "name")}
    return {
        "hours": hours, "bucket_minutes": bucket, "start": start.isoformat(), "end": end.isoformat(),
        "signins": [{"at": at.isoformat(), "outcomes": outcomes} for at, outcomes in zip(starts, signins, strict=True)],
        "latency": [{"agent": agent_id, "name": names.get(agent_id, agent_id), "points": [
            {"at": at.isoformat(), "p50": _weighted(p50, n), "p95": _weighted(p95, n)}
            for at, (n, p50, p95) in zip(starts, by_agent[agent_id], strict=True) if n]} for agent_id in busiest],
    }


async def agents_health(*, tenants: list[Tenant], hours: int = DEFAULT_HISTORY_HOURS) -> dict:
    """Every agent of these tenants with its status, connection, load (serving, or queueing when every slot is
    taken) and last 24 hours; per tenant a level: ok, warning (fewer than RECOMMENDED_ACTIVE_AGENTS active) or
    critical (none); and the charts' history of the last ``hours``."""
    tenant_ids = [str(t.pk) for t in tenants]
    # Called from Django's views, whose handler manages the database connection (not from a consumer).
    rows = await sync_to_async(_agent_rows)(tenant_ids)
    for row in rows:
        presence = None if row["revoked"] else await agent_presence(agent_id=row["id"])
        row["connected"] = presence is not None
        row["status"] = agent_status(revoked=row["revoked"], expired=row["expired"],
                                     connected=presence is not None).value
        row.update({"node": presence.node_id, "in_flight": presence.in_flight, "capacity": presence.capacity,
                    "dc_reachable": presence.dc_reachable,
                    "load": "queueing" if presence.in_flight >= presence.capacity else "serving"} if presence else
                   {"node": None, "in_flight": None, "capacity": None, "dc_reachable": None, "load": None})
    waits = await sync_to_async(_queue_waits)(tenant_ids)
    summaries: dict[str, dict] = {t.slug: {
        "name": t.name, "active": 0, "agents": 0,
        # Sign-ins waiting for an agent slot on the node that answers, and how long they waited in the last hour.
        "queued_here": slot_queues.length(str(t.pk)), "queued_last_hour": len(waits.get(str(t.pk), [])),
        "queue_wait_ms_p50": percentile(waits.get(str(t.pk), []), 0.5),
        "queue_wait_ms_p95": percentile(waits.get(str(t.pk), []), 0.95),
    } for t in tenants}
    for row in rows:
        summary = summaries[row["tenant"]]
        summary["agents"] += 1
        summary["active"] += row["status"] == "active"
    for summary in summaries.values():
        summary["level"] = ("critical" if summary["active"] == 0 else
                            "warning" if summary["active"] < RECOMMENDED_ACTIVE_AGENTS else "ok")
    history = await sync_to_async(_history)(tenant_ids, hours)
    return {"tenants": summaries, "agents": rows, "window_hours": HEALTH_WINDOW_HOURS, "history": history}


# --- readiness ------------------------------------------------------------------------------------------


def _database_answers() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _cache_answers() -> None:
    from django.core.cache import cache

    cache.get("healthz")


async def _channel_layer_answers() -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer is configured")
    # A publish to a group nobody joined: one round trip to Redis, and nothing for anyone to receive.
    await layer.group_send("healthz", {"type": "healthz"})


async def readiness_failures() -> list[str]:
    """The parts of this node that do not answer within READINESS_TIMEOUT_SECONDS: "database", "cache",
    "channel_layer". Each is one cheap round trip; none reads or writes tenant data."""
    checks = {
        # The database in the request's own thread, where Django opens and returns its connections; the cache
        # in another, so that a database that hangs cannot make the cache look late too.
        "database": sync_to_async(_database_answers)(),
        "cache": sync_to_async(_cache_answers, thread_sensitive=False)(),
        "channel_layer": _channel_layer_answers(),
    }

    async def failing(part: str, check) -> bool:
        try:
            await asyncio.wait_for(check, READINESS_TIMEOUT_SECONDS)
        except Exception as exc:  # whatever the error, that part is not ready
            logger.warning("readiness: the %s is failing: %r", part.replace("_", " "), exc)
            return True
        return False

    results = await asyncio.gather(*(failing(part, check) for part, check in checks.items()))
    return [part for part, failed in zip(checks, results, strict=True) if failed]
