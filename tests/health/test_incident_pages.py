"""Incidents in the admin console read as sentences and labelled lines, with times to the second and their zone:
not a JSON dict's repr, not "Dec. 7, 2026, 3:41 a.m."."""

import datetime

import pytest

from health.models import Incident, Notification

OPENED = datetime.datetime(2026, 12, 7, 3, 41, 35, tzinfo=datetime.UTC)


@pytest.fixture
def admin_client(client, tenant_a, tenant_admin_factory):
    client.force_login(tenant_admin_factory(tenant_a))
    return client


def test_an_agents_incident_lists_its_details_and_times(admin_client, tenant_a):
    incident = Incident.objects.create(
        tenant=tenant_a, kind=Incident.Kind.AGENTS_BELOW_THRESHOLD, summary="Alpha Corp: 0 active agent(s), 1 needed",
        details={"active": 0, "agents": 2, "inactive": ["dc-east", "dc-west"], "threshold": 1}, opened_at=OPENED,
        resolved_at=OPENED + datetime.timedelta(minutes=3, seconds=2))
    Notification.objects.create(incident=incident, event=Notification.Event.OPENED, channel=Notification.Channel.EMAIL,
                                sent_at=OPENED + datetime.timedelta(seconds=4))
    page = admin_client.get(f"/admin/health/incident/{incident.pk}/change/").content.decode()
    assert "<dt>Active agents</dt><dd>0</dd>" in page
    assert "<dt>Inactive agents</dt><dd>dc-east, dc-west</dd>" in page
    assert "<dt>Active agents needed</dt><dd>1</dd>" in page
    assert "{&#x27;active&#x27;" not in page and '{"active"' not in page  # no dict or JSON
    assert "2026-12-07 03:41:35 UTC" in page and "2026-12-07 03:44:37 UTC" in page
    assert "2026-12-07 03:41:39 UTC" in page  # the e-mail's sending
    listing = admin_client.get("/admin/health/incident/").content.decode()
    assert "2026-12-07 03:41:35 UTC" in listing and "2026-12-07 03:44:37 UTC" in listing


def test_a_spike_s_shares_read_as_percentages_and_hostile_details_are_text(admin_client, tenant_a):
    incident = Incident.objects.create(
        tenant=tenant_a, kind=Incident.Kind.OUTCOME_SPIKE, subject="agent_timeout", opened_at=OPENED,
        summary="Alpha Corp: agent_timeout in 40% of sign-ins in the last 5 minutes",
        details={"outcome": "agent_timeout", "count": 4, "signins": 10, "share": 0.4, "threshold": 0.2,
                 "note<script>": "<b>x</b>"})
    page = admin_client.get(f"/admin/health/incident/{incident.pk}/change/").content.decode()
    assert "<dt>Outcome</dt><dd>agent timeout</dd>" in page
    assert "<dt>Share of the sign-ins</dt><dd>40%</dd>" in page
    assert "<dt>Alert above this share</dt><dd>20%</dd>" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page and "note<script>" not in page
    assert "resolved at" in page.lower() and ">open<" in page
