"""Marking agents active or inactive from the shared presence registry, whichever node they were connected to.

A node that dies never runs its agents' ``disconnect()``; their presence records simply expire. Whoever runs
this sweep (any worker, or the embedded profile's timer) turns that into a mark in the database that the alerts
and the admin console read, with the moment it changed.
"""

from __future__ import annotations

import datetime
import logging

from asgiref.sync import async_to_sync
from django.utils import timezone

from agents.models import Agent
from agents.presence import presence_close, presence_registry
from health.models import AgentAvailability

logger = logging.getLogger(__name__)


# Presence records read per round trip, and agents marked per UPDATE: the sweep's round trips and statements grow
# with the agents by thousands, not one by one, and not at all with the tenants.
BATCH = 1000


async def _present_agent_ids(agents: dict[str, str]) -> set[str]:
    """Of ``agents`` (agent id → tenant id), those with an unexpired presence record for their tenant: the
    records read by agent id, BATCH a round trip, whatever the number of tenants."""
    registry = presence_registry()
    ids = list(agents)
    try:
        present: set[str] = set()
        for start in range(0, len(ids), BATCH):
            records = await registry.for_agents(agent_ids=ids[start:start + BATCH])
            present |= {agent_id for agent_id, record in records.items()
                        if record is not None and record.tenant_id == agents[agent_id]}
        return present
    finally:
        await presence_close()


def agents_availability_mark(*, now: datetime.datetime | None = None) -> dict[str, int]:
    """Mark every agent active (present, not revoked, certificate valid) or inactive. Only a change is written,
    conditionally on the mark it changes, so two sweeps at once write each change once. Returns how many
    agents became active and inactive. Statements: three reads, then an UPDATE per BATCH agents that changed
    (and one INSERT for agents never marked), however many agents and tenants there are."""
    now = now or timezone.now()
    agents = list(Agent.objects.values_list("pk", "tenant_id", "revoked_at", "certificate_not_after"))
    present = async_to_sync(_present_agent_ids)({str(pk): str(tenant_id) for pk, tenant_id, _, _ in agents})
    marks = dict(AgentAvailability.objects.values_list("agent_id", "active"))
    unmarked = [AgentAvailability(agent_id=pk, active=False, since=now) for pk, *_ in agents if pk not in marks]
    if unmarked:
        AgentAvailability.objects.bulk_create(unmarked, ignore_conflicts=True, batch_size=BATCH)
    turning: dict[bool, list] = {True: [], False: []}
    for pk, _, revoked_at, not_after in agents:
        active = str(pk) in present and revoked_at is None and not_after > now
        if marks.get(pk, False) != active:
            turning[active].append(pk)
    changed = {"active": 0, "inactive": 0}
    for active, pks in turning.items():
        for start in range(0, len(pks), BATCH):
            batch = pks[start:start + BATCH]
            # Conditional on the mark it changes: of two sweeps at once, each agent's change is written by one.
            written = AgentAvailability.objects.filter(agent_id__in=batch).exclude(active=active).update(
                active=active, since=now)
            changed["active" if active else "inactive"] += written
        if pks:
            shown = ", ".join(str(pk) for pk in pks[:20]) + (f" and {len(pks) - 20} more" if len(pks) > 20 else "")
            logger.info("%d agent(s) marked %s: %s", len(pks), "active" if active else "inactive (presence lapsed)",
                        shown)
    return changed
