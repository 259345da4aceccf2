"""One notion of an agent's status: the admin console's agent list and page say what the health view says. The
list once said "Active" for an agent whose last_seen was under two minutes old although its connection was gone,
while the health view said inactive and an incident was open."""

import datetime
import re
import time

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent
from agents.presence import PresenceRecord, presence_registry


@pytest.fixture
def presence():
    published: list[PresenceRecord] = []

    def publish(agent) -> None:
        record = PresenceRecord(agent_id=str(agent.pk), tenant_id=str(agent.tenant_id), domains=("alpha.example.test",),
                                node_id="node-x", channel_name="chan", key_id=agent.key_fingerprint, capacity=8,
                                connected_at=time.time(), last_beat=time.time())
        async_to_sync(publish_record)(record)
        published.append(record)

    yield publish
    for record in published:
        async_to_sync(withdraw)(record.agent_id, record.tenant_id)


async def publish_record(record: PresenceRecord) -> None:
    await presence_registry().publish([record])  # the registry is had inside the event loop that uses it


async def withdraw(agent_id: str, tenant_id: str) -> None:
    await presence_registry().withdraw(agent_id=agent_id, tenant_id=tenant_id)


@pytest.fixture
def admin_client(client, tenant_a, tenant_admin_factory):
    client.force_login(tenant_admin_factory(tenant_a))
    return client


def list_statuses(client) -> dict[str, str]:
    page = client.get(reverse("admin:agents_agent_changelist")).content.decode()
    rows = re.findall(r"<tr>.*?</tr>", page, re.S)
    found = {}
    for row in rows:
        name = re.search(r'<th class="field-name"><a [^>]*>([^<]+)</a>', row)
        status = re.search(r'<td class="field-status_badge">([^<]+)</td>', row)
        if name and status:
            found[name.group(1)] = status.group(1)
    return found


def health_statuses(client) -> dict[str, str]:
    return {row["name"]: row["status"] for row in client.get(reverse("agent-health")).json()["agents"]}


def test_the_list_the_page_and_the_health_view_agree(admin_client, tenant_a, agent_factory, presence):
    gone, _ = agent_factory(tenant_a, name="stopped-80s-ago")
    connected, _ = agent_factory(tenant_a, name="connected")
    revoked, _ = agent_factory(tenant_a, name="revoked")
    # Seen 80 s ago, its presence gone since (stopped): last_seen alone would call it active.
    Agent.objects.filter(pk=gone.pk).update(last_seen=timezone.now() - datetime.timedelta(seconds=80))
    Agent.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    presence(connected)
    presence(revoked)  # a revoked agent is revoked whatever its presence

    assert health_statuses(admin_client) == {"stopped-80s-ago": "inactive", "connected": "active",
                                             "revoked": "revoked"}
    assert list_statuses(admin_client) == {"stopped-80s-ago": "Inactive", "connected": "Active",
                                           "revoked": "Revoked"}
    for agent, label in ((gone, "Inactive"), (connected, "Active")):
        page = admin_client.get(reverse("admin:agents_agent_change", args=[agent.pk])).content.decode()
        assert re.search(r'<div class="readonly">' + label + "</div>", page), label


def test_an_agent_whose_presence_goes_turns_inactive_everywhere_at_once(admin_client, tenant_a, agent_factory,
                                                                        presence):
    agent, _ = agent_factory(tenant_a, name="flapping")
    Agent.objects.filter(pk=agent.pk).update(last_seen=timezone.now())
    presence(agent)
    assert list_statuses(admin_client)["flapping"] == "Active" and health_statuses(admin_client)["flapping"] == "active"
    async_to_sync(withdraw)(str(agent.pk), str(agent.tenant_id))
    assert list_statuses(admin_client)["flapping"] == "Inactive"
    assert health_statuses(admin_client)["flapping"] == "inactive"


def test_the_list_reads_every_agent_s_presence_at_once(admin_client, tenant_a, agent_factory, presence, monkeypatch):
    """One read of presence for the page (a Redis MGET in production), not a round trip per agent."""
    from agents import presence as registry_module

    agents = [agent_factory(tenant_a, name=f"agent-{n}")[0] for n in range(4)]
    presence(agents[0])
    reads: list[list[str]] = []
    for registry in (registry_module.InProcessPresence, registry_module.RedisPresence):
        real = registry.for_agents

        async def for_agents(self, *, agent_ids, real=real):
            reads.append(list(agent_ids))
            return await real(self, agent_ids=agent_ids)

        async def for_agent(self, *, agent_id):
            raise AssertionError("one agent's presence read alone")

        monkeypatch.setattr(registry, "for_agents", for_agents)
        monkeypatch.setattr(registry, "for_agent", for_agent)
    assert list_statuses(admin_client) == {"agent-0": "Active", "agent-1": "Inactive", "agent-2": "Inactive",
                                           "agent-3": "Inactive"}
    assert len(reads) == 1 and sorted(reads[0]) == sorted(str(a.pk) for a in agents)
