"""The health view and the alerts, attacked: a tenant administrator after another tenant's health, alert settings
or agents, or using the webhook to reach the portal's own network or hold its workers; hostile names in the
pages and the e-mail; the webhook secret looked for wherever it could surface. Each attack goes through the
admin console, the HTTP endpoints or a real receiver (docs/SECURITY.md, "The health view and the alerts")."""

from __future__ import annotations

import contextlib
import datetime
import http.server
import logging
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest
from django.db import OperationalError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from health.models import AlertSettings, Incident, Notification, SignInRollup
from health.services import alert_settings as alert_settings_service
from health.services import notifications
from health.services.alert_settings import alert_settings_set
from health.services.incidents import Condition, alerts_evaluate, incident_open
from health.services.notifications import notification_deliver
from tenant.models import User
from tests.fixtures.nginx import TestCA
from tests.fixtures.portal import free_port
from tests.fixtures.receivers import WebhookReceiver, _handler
from tests.health.conftest import confirm_emails
from tests.signin.test_error_reports import LoggedErrors, reports
from tests.tenant.test_domains import change_page_post

pytestmark = pytest.mark.django_db
# Made at run time, never a literal: error reports also show the source lines around each frame.
SECRET = "whsec-" + secrets.token_urlsafe(24)
HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


@pytest.fixture
def admin_a(tenant_a, tenant_admin_factory):
    return tenant_admin_factory(tenant_a)


@pytest.fixture
def admin_a_client(admin_a) -> Client:
    client = Client()
    client.force_login(admin_a)
    return client


def alert_settings_post(client: Client, url: str, **fields):
    """The alert settings form as a browser posts it."""
    return client.post(reverse("admin:health_alertsettings_add"), {
        "emails": "", "webhook_url": url, "webhook_secret": SECRET, "active_agents_threshold": "1", **fields})


def incident_of(tenant) -> Incident:
    """An incident as the periodic work opens it, its notifications written (delivered by each test)."""
    condition = Condition(str(tenant.pk), Incident.Kind.AGENTS_BELOW_THRESHOLD, "",
                          f"{tenant.name}: 0 active agent(s), 1 needed", {"active": 0})
    incident = incident_open(condition=condition, now=timezone.now())
    assert incident is not None
    return incident


# --- another tenant's health, settings and agents ----------------------------------------------------------


def test_a_tenant_administrator_never_sees_another_tenants_agents_whatever_they_ask(
        admin_a_client, tenant_a, tenant_b, agent_factory):
    agent_factory(tenant_a, name="alpha-agent")
    beta, _ = agent_factory(tenant_b, name="beta-agent")
    SignInRollup.objects.create(minute=timezone.now().replace(second=0, microsecond=0), tenant=tenant_b, agent=beta,
                                outcome="agent_timeout", count=7, latency_p50_ms=5, latency_p95_ms=9)
    asked = {"tenant": tenant_b.slug, "hours": "24"}
    answers = [admin_a_client.get("/api/agents/health/", asked).content.decode(),
               admin_a_client.get(reverse("agent-health-page"), asked).content.decode(),
               admin_a_client.get(reverse("agent-health-page"), {**asked, "live": "1"}).content.decode()]
    for answer in answers:
        assert "alpha-agent" in answer
        assert "beta-agent" not in answer and str(beta.pk) not in answer and "agent_timeout" not in answer
    assert '"beta-corp"' not in answers[0]


def test_staff_status_alone_does_not_open_the_health_json(client, tenant_a, agent_factory):
    """A tenant administrator may make any user of their tenant staff; without the right to see agents, that user
    gets neither the page nor its data."""
    agent_factory(tenant_a, name="alpha-agent")
    staff = User.objects.create_user("helpdesk@alpha.example.test", tenant=tenant_a, is_staff=True)
    client.force_login(staff)
    assert client.get(reverse("agent-health-page")).status_code == 403
    response = client.get("/api/agents/health/")
    assert response.status_code == 403 and "alpha-agent" not in response.content.decode()


def test_another_tenants_alert_settings_can_be_neither_changed_nor_taken_over(admin_a_client, tenant_a, tenant_b):
    theirs = alert_settings_set(tenant=tenant_b, emails=["ops@beta.example.test"])
    response = admin_a_client.post(reverse("admin:health_alertsettings_change", args=[theirs.pk]), {
        "emails": "attacker@alpha.example.test", "webhook_url": "", "active_agents_threshold": "0"})
    assert response.status_code == 404
    # The add form with the other tenant's id slipped in: the settings are the administrator's own tenant's.
    response = admin_a_client.post(reverse("admin:health_alertsettings_add"), {
        "tenant": str(tenant_b.pk), "emails": "attacker@alpha.example.test", "webhook_url": "",
        "active_agents_threshold": "0"})
    assert response.status_code == 302
    theirs.refresh_from_db()
    assert (theirs.email_list, theirs.active_agents_threshold) == (["ops@beta.example.test"], 1)
    assert AlertSettings.objects.get(tenant=tenant_a).email_list == ["attacker@alpha.example.test"]


def test_the_alert_settings_form_refuses_a_post_without_its_csrf_token(admin_a, tenant_a):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_a)
    response = alert_settings_post(browser, "https://hooks.alpha.example.test/pta")
    assert response.status_code == 403
    assert not AlertSettings.objects.exists()


# --- the webhook as a way into the portal's own network ----------------------------------------------------


@pytest.mark.parametrize("url", [
    "https://169.254.169.254/latest/meta-data/", "https://127.0.0.1:6379/", "https://[::1]/", "https://10.0.0.5/",
    "https://100.64.0.1/", "https://[::ffff:169.254.169.254]/", "https://[64:ff9b::a9fe:a9fe]/", "https://0.0.0.0/",
])
def test_a_webhook_written_as_an_internal_address_is_refused(admin_a_client, url):
    response = alert_settings_post(admin_a_client, url)
    assert response.status_code == 200
    assert "must not point at a loopback, private or link-local address" in response.content.decode()
    assert not AlertSettings.objects.exists()


class InternalService:
    """A TCP service on loopback, standing for anything on the portal's own network: it counts who connects."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()


@pytest.fixture
def internal_service() -> Iterator[InternalService]:
    service = InternalService()
    yield service
    service.server.close()


def test_a_webhook_name_that_resolves_to_an_internal_address_is_never_connected_to(
        admin_a_client, tenant_a, internal_service):
    """A name passes the form (an attacker's DNS may answer anything, and change its answer): it is resolved and
    checked when the alert is sent, and the portal connects to the address it checked, or nowhere."""
    host = "localhost"
    assert alert_settings_post(admin_a_client, f"https://{host}:{internal_service.port}/").status_code == 302
    notification = incident_of(tenant_a).notifications.get(channel="webhook")
    assert notification_deliver(notification_id=notification.pk) is not None  # failed, to be tried again
    assert internal_service.connections == 0
    page = admin_a_client.get(reverse("admin:health_incident_change", args=[notification.incident_id]))
    assert f"webhook: {host} has no address alerts may be posted to" in page.content.decode()


@pytest.fixture
def https_receiver(tmp_path, monkeypatch) -> Iterator[WebhookReceiver]:
    """The tests' webhook receiver behind TLS, with a certificate for "localhost" from a CA the portal is told to
    trust (SSL_CERT_FILE, read by OpenSSL when the portal builds its TLS context)."""
    ca = TestCA.make(tmp_path, ["localhost"])
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_path))
    receiver = WebhookReceiver(free_port())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", receiver.port), _handler(receiver))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(ca.certificate_path, ca.key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
def test_https_goes_to_the_address_checked_and_the_certificate_is_checked_against_the_name(
        tenant_a, https_receiver, loopback_webhooks, name):
    alert_settings_set(tenant=tenant_a, webhook_url=f"https://{name}:{https_receiver.port}/hooks/pta",
                       webhook_secret=SECRET)
    notification = incident_of(tenant_a).notifications.get(channel="webhook")
    retry = notification_deliver(notification_id=notification.pk)
    notification.refresh_from_db()
    if name == "localhost":  # the certificate's name
        assert (retry, notification.state) == (None, "sent"), notification.last_error
        [request] = https_receiver.requests
        assert request.headers["Host"] == f"localhost:{https_receiver.port}"
    else:  # the right address, but not a name the certificate holds
        assert notification.state == "pending" and "CERTIFICATE_VERIFY_FAILED" in notification.last_error
        assert https_receiver.requests == []


class DrippingReceiver:
    """A receiver that starts its answer, then sends one more byte of a header every 0.2 s (within any
    per-read timeout) for 30 s, or until the portal hangs up."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hooks/pta"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with self.server, self.server.accept()[0] as connection:
            connection.recv(65536)
            with contextlib.suppress(OSError):  # the portal hung up
                connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                for _ in range(150):
                    time.sleep(0.2)
                    connection.sendall(b"a")


def test_a_receiver_answering_a_byte_at_a_time_cannot_hold_the_worker(tenant_a, loopback_webhooks, monkeypatch):
    """The attempt ends at its deadline, a failure to try again, not when the receiver chooses (nor as a 200
    read from an answer cut short)."""
    monkeypatch.setattr(notifications, "WEBHOOK_TIMEOUT_SECONDS", 1)
    receiver = DrippingReceiver()
    alert_settings_set(tenant=tenant_a, webhook_url=receiver.url, webhook_secret=SECRET)
    notification = incident_of(tenant_a).notifications.get(channel="webhook")
    assert notification_deliver(notification_id=notification.pk) is not None
    notification.refresh_from_db()
    assert (notification.state, notification.last_error) == ("pending", "webhook: no answer within 1 s")


# --- hostile names: the pages and the e-mail ---------------------------------------------------------------


def test_hostile_agent_names_and_hostnames_are_text_on_every_page(client, tenant_b, agent_factory):
    """An agent's host names it at registration (and reports its hostname at each connection): whatever it says
    is text on the health page and its live fragment, charts included (here the platform administrator's, which
    lists every tenant's agents)."""
    agent, _ = agent_factory(tenant_b, name=HOSTILE)
    SignInRollup.objects.create(minute=timezone.now().replace(second=0, microsecond=0), tenant=tenant_b, agent=agent,
                                outcome="success", count=3, latency_p50_ms=5, latency_p95_ms=9)
    client.force_login(User.objects.create_superuser("root@platform.test", "R00t-pa55-for-tests"))
    page = client.get(reverse("agent-health-page")).content.decode()
    live = client.get(reverse("agent-health-page"), {"live": "1"}).content.decode()
    for answer in (page, live):
        assert "<img src=x" not in answer and "<script>alert" not in answer
        # The table, the chart's line and its legend, each escaped.
        assert answer.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;") >= 3
    json_response = client.get("/api/agents/health/")
    assert json_response["Content-Type"] == "application/json" and json_response["X-Content-Type-Options"] == "nosniff"


def test_a_line_break_in_the_tenants_name_neither_injects_a_header_nor_stops_the_alert(
        admin_a_client, tenant_a, agent_factory, smtp_server, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp_server.port
    agent_factory(tenant_a, name="alpha-agent")
    url = reverse("admin:tenant_tenant_change", args=[tenant_a.pk])
    renamed = {**change_page_post(admin_a_client.get(url)), "name": "Alpha Corp\r\nBcc: attacker@evil.test"}
    assert admin_a_client.post(url, renamed).status_code == 302
    assert alert_settings_post(admin_a_client, "", emails="ops@alpha.example.test",
                               webhook_secret="").status_code == 302
    confirm_emails(tenant_a)
    assert alerts_evaluate(now=timezone.now() + datetime.timedelta(minutes=5))["opened"] == 1  # the agent is gone
    notification = Notification.objects.get(channel="email")
    notification_deliver(notification_id=notification.pk)

    notification.refresh_from_db()
    assert notification.state == "sent", notification.last_error
    [message] = smtp_server.messages
    assert message["Subject"] == "[PTA] Opened: Alpha Corp Bcc: attacker@evil.test: 0 active agent(s), 1 needed"
    assert message["Bcc"] is None and message["To"] == "ops@alpha.example.test"


# --- the webhook secret: never shown, sent, logged or reported ---------------------------------------------


def test_the_webhook_secret_is_nowhere_once_set(admin_a_client, tenant_a, webhook_receiver, loopback_webhooks,
                                                monkeypatch, caplog, django_capture_on_commit_callbacks):
    from health.delivery import deliver_notification

    caplog.set_level(logging.DEBUG)
    task_arguments = []
    monkeypatch.setattr(deliver_notification, "delay", lambda *args, **kwargs: task_arguments.append((args, kwargs)))
    assert alert_settings_post(admin_a_client, webhook_receiver.url).status_code == 302
    with django_capture_on_commit_callbacks(execute=True):
        incident = incident_of(tenant_a)
    [notification] = incident.notifications.all()
    assert task_arguments == [((notification.pk,), {})]  # the Celery message: the row's id, nothing more
    assert notification_deliver(notification_id=notification.pk) is None

    mine = AlertSettings.objects.get(tenant=tenant_a)
    seen = [admin_a_client.get(reverse(f"admin:health_alertsettings_{view}", args=args)).content.decode()
            for view, args in (("changelist", []), ("change", [mine.pk]), ("history", [mine.pk]))]
    seen += [admin_a_client.get(reverse("admin:health_incident_change", args=[incident.pk])).content.decode(),
             admin_a_client.get(reverse("agent-health-page")).content.decode(),
             admin_a_client.get("/api/agents/health/").content.decode()]
    [request] = webhook_receiver.requests
    seen += [request.body.decode(), str(request.headers), caplog.text,
             str(list(Notification.objects.values())), str(list(Incident.objects.values())),
             bytes(mine.webhook_secret_encrypted or b"").decode("latin-1")]
    assert "set (never shown)" in seen[1]
    for where in seen:
        assert SECRET not in where


class BrokenCipher:
    """The encryption failing half-way, the secret in hand."""

    def __init__(self, key: bytes) -> None:
        pass

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes) -> bytes:
        raise OperationalError("the encryption failed half-way")


class BrokenStore:
    """The database failing at the service's first read, the secret in hand."""

    class objects:  # noqa: N801 (stands in for the model's manager)
        @staticmethod
        def select_for_update():
            raise OperationalError("the database went away")


@pytest.mark.parametrize("broken", ["database", "encryption"])
def test_the_webhook_secret_stays_out_of_error_reports(admin_a, monkeypatch, broken):
    """What django.request logs for a 500, rendered as AdminEmailHandler (or the DEBUG page) renders it: every
    frame's local variables, the form's cleaning and the service's included."""
    if broken == "database":
        monkeypatch.setattr(alert_settings_service, "AlertSettings", BrokenStore)
    else:
        monkeypatch.setattr(alert_settings_service, "AESGCM", BrokenCipher)
    handler = LoggedErrors()
    logging.getLogger("django.request").addHandler(handler)
    browser = Client(raise_request_exception=False)
    browser.force_login(admin_a)
    try:
        response = alert_settings_post(browser, "https://hooks.alpha.example.test/pta")
    finally:
        logging.getLogger("django.request").removeHandler(handler)
    assert response.status_code == 500
    [record] = [r for r in handler.records if r.exc_info and r.exc_info[0] is OperationalError]
    for report in reports(getattr(record, "request", None), record.exc_info):
        assert "OperationalError" in report and "alert_settings_set" in report  # the report is about this failure
        assert SECRET not in report
