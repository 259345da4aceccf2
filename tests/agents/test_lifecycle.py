import datetime
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.core.management import CommandError, call_command
from django.utils import timezone

from agents.models import Agent
from agents.selectors import agent_statuses
from agents.services.lifecycle import agent_last_seen_touch, agent_revoke, agents_current, renewal_due


def test_revoke_records_who_and_when(tenant_a, agent_factory, tenant_admin_factory):
    agent, _ = agent_factory(tenant_a)
    admin = tenant_admin_factory(tenant_a)
    agent_revoke(agent=agent, by=admin)
    agent.refresh_from_db()
    assert agent.revoked_at is not None and agent.revoked_by == admin and async_to_sync(agent_statuses)(
        agents=[agent])[str(agent.pk)] == Agent.Status.REVOKED
    first = agent.revoked_at
    agent_revoke(agent=agent)  # again: the first revocation stands
    agent.refresh_from_db()
    assert agent.revoked_at == first and agent.revoked_by == admin


def test_agent_revoke_command(tenant_a, agent_factory, capsys):
    agent, _ = agent_factory(tenant_a)
    call_command("agent_revoke", str(agent.pk))
    assert "is now revoked" in capsys.readouterr().out
    assert Agent.objects.get(pk=agent.pk).revoked_at is not None
    with pytest.raises(CommandError):
        call_command("agent_revoke", str(uuid.uuid4()))
    with pytest.raises(CommandError):
        call_command("agent_revoke", "not-a-uuid")


def test_last_seen_touch_and_current_rights(tenant_a, agent_factory):
    fine, _ = agent_factory(tenant_a, "fine")
    revoked, _ = agent_factory(tenant_a, "revoked")
    expired, _ = agent_factory(tenant_a, "expired")
    Agent.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    Agent.objects.filter(pk=expired.pk).update(certificate_not_after=timezone.now())
    assert agent_last_seen_touch(agent_ids=[fine.pk]) == 1
    assert Agent.objects.get(pk=fine.pk).last_seen is not None
    deleted, _ = agent_factory(tenant_a, "deleted")
    deleted_id = str(deleted.pk)
    deleted.delete()
    current = agents_current(agent_ids=[str(fine.pk), str(revoked.pk), str(expired.pk), deleted_id])
    assert current == {str(fine.pk): ("alpha.example.test",), str(revoked.pk): 4003, str(expired.pk): 4004,
                       deleted_id: 4003}
    # An unverified domain is not served, whatever the agent's row lists.
    tenant_a.domains.update(verified=False)
    assert agents_current(agent_ids=[str(fine.pk)]) == {str(fine.pk): ()}


def test_renewal_window_is_the_last_thirty_days():
    now = timezone.now()
    assert not renewal_due(not_after=now + datetime.timedelta(days=31), now=now)
    assert renewal_due(not_after=now + datetime.timedelta(days=30), now=now)
