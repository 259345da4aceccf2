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


async def _present_agent_ids(tenant_ids: list[str]) -> set[str]:
    """The agents with an unexpired presence record; reading a tenant's set also drops its lapsed members."""
    registry = presence_registry()
    try:
        present: set[str] = set()
        for tenant_id in tenant_ids:
            present |= {record.agent_id for record in await registry.for_tenant(tenant_id=tenant_id)}
        return present
    finally:
        await presence_close()


def agents_availability_mark(*, now: datetime.datetime | None = None) -> dict[str, int]:
    """Mark every agent active (present, not revoked, certificate valid) or inactive. Only a change is written,
    conditionally on the mark it changes, so two sweeps at once write each change once. Returns how many
    agents became active and inactive."""
    now = now or timezone.now()
    agents = list(Agent.objects.values_list("pk", "tenant_id", "revoked_at", "certificate_not_after"))
    present = async_to_sync(_present_agent_ids)(sorted({str(tenant_id) for _, tenant_id, _, _ in agents}))
    marks = dict(AgentAvailability.objects.values_list("agent_id", "active"))
    AgentAvailability.objects.bulk_create(
        [AgentAvailability(agent_id=pk, active=False, since=now) for pk, *_ in agents if pk not in marks],
        ignore_conflicts=True)
    changed = {"active": 0, "inactive": 0}
    for pk, _, revoked_at, not_after in agents:
        active = str(pk) in present and revoked_at is None and not_after > now
        if marks.get(pk, False) == active:
            continue
        if AgentAvailability.objects.filter(agent_id=pk).exclude(active=active).update(active=active, since=now):
            changed["active" if active else "inactive"] += 1
            logger.info("agent %s marked %s", pk, "active" if active else "inactive (presence lapsed)")
    return changed
