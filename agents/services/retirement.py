"""Removing agents nobody runs any more: registered long ago, unseen for longer than PTA_AGENT_REMOVAL_DAYS."""

from __future__ import annotations

import datetime
import logging
from collections import defaultdict

from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.models import Agent
from agents.services.lifecycle import agent_delete

logger = logging.getLogger(__name__)


def agents_inactive_remove(*, older_than_days: int, now: datetime.datetime | None = None) -> list[str]:
    """Delete the agents not seen (or, never connected, registered) for ``older_than_days``. A tenant's last
    agent stays whatever its age: it is the one the tenant's open "no active agent" incident names, and the
    administrator decides. Returns the ids removed; a second run at once removes nothing more."""
    now = now or timezone.now()
    cutoff = now - datetime.timedelta(days=older_than_days)
    by_tenant: dict[str, list[tuple[str, datetime.datetime]]] = defaultdict(list)
    for pk, tenant_id, seen in (Agent.objects.annotate(seen=Coalesce("last_seen", "registered_at"))
                                .order_by("-seen").values_list("pk", "tenant_id", "seen")):
        by_tenant[str(tenant_id)].append((str(pk), seen))
    doomed: list[str] = []
    for agents in by_tenant.values():
        stale = [pk for pk, seen in agents if seen < cutoff]
        # Ordered most recently seen first: when every agent is stale, the first one is kept.
        doomed += stale[1:] if len(stale) == len(agents) else stale
    for agent in Agent.objects.filter(pk__in=doomed):
        agent_delete(agent=agent, by=f"the inactivity sweep ({older_than_days} days)")
    return doomed
