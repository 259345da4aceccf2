"""Agent health: JSON for tenant administrators, their own tenant only, and the admin console's page."""

import time

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse

from agents.presence import PresenceRecord, presence_registry
from signin.models import SignInEvent
from tenant.models import User


def present(agent, *, in_flight: int = 3) -> PresenceRecord:
    record = PresenceRecord(agent_id=str(agent.pk), tenant_id=str(agent.tenant_id), domains=("alpha.example.test",),
                            node_id="node-x", channel_name="chan", key_id=agent.key_fingerprint, in_flight=in_flight,
                            capacity=32, version="1.2", dc_reachable=True, connected_at=time.time(),
                            last_beat=time.time())

    async def publish():
        await presence_registry().publish([record])

    async_to_sync(publish)()
    return record


@pytest.fixture
def withdraw_all():
    records: list[PresenceRecord] = []
    yield records

    async def withdraw():
        for record in records:
            await presence_registry().withdraw(agent_id=record.agent_id, tenant_id=record.tenant_id)

    async_to_sync(withdraw)()


@pytest.fixture
def setup(tenant_a, tenant_b, tenant_admin_factory, agent_factory, withdraw_all):
    connected, _ = agent_factory(tenant_a, name="connected")
    idle, _ = agent_factory(tenant_a, name="idle")
    other, _ = agent_factory(tenant_b, name="other-tenant")
    withdraw_all += [present(connected), present(other)]
    for outcome, ms in (("success", 10.0), ("success", 30.0), ("invalid_credentials", 20.0)):
        SignInEvent.objects.create(tenant=tenant_a, username="u@alpha.example.test", outcome=outcome,
                                   agent=connected, agent_ms=ms)
    return {"admin": tenant_admin_factory(tenant_a), "connected": connected, "idle": idle, "other": other}


def test_tenant_admin_sees_their_agents_status_load_and_outcomes(client, setup):
    client.force_login(setup["admin"])
    body = client.get("/api/agents/health/").json()
    agents = {a["name"]: a for a in body["agents"]}
    assert set(agents) == {"connected", "idle"}  # never the other tenant's
    assert agents["connected"]["status"] == "active" and agents["connected"]["in_flight"] == 3
    assert agents["connected"]["node"] == "node-x" and agents["connected"]["dc_reachable"] is True
    assert agents["connected"]["outcomes_24h"] == {"success": 2, "invalid_credentials": 1}
    assert agents["connected"]["agent_ms_p50"] == 20.0
    assert agents["idle"]["status"] == "inactive" and agents["idle"]["connected"] is False
    assert list(body["tenants"]) == ["alpha-corp"]
    assert {k: body["tenants"]["alpha-corp"][k] for k in ("active", "agents", "level")} == {
        "active": 1, "agents": 2, "level": "warning"}


def test_a_revoked_agent_is_revoked_whatever_its_presence(client, setup):
    from agents.services.lifecycle import agent_revoke

    agent_revoke(agent=setup["connected"])
    client.force_login(setup["admin"])
    body = client.get("/api/agents/health/").json()
    assert {a["name"]: a["status"] for a in body["agents"]}["connected"] == "revoked"
    assert body["tenants"]["alpha-corp"]["level"] == "critical"


def test_a_tenant_without_agents_is_critical(client, tenant_factory, tenant_admin_factory):
    lonely = tenant_factory("Lonely", ["lonely.example.test"])
    client.force_login(tenant_admin_factory(lonely))
    body = client.get("/api/agents/health/").json()
    lonely_summary = body["tenants"][lonely.slug]
    assert {k: lonely_summary[k] for k in ("active", "agents", "level")} == {"active": 0, "agents": 0,
                                                                            "level": "critical"}


def test_strangers_get_no_health(client, setup, tenant_a):
    assert client.get("/api/agents/health/").status_code == 401
    client.force_login(User.objects.create_user("plain@alpha.example.test", tenant=tenant_a))
    assert client.get("/api/agents/health/").status_code == 403


def test_platform_admin_sees_every_tenant_or_one(client, setup):
    client.force_login(User.objects.create_superuser("root@platform.test", "R00t-pa55-for-tests"))
    assert {a["name"] for a in client.get("/api/agents/health/").json()["agents"]} == {
        "connected", "idle", "other-tenant"}
    assert {a["name"] for a in client.get("/api/agents/health/", {"tenant": "beta-corp"}).json()["agents"]} == {
        "other-tenant"}


def test_the_admin_console_links_to_its_health_page(client, setup):
    client.force_login(setup["admin"])
    changelist = client.get(reverse("admin:agents_agent_changelist")).content.decode()
    assert reverse("admin:agents_agent_health") in changelist
    page = client.get(reverse("admin:agents_agent_health")).content.decode()
    assert 'data-status="active"' in page and 'data-status="inactive"' in page
    assert 'data-level="warning"' in page and "other-tenant" not in page


def test_the_tenants_queue_and_its_waiting_times_are_shown(client, setup, tenant_a, tenant_b):
    for ms in (5.0, 50.0, 500.0):
        SignInEvent.objects.create(tenant=tenant_a, username="q@alpha.example.test", outcome="success", queued_ms=ms)
    SignInEvent.objects.create(tenant=tenant_b, username="q@beta.example.test", outcome="success", queued_ms=9000.0)
    client.force_login(setup["admin"])
    summary = client.get("/api/agents/health/").json()["tenants"][tenant_a.slug]
    assert (summary["queued_here"], summary["queued_last_hour"]) == (0, 3)
    assert (summary["queue_wait_ms_p50"], summary["queue_wait_ms_p95"]) == (50.0, 500.0)
    page = client.get(reverse("admin:agents_agent_health")).content.decode()
    assert "in the last hour 3 sign-in(s) waited" in page and "p95 500.0 ms" in page
