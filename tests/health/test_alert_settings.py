"""A tenant's alert settings: the command, the admin console (tenant-scoped), and the webhook secret, encrypted
at rest and never shown again."""

import pytest
from cryptography.exceptions import InvalidTag
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from health.models import AlertSettings, Incident
from health.services.alert_settings import alert_settings_set, webhook_secret_read, webhook_url_problem

pytestmark = pytest.mark.django_db
SECRET = "correct-horse-battery-staple-42"


def test_the_secret_is_encrypted_at_rest_and_bound_to_its_tenant(tenant_a, tenant_b):
    mine = alert_settings_set(tenant=tenant_a, webhook_url="https://hooks.alpha.test/pta", webhook_secret=SECRET)
    assert SECRET.encode() not in bytes(mine.webhook_secret_encrypted or b"")
    assert webhook_secret_read(AlertSettings.objects.get(tenant=tenant_a)) == SECRET.encode()
    copied = AlertSettings(tenant=tenant_b, webhook_secret_encrypted=mine.webhook_secret_encrypted)
    with pytest.raises(InvalidTag):
        webhook_secret_read(copied)


@pytest.mark.parametrize(("changes", "field"), [
    ({"webhook_url": "https://hooks.alpha.test/pta"}, "webhook_secret"),  # no secret, no webhook
    ({"webhook_url": "https://hooks.alpha.test/pta", "webhook_secret": "short"}, "webhook_secret"),
    ({"webhook_url": "http://hooks.alpha.test/pta", "webhook_secret": SECRET}, "webhook_url"),
    ({"webhook_url": "ftp://hooks.alpha.test/pta", "webhook_secret": SECRET}, "webhook_url"),
    ({"emails": ["ops@alpha.example.test", "not an address"]}, "emails"),
])
def test_what_is_refused_and_saves_nothing(tenant_a, changes, field):
    with pytest.raises(ValidationError) as refused:
        alert_settings_set(tenant=tenant_a, **changes)
    assert field in refused.value.message_dict
    assert not AlertSettings.objects.exists()


def test_plain_http_only_to_loopback_in_a_test_set_up(loopback_webhooks, settings):
    settings.PTA_ALERT_WEBHOOK_HTTP_LOOPBACK = False
    assert webhook_url_problem("http://127.0.0.1:8080/hook") is not None
    assert webhook_url_problem("https://127.0.0.1:8080/hook") is None
    settings.PTA_ALERT_WEBHOOK_HTTP_LOOPBACK = True
    assert webhook_url_problem("http://127.0.0.1:8080/hook") is None
    assert webhook_url_problem("http://10.0.0.8/hook") is not None


def test_removing_the_webhook_removes_its_secret(tenant_a):
    alert_settings_set(tenant=tenant_a, webhook_url="https://hooks.alpha.test/pta", webhook_secret=SECRET)
    assert not alert_settings_set(tenant=tenant_a, webhook_url="").webhook_secret_set


def test_the_command_sets_and_prints_but_never_the_secret(tenant_a, tmp_path, capsys):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    call_command("tenant_alerts", "alpha-corp", "--email", "ops@alpha.example.test", "--email",
                 "oncall@alpha.example.test", "--webhook", "https://hooks.alpha.test/pta",
                 "--webhook-secret-file", str(secret_file), "--threshold", "2")
    out = capsys.readouterr().out
    assert out.splitlines() == ["tenant=alpha-corp", "email=ops@alpha.example.test,oncall@alpha.example.test",
                                "email_unconfirmed=ops@alpha.example.test,oncall@alpha.example.test",
                                "webhook=https://hooks.alpha.test/pta", "webhook_secret=set", "threshold=2"]
    assert webhook_secret_read(AlertSettings.objects.get()) == SECRET.encode()  # without the file's newline
    call_command("tenant_alerts", "alpha-corp", "--no-email")
    assert "email=\n" in capsys.readouterr().out
    with pytest.raises(CommandError, match="No tenant"):
        call_command("tenant_alerts", "nobody")
    with pytest.raises(CommandError, match="Cannot read the webhook secret"):
        call_command("tenant_alerts", "alpha-corp", "--webhook-secret-file", str(tmp_path / "missing"))
    with pytest.raises(CommandError, match="webhook_url"):
        call_command("tenant_alerts", "alpha-corp", "--webhook", "http://hooks.alpha.test/pta")


@pytest.fixture
def admin_client(client, tenant_a, tenant_admin_factory):
    client.force_login(tenant_admin_factory(tenant_a))
    return client


def test_a_tenant_administrator_sets_a_secret_that_is_never_shown_again(admin_client, tenant_a):
    response = admin_client.post(reverse("admin:health_alertsettings_add"), {
        "emails": "ops@alpha.example.test", "webhook_url": "https://hooks.alpha.test/pta", "webhook_secret": SECRET,
        "active_agents_threshold": "1"})
    assert response.status_code == 302, response.content.decode()[-3000:]
    mine = AlertSettings.objects.get(tenant=tenant_a)
    assert webhook_secret_read(mine) == SECRET.encode()
    page = admin_client.get(reverse("admin:health_alertsettings_change", args=[mine.pk])).content.decode()
    assert SECRET not in page and "set (never shown)" in page
    # Saved again without typing it: the secret stays.
    response = admin_client.post(reverse("admin:health_alertsettings_change", args=[mine.pk]), {
        "emails": "ops@alpha.example.test", "webhook_url": "https://hooks.alpha.test/pta", "webhook_secret": "",
        "active_agents_threshold": "2"})
    assert response.status_code == 302
    mine.refresh_from_db()
    assert mine.active_agents_threshold == 2 and webhook_secret_read(mine) == SECRET.encode()
    listing = admin_client.get(reverse("admin:health_alertsettings_changelist")).content.decode()
    assert "ops@alpha.example.test" in listing


def test_a_webhook_without_secret_is_a_form_error(admin_client):
    response = admin_client.post(reverse("admin:health_alertsettings_add"), {
        "emails": "", "webhook_url": "https://hooks.alpha.test/pta", "webhook_secret": "",
        "active_agents_threshold": "1"})
    assert response.status_code == 200 and "A webhook needs a secret" in response.content.decode()
    assert not AlertSettings.objects.exists()


def test_incidents_open_and_past_are_listed_read_only(admin_client, tenant_a):
    """(Which tenant's: tests/tenant/test_admin_isolation.py, as for every model.)"""
    mine = Incident.objects.create(tenant=tenant_a, kind=Incident.Kind.FAILOVER_LOST, summary="Alpha lost failover")
    Incident.objects.create(tenant=tenant_a, kind=Incident.Kind.OUTCOME_SPIKE, subject="agent_timeout",
                            summary="Alpha had a spike", resolved_at=timezone.now())
    listing = admin_client.get(reverse("admin:health_incident_changelist")).content.decode()
    assert "Alpha lost failover" in listing and "Alpha had a spike" in listing
    open_only = admin_client.get(reverse("admin:health_incident_changelist") + "?state=open").content.decode()
    assert "Alpha lost failover" in open_only and "Alpha had a spike" not in open_only
    assert admin_client.get(reverse("admin:health_incident_change", args=[mine.pk])).status_code == 200
    assert admin_client.post(reverse("admin:health_incident_change", args=[mine.pk]),
                             {"summary": "edited"}).status_code == 403
    assert admin_client.get(reverse("admin:health_incident_add")).status_code == 403
