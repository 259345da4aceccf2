"""Reads about agents that the sign-in path and the health views use."""

from __future__ import annotations

from dataclasses import dataclass

import pta_protocol as protocol

from agents.connections import local_agents, node_id
from agents.presence import PresenceRecord, presence_registry
from agents.queue import slot_queues


@dataclass(frozen=True)
class ConnectedAgent:
    """A connected agent serving a domain: where its connection is, and whether it is in THIS process."""

    record: PresenceRecord
    local: bool

    @property
    def agent_id(self) -> str:
        return self.record.agent_id

    @property
    def in_flight(self) -> int:
        return self.record.in_flight

    @property
    def full(self) -> bool:
        return self.record.in_flight >= self.record.capacity

    @property
    def node_id(self) -> str:
        return self.record.node_id

    @property
    def channel_name(self) -> str:
        return self.record.channel_name


async def agents_connected(*, tenant_id: str, domain: str, capability: str = "") -> list[ConnectedAgent]:
    """The connected agents of the tenant that serve ``domain`` (and announced ``capability``, when given):
    least in flight first, full ones last, a local one before a remote one at equal load. For a local agent
    the live in-flight count is used."""
    here = node_id()
    domain = domain.strip().lower()
    found: list[ConnectedAgent] = []
    for record in await presence_registry().for_tenant(tenant_id=str(tenant_id)):
        if record.tenant_id != str(tenant_id) or domain not in record.domains:
            continue
        if capability and capability not in record.capabilities:
            continue
        consumer = local_agents.get(record.agent_id)
        local = (record.node_id == here and consumer is not None
                 and consumer.channel_name == record.channel_name and not consumer.closing)
        if local:
            record = PresenceRecord(**{**record.__dict__, "in_flight": consumer.in_flight,
                                       "capacity": consumer.capacity})
        found.append(ConnectedAgent(record=record, local=local))
    found.sort(key=lambda a: (a.full, a.in_flight, not a.local, -a.record.last_beat))
    return found


async def password_change_available(*, tenant_id: str, domain: str) -> bool:
    """Whether an agent that can change passwords (it has a service account) serves this domain right now."""
    return bool(await agents_connected(tenant_id=tenant_id, domain=domain,
                                       capability=protocol.CAPABILITY_PASSWORD_CHANGE))


async def agent_presence(*, agent_id: str) -> PresenceRecord | None:
    """The presence of one agent, or None when it is not connected anywhere."""
    return await presence_registry().for_agent(agent_id=str(agent_id))


# --- health ---------------------------------------------------------------------------------------------

HEALTH_WINDOW_HOURS = 24
# Fewer than this many active agents is a warning (vendors recommend three); none is critical.
RECOMMENDED_ACTIVE_AGENTS = 2


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 1)


def _agents_with_activity(tenant_ids: list[str]) -> list[dict]:
    import datetime

    from django.db.models import Count
    from django.utils import timezone

    from agents.models import Agent
    from signin.models import SignInEvent

    since = timezone.now() - datetime.timedelta(hours=HEALTH_WINDOW_HOURS)
    agents = list(Agent.objects.filter(tenant_id__in=tenant_ids).select_related("tenant")
                  .prefetch_related("domains").order_by("tenant__name", "name"))
    events = SignInEvent.objects.filter(agent__in=agents, created_at__gte=since)
    counts: dict[str, dict[str, int]] = {}
    for row in events.values("agent_id", "outcome").annotate(n=Count("id")):
        counts.setdefault(str(row["agent_id"]), {})[row["outcome"]] = row["n"]
    latencies: dict[str, list[float]] = {}
    for agent_id, agent_ms in events.exclude(agent_ms=None).order_by("-created_at").values_list(
            "agent_id", "agent_ms")[:20_000]:
        latencies.setdefault(str(agent_id), []).append(agent_ms)
    rows = []
    for agent in agents:
        key = str(agent.pk)
        rows.append({
            "id": key, "name": agent.name, "tenant": agent.tenant.slug, "hostname": agent.hostname,
            "version": agent.version, "domains": [d.name for d in agent.domains.all()],
            "revoked": agent.revoked_at is not None, "expired": agent.certificate_not_after <= timezone.now(),
            "last_seen": agent.last_seen.isoformat() if agent.last_seen else None,
            "certificate_not_after": agent.certificate_not_after.isoformat(),
            "certificate_days_left": (agent.certificate_not_after - timezone.now()).days,
            "outcomes_24h": counts.get(key, {}),
            "agent_ms_p50": _percentile(latencies.get(key, []), 0.5),
            "agent_ms_p95": _percentile(latencies.get(key, []), 0.95),
        })
    return rows


def _queue_waits(tenant_ids: list[str]) -> dict[str, list[float]]:
    import datetime

    from django.utils import timezone

    from signin.models import SignInEvent

    since = timezone.now() - datetime.timedelta(hours=1)
    waits: dict[str, list[float]] = {}
    rows = (SignInEvent.objects.filter(tenant_id__in=tenant_ids, created_at__gte=since, queued_ms__isnull=False)
            .order_by("-created_at").values_list("tenant_id", "queued_ms")[:20_000])
    for tenant_id, queued_ms in rows:
        waits.setdefault(str(tenant_id), []).append(queued_ms)
    return waits


async def agents_health(*, tenants: list) -> dict:
    """Every agent of these tenants with its status, connection, load and recent outcomes, and per tenant a
    level: ok, warning (fewer than RECOMMENDED_ACTIVE_AGENTS active) or critical (none)."""
    from asgiref.sync import sync_to_async

    # Called from Django's views, whose handler manages the database connection (not from a consumer).
    rows = await sync_to_async(_agents_with_activity)([str(t.pk) for t in tenants])
    for row in rows:
        presence = None if row["revoked"] else await agent_presence(agent_id=row["id"])
        row["connected"] = presence is not None
        row["status"] = ("revoked" if row["revoked"] else "expired" if row["expired"]
                         else "active" if presence else "inactive")
        row.update({"node": presence.node_id, "in_flight": presence.in_flight, "capacity": presence.capacity,
                    "dc_reachable": presence.dc_reachable} if presence else
                   {"node": None, "in_flight": None, "capacity": None, "dc_reachable": None})
    waits = await sync_to_async(_queue_waits)([str(t.pk) for t in tenants])
    summaries: dict[str, dict] = {t.slug: {
        "active": 0, "agents": 0,
        # Sign-ins waiting for an agent slot on the node that answers, and how long they waited in the last hour.
        "queued_here": slot_queues.length(str(t.pk)), "queued_last_hour": len(waits.get(str(t.pk), [])),
        "queue_wait_ms_p50": _percentile(waits.get(str(t.pk), []), 0.5),
        "queue_wait_ms_p95": _percentile(waits.get(str(t.pk), []), 0.95),
    } for t in tenants}
    for row in rows:
        summary = summaries[row["tenant"]]
        summary["agents"] += 1
        summary["active"] += row["status"] == "active"
    for summary in summaries.values():
        summary["level"] = ("critical" if summary["active"] == 0 else
                            "warning" if summary["active"] < RECOMMENDED_ACTIVE_AGENTS else "ok")
    return {"tenants": summaries, "agents": rows, "window_hours": HEALTH_WINDOW_HOURS}
