"""Agents unseen for longer than the setting are removed, but never a tenant's last one."""

import datetime

import pytest
from django.utils import timezone

from agents.models import Agent
from agents.services.retirement import agents_inactive_remove

pytestmark = pytest.mark.django_db


def seen(agent: Agent, days_ago: float) -> None:
    moment = timezone.now() - datetime.timedelta(days=days_ago)
    Agent.objects.filter(pk=agent.pk).update(last_seen=moment, registered_at=moment)


def test_stale_agents_go_and_the_last_of_a_tenant_stays(tenant_a, tenant_b, agent_factory):
    fresh, _ = agent_factory(tenant_a, "fresh")
    stale, _ = agent_factory(tenant_a, "stale")
    never, _ = agent_factory(tenant_a, "never-connected")
    older, _ = agent_factory(tenant_b, "older")
    newer, _ = agent_factory(tenant_b, "newer")
    seen(fresh, 2)
    seen(stale, 31)
    Agent.objects.filter(pk=never.pk).update(registered_at=timezone.now() - datetime.timedelta(days=40))
    seen(older, 60)
    seen(newer, 45)

    removed = agents_inactive_remove(older_than_days=30)

    # Beta has no agent seen within 30 days: its most recently seen one stays, for its administrator to decide.
    assert sorted(removed) == sorted([str(stale.pk), str(never.pk), str(older.pk)])
    assert set(Agent.objects.values_list("name", flat=True)) == {"fresh", "newer"}
    assert agents_inactive_remove(older_than_days=30) == []
