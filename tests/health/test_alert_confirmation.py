"""Alert e-mail addresses are confirmed before they get anything (docs/SECURITY.md, 5f): a tenant administrator
who types someone else's address has one confirmation mail sent there, no incident; after the link's button it
gets incidents. Mail goes to a real SMTP server on loopback (aiosmtpd); the link is followed with a browser's
client through the portal's pages."""

from __future__ import annotations

import datetime
import re
import time
from urllib.parse import urlsplit

import pytest
from django.core import signing
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from health.models import AlertRecipient, Notification
from health.services.alert_recipients import CONFIRMATION_SALT
from health.services.incidents import alerts_evaluate
from health.services.notifications import notification_deliver
from tests.fixtures.http import found

pytestmark = pytest.mark.django_db
VICTIM = "someone@elsewhere.example.test"
_LINK = re.compile(r"(https?://\S+/alerts/confirm/(\S+)/)")  # the portal's PTA_PUBLIC_URL
_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture
def smtp(settings, smtp_server, monkeypatch):
    from config.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)  # the mail tasks run here, not on a worker
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp_server.port
    return smtp_server


@pytest.fixture
def admin_a_client(tenant_a, tenant_admin_factory) -> Client:
    client = Client()
    client.force_login(tenant_admin_factory(tenant_a))
    return client


def link_of(message) -> tuple[str, str]:
    """The confirmation link in a mail, and its token."""
    match = _LINK.search(message.get_content())
    assert match, message.get_content()
    return match.group(1), match.group(2)


def set_emails(client: Client, emails: str, capture) -> None:
    """The alert settings page, as a tenant administrator's browser posts it (its commit sends the links)."""
    with capture(execute=True):
        response = client.post(reverse("admin:health_alertsettings_add"), {
            "emails": emails, "webhook_url": "", "webhook_secret": "", "active_agents_threshold": "1"})
    assert response.status_code == 302, response.content.decode()[:1500]


def incident_mail(smtp, tenant, agent_factory, when: datetime.datetime) -> list[str]:
    """Opens an incident (the tenant's only agent is gone), delivers its e-mail; the subjects that arrived."""
    agent_factory(tenant, name=f"agent-{when.timestamp():.0f}")
    alerts_evaluate(now=when)
    for notification in Notification.objects.filter(channel="email", sent_at=None, failed_at=None):
        notification_deliver(notification_id=notification.pk)
    return [str(message["Subject"]) for message in smtp.messages]


def test_an_unconfirmed_address_gets_only_the_confirmation_then_incidents_once_confirmed(
        admin_a_client, tenant_a, agent_factory, smtp, django_capture_on_commit_callbacks):
    set_emails(admin_a_client, VICTIM, django_capture_on_commit_callbacks)
    [confirmation] = smtp.messages
    assert confirmation["To"] == VICTIM and confirmation["Subject"] == "[PTA] Confirm alert e-mail for Alpha Corp"
    link, token = link_of(confirmation)

    # An incident opens: nothing goes to the unconfirmed address (no e-mail is even owed).
    subjects = incident_mail(smtp, tenant_a, agent_factory, timezone.now() + datetime.timedelta(minutes=5))
    assert subjects == ["[PTA] Confirm alert e-mail for Alpha Corp"]
    assert not Notification.objects.filter(channel="email").exists()
    assert alerts_evaluate(now=timezone.now() + datetime.timedelta(minutes=6))["opened"] == 0  # still open

    # The link, as the recipient's mail program and then the recipient open it: a GET confirms nothing.
    browser = Client()
    page = browser.get(urlsplit(link).path)
    assert page.status_code == 200 and 'data-state="ask"' in page.content.decode()
    assert "Alpha Corp" in page.content.decode() and VICTIM in page.content.decode()
    assert page["Cache-Control"].startswith("max-age=0") and "no-store" in page["Cache-Control"]
    assert AlertRecipient.objects.get(address=VICTIM).confirmed_at is None
    done = browser.post(f"/alerts/confirm/{token}/", {"csrfmiddlewaretoken": found(_CSRF, page.content.decode())})
    assert done.status_code == 200 and 'data-state="confirmed"' in done.content.decode()

    # The incident resolves (an agent again), a new one opens: both reach the confirmed address.
    from health.models import Incident

    Incident.objects.update(resolved_at=timezone.now())
    subjects = incident_mail(smtp, tenant_a, agent_factory, timezone.now() + datetime.timedelta(minutes=20))
    assert subjects[1:] and all(subject.startswith("[PTA] Opened: Alpha Corp") for subject in subjects[1:])
    assert all(message["To"] == VICTIM for message in smtp.messages)


def test_only_confirmed_addresses_of_the_list_are_mailed(admin_a_client, tenant_a, agent_factory, smtp,
                                                         django_capture_on_commit_callbacks):
    set_emails(admin_a_client, "ops@alpha.example.test", django_capture_on_commit_callbacks)
    [confirmation] = smtp.messages
    _, token = link_of(confirmation)
    Client().post(f"/alerts/confirm/{token}/")
    set_emails(admin_a_client, f"ops@alpha.example.test\n{VICTIM}", django_capture_on_commit_callbacks)
    assert [m["To"] for m in smtp.messages] == ["ops@alpha.example.test", VICTIM]  # ops is not asked again
    incident_mail(smtp, tenant_a, agent_factory, timezone.now() + datetime.timedelta(minutes=5))
    assert smtp.messages[-1]["To"] == "ops@alpha.example.test" and "Opened" in smtp.messages[-1]["Subject"]
    # Saving the list again within the hour does not mail the unconfirmed address again.
    set_emails(admin_a_client, f"ops@alpha.example.test\n{VICTIM}", django_capture_on_commit_callbacks)
    assert [m["To"] for m in smtp.messages].count(VICTIM) == 1


def refused(response) -> bool:
    return response.status_code == 400 and 'data-state="invalid"' in response.content.decode()


def test_forged_altered_expired_and_stale_links_are_refused_with_a_page(
        admin_a_client, tenant_a, smtp, django_capture_on_commit_callbacks, monkeypatch, settings):
    settings.DEBUG = False
    set_emails(admin_a_client, VICTIM, django_capture_on_commit_callbacks)
    _, token = link_of(smtp.messages[0])
    row = AlertRecipient.objects.get(address=VICTIM)
    browser = Client(raise_request_exception=False)
    forged = signing.dumps({"r": row.pk, "a": VICTIM}, key="not-the-portals-key", salt=CONFIRMATION_SALT)
    other_salt = signing.dumps({"r": row.pk, "a": VICTIM})  # signed by the portal, for another purpose
    for bad in (forged, other_salt, token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "garbage",
                token.replace(":", "", 1)):
        assert refused(browser.get(f"/alerts/confirm/{bad}/")), bad
        assert refused(browser.post(f"/alerts/confirm/{bad}/")), bad
    # Another address's row named in a token signed for this one: refused.
    elsewhere = signing.dumps({"r": row.pk, "a": "x@evil.test"}, salt=CONFIRMATION_SALT)
    assert refused(browser.post(f"/alerts/confirm/{elsewhere}/"))
    # Four days later the link has expired.
    later = time.time() + 4 * 86400
    with monkeypatch.context() as patched:
        patched.setattr("django.core.signing.time.time", lambda: later)
        assert refused(browser.post(f"/alerts/confirm/{token}/"))
    # Removed from the list and added again: the first link is stale, only the new one confirms.
    set_emails(admin_a_client, "", django_capture_on_commit_callbacks)
    set_emails(admin_a_client, VICTIM, django_capture_on_commit_callbacks)
    assert refused(browser.post(f"/alerts/confirm/{token}/"))
    assert AlertRecipient.objects.get(address=VICTIM).confirmed_at is None
    _, fresh = link_of(smtp.messages[-1])
    assert browser.post(f"/alerts/confirm/{fresh}/").status_code == 200
    assert AlertRecipient.objects.get(address=VICTIM).confirmed_at is not None


def test_the_operators_command_asks_for_confirmation_too(tenant_a, smtp, django_capture_on_commit_callbacks,
                                                         capsys):
    from django.core.management import call_command

    with django_capture_on_commit_callbacks(execute=True):
        call_command("tenant_alerts", tenant_a.slug, "--email", VICTIM)
    assert f"email_unconfirmed={VICTIM}" in capsys.readouterr().out.splitlines()
    [confirmation] = smtp.messages
    _, token = link_of(confirmation)
    Client().post(f"/alerts/confirm/{token}/")
    call_command("tenant_alerts", tenant_a.slug)
    assert "email_unconfirmed=" in capsys.readouterr().out.splitlines()
