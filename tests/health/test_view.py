"""The health view: JSON for tenant administrators, their own tenant only, and the admin console's live page."""

import datetime
import time

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse
from django.utils import timezone

from agents.presence import PresenceRecord, presence_registry
from health.models import SignInRollup
from signin.models import SignInEvent
from tenant.models import User


def present(agent, *, in_flight: int = 3, capacity: int = 32) -> PresenceRecord:
    record = PresenceRecord(agent_id=str(agent.pk), tenant_id=str(agent.tenant_id), domains=("alpha.example.test",),
                            node_id="node-x", channel_name="chan", key_id=agent.key_fingerprint, in_flight=in_flight,
                            capacity=capacity, version="1.2", dc_reachable=True, connected_at=time.time(),
                            last_beat=time.time())

    async def publish():
        await presence_registry().publish([record])

    async_to_sync(publish)()
    return record


def minutes_ago(n: int) -> datetime.datetime:
    return timezone.now().replace(second=0, microsecond=0) - datetime.timedelta(minutes=n)


def rollup(tenant, agent, outcome: str, count: int, *, minute: datetime.datetime, p50=None, p95=None):
    return SignInRollup.objects.create(minute=minute, tenant=tenant, agent=agent, outcome=outcome, count=count,
                                       latency_p50_ms=p50, latency_p95_ms=p95, latency_p99_ms=p95)


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
    m3, m2 = minutes_ago(3), minutes_ago(2)
    rollup(tenant_a, connected, "success", 2, minute=m3, p50=10.0, p95=30.0)
    rollup(tenant_a, connected, "invalid_credentials", 2, minute=m2, p50=30.0, p95=50.0)
    rollup(tenant_a, connected, "success", 7, minute=minutes_ago(25 * 60))  # older than the 24 hours
    rollup(tenant_b, other, "agent_timeout", 4, minute=m2)
    return {"admin": tenant_admin_factory(tenant_a), "connected": connected, "idle": idle, "other": other,
            "m3": m3, "m2": m2}


def test_tenant_admin_sees_their_agents_status_load_and_outcomes(client, setup):
    client.force_login(setup["admin"])
    body = client.get("/api/agents/health/").json()
    agents = {a["name"]: a for a in body["agents"]}
    assert set(agents) == {"connected", "idle"}  # never the other tenant's
    assert agents["connected"]["status"] == "active" and agents["connected"]["in_flight"] == 3
    assert agents["connected"]["load"] == "serving"
    assert agents["connected"]["node"] == "node-x" and agents["connected"]["dc_reachable"] is True
    assert agents["connected"]["outcomes_24h"] == {"success": 2, "invalid_credentials": 2}
    # The per-minute percentiles, weighted by each minute's sign-ins.
    assert (agents["connected"]["agent_ms_p50"], agents["connected"]["agent_ms_p95"]) == (20.0, 40.0)
    assert agents["idle"]["status"] == "inactive" and agents["idle"]["connected"] is False
    assert agents["idle"]["load"] is None and agents["idle"]["agent_ms_p50"] is None
    assert list(body["tenants"]) == ["alpha-corp"]
    assert {k: body["tenants"]["alpha-corp"][k] for k in ("active", "agents", "level")} == {
        "active": 1, "agents": 2, "level": "warning"}


def test_an_agent_with_every_slot_taken_is_queueing(client, setup, withdraw_all):
    withdraw_all.append(present(setup["idle"], in_flight=4, capacity=4))
    client.force_login(setup["admin"])
    agents = {a["name"]: a for a in client.get("/api/agents/health/").json()["agents"]}
    assert (agents["idle"]["load"], agents["connected"]["load"]) == ("queueing", "serving")
    page = client.get(reverse("agent-health-page")).content.decode()
    assert 'data-status="active" data-load="queueing"' in page and 'data-load="serving"' in page


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
    plain = User.objects.create_user("plain@alpha.example.test", tenant=tenant_a)
    client.force_login(plain)
    assert client.get("/api/agents/health/").status_code == 403
    assert client.get(reverse("agent-health-page")).status_code == 302  # to the admin's sign-in
    plain.is_staff = True  # staff, but not allowed to see agents
    plain.save()
    assert client.get(reverse("agent-health-page")).status_code == 403


def test_platform_admin_sees_every_tenant_or_one(client, setup):
    client.force_login(User.objects.create_superuser("root@platform.test", "R00t-pa55-for-tests"))
    assert {a["name"] for a in client.get("/api/agents/health/").json()["agents"]} == {
        "connected", "idle", "other-tenant"}
    assert {a["name"] for a in client.get("/api/agents/health/", {"tenant": "beta-corp"}).json()["agents"]} == {
        "other-tenant"}


def test_the_history_charts_this_tenants_rollups_by_minute(client, setup, tenant_a):
    m3, m2 = setup["m3"].isoformat(), setup["m2"].isoformat()
    rollup(tenant_a, None, "no_agent_available", 5, minute=setup["m2"])  # no agent answered these
    rollup(tenant_a, setup["connected"], "success", 9, minute=minutes_ago(200))  # before the 3 hours
    client.force_login(setup["admin"])
    history = client.get("/api/agents/health/").json()["history"]
    assert (history["hours"], history["bucket_minutes"], len(history["signins"])) == (3, 1, 180)
    # Up to the current minute, included.
    last = datetime.datetime.fromisoformat(history["signins"][-1]["at"])
    assert datetime.datetime.fromisoformat(history["end"]) - last == datetime.timedelta(minutes=1)
    assert last <= timezone.now() < last + datetime.timedelta(minutes=1)
    outcomes = {point["at"]: point["outcomes"] for point in history["signins"]}
    assert outcomes[m2] == {"invalid_credentials": 2, "no_agent_available": 5} and outcomes[m3] == {"success": 2}
    assert sum(sum(p["outcomes"].values()) for p in history["signins"]) == 9  # not beta's, not older ones
    assert history["latency"] == [{"agent": str(setup["connected"].pk), "name": "connected", "points": [
        {"at": m3, "p50": 10.0, "p95": 30.0}, {"at": m2, "p50": 30.0, "p95": 50.0}]}]


def test_a_longer_window_sums_minutes_into_wider_points(client, setup, tenant_a):
    client.force_login(setup["admin"])
    history = client.get("/api/agents/health/", {"hours": "24"}).json()["history"]
    assert (history["bucket_minutes"], len(history["signins"])) == (8, 180)
    assert history["signins"][-1]["outcomes"] == {"success": 2, "invalid_credentials": 2}
    assert client.get("/api/agents/health/", {"hours": "5"}).json()["history"]["hours"] == 3  # not offered


def test_the_admin_console_links_to_its_live_page(client, setup):
    client.force_login(setup["admin"])
    changelist = client.get(reverse("admin:agents_agent_changelist")).content.decode()
    assert reverse("agent-health-page") == "/admin/agents/agent/health/" and reverse("agent-health-page") in changelist
    page = client.get(reverse("agent-health-page")).content.decode()
    assert 'data-status="active"' in page and 'data-status="inactive"' in page
    assert 'data-level="warning"' in page and "other-tenant" not in page
    assert 'id="health-live" data-refresh-seconds="5"' in page and "health/health.js" in page
    assert page.count('<svg class="chart"') == 2 and 'class="o-invalid_credentials"' in page
    assert "o-agent_timeout" not in page  # beta's spike is not alpha's


def test_the_live_part_comes_alone_for_the_page_to_swap_in(client, setup):
    client.force_login(setup["admin"])
    live = client.get(reverse("agent-health-page"), {"live": "1"})
    text = live.content.decode()
    assert live.status_code == 200 and "no-cache" in live["Cache-Control"]
    assert "<html" not in text and 'id="health-live"' not in text
    assert 'data-status="active"' in text and text.count('<svg class="chart"') == 2


def test_the_tenants_queue_and_its_waiting_times_are_shown(client, setup, tenant_a, tenant_b):
    for ms in (5.0, 50.0, 500.0):
        SignInEvent.objects.create(tenant=tenant_a, username="q@alpha.example.test", outcome="success", queued_ms=ms)
    SignInEvent.objects.create(tenant=tenant_b, username="q@beta.example.test", outcome="success", queued_ms=9000.0)
    client.force_login(setup["admin"])
    summary = client.get("/api/agents/health/").json()["tenants"][tenant_a.slug]
    assert (summary["queued_here"], summary["queued_last_hour"]) == (0, 3)
    assert (summary["queue_wait_ms_p50"], summary["queue_wait_ms_p95"]) == (50.0, 500.0)
    page = client.get(reverse("agent-health-page")).content.decode()
    assert "in the last hour 3 sign-in(s) waited" in page and "p95 500.0 ms" in page


def test_the_page_names_tenants_by_name_for_a_platform_and_a_tenant_administrator(client, setup, tenant_a, tenant_b):
    import re

    Tenant = type(tenant_a)
    Tenant.objects.filter(pk=tenant_b.pk).update(name="Beta <Corp> & Co")
    client.force_login(setup["admin"])
    own = client.get(reverse("agent-health-page")).content.decode()
    assert re.findall(r"<strong>([^<]+)</strong>:", own) == ["Alpha Corp"]
    assert tenant_a.slug not in re.sub(r'href="[^"]*"', "", own)  # the slug is in no text, only in links
    client.force_login(User.objects.create_superuser("root@platform.test", "R00t-pa55-for-tests"))
    every = client.get(reverse("agent-health-page")).content.decode()
    assert re.findall(r"<strong>([^<]+)</strong>:", every) == ["Alpha Corp", "Beta &lt;Corp&gt; &amp; Co"]
    assert "<td>Alpha Corp</td>" in every and "<td>Beta &lt;Corp&gt; &amp; Co</td>" in every  # the tenant column
    data = client.get("/api/agents/health/").json()
    assert {slug: t["name"] for slug, t in data["tenants"].items()} == {tenant_a.slug: "Alpha Corp",
                                                                        tenant_b.slug: "Beta <Corp> & Co"}
