"""Delivering incidents: a signed JSON webhook to a real HTTP receiver on loopback, e-mail through Django's
mail, each sent once, retried with backoff, never followed through a redirect."""

import datetime
import hashlib
import hmac
import json
import re

import pytest
from django.core import mail
from django.utils import timezone

from health.models import Incident, Notification
from health.services.alert_settings import alert_settings_set
from health.services.incidents import Condition, incident_open, incident_resolve
from health.services.notifications import MAX_ATTEMPTS, backoff_seconds, notification_deliver, notifications_due
from tests.health.conftest import confirm_emails

pytestmark = pytest.mark.django_db
SECRET = "a-webhook-secret-of-the-tenant-1234"


@pytest.fixture
def incident(tenant_a, webhook_receiver, django_capture_on_commit_callbacks, loopback_webhooks):
    alert_settings_set(tenant=tenant_a, emails=["ops@alpha.example.test", "oncall@alpha.example.test"],
                       webhook_url=webhook_receiver.url, webhook_secret=SECRET)
    confirm_emails(tenant_a)
    condition = Condition(str(tenant_a.pk), Incident.Kind.AGENTS_BELOW_THRESHOLD, "",
                          "Alpha Corp: 0 active agent(s), 1 needed", {"active": 0})
    with django_capture_on_commit_callbacks(execute=False):  # delivered by the tests themselves
        return incident_open(condition=condition, now=timezone.now())


def webhook(incident) -> Notification:
    return incident.notifications.get(channel="webhook")


def test_the_webhook_is_json_signed_over_timestamp_and_body(incident, webhook_receiver):
    notification = webhook(incident)
    assert notification_deliver(notification_id=notification.pk) is None
    assert notification_deliver(notification_id=notification.pk) is None  # sent: never again
    [request] = webhook_receiver.requests
    match = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", request.headers["PTA-Signature"])
    assert match, request.headers
    expected = hmac.new(SECRET.encode(), match.group(1).encode() + b"." + request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(match.group(2), expected)
    assert abs(int(match.group(1)) - timezone.now().timestamp()) < 300
    body = json.loads(request.body)
    assert body["event"] == "incident.opened" and body["delivery"] == notification.pk
    assert body["incident"]["tenant"] == "alpha-corp" and body["incident"]["kind"] == "agents_below_threshold"
    assert body["incident"]["summary"] == incident.summary and body["incident"]["resolved_at"] is None
    assert request.headers["Content-Type"] == "application/json"
    assert SECRET not in request.body.decode() and SECRET not in str(request.headers)
    notification.refresh_from_db()
    assert notification.state == "sent" and notification.attempts == 1


def test_a_receiver_that_fails_is_retried_with_backoff_then_given_up(incident, webhook_receiver):
    webhook_receiver.status = 500
    notification = webhook(incident)
    assert notification_deliver(notification_id=notification.pk) == backoff_seconds(1) == 10
    notification.refresh_from_db()
    assert notification.state == "pending" and notification.last_error == "webhook answered 500"
    assert notification.next_attempt_at > timezone.now() + datetime.timedelta(seconds=8)
    assert notification_deliver(notification_id=notification.pk) is None  # not due yet: no request
    assert len(webhook_receiver.requests) == 1 and notification.pk not in notifications_due()

    for attempt in range(2, MAX_ATTEMPTS + 1):
        Notification.objects.filter(pk=notification.pk).update(next_attempt_at=timezone.now())
        assert notification.pk in notifications_due()
        retry_in = notification_deliver(notification_id=notification.pk)
        assert retry_in == (None if attempt == MAX_ATTEMPTS else backoff_seconds(attempt))
    notification.refresh_from_db()
    assert notification.state == "failed" and len(webhook_receiver.requests) == MAX_ATTEMPTS
    assert [backoff_seconds(n) for n in (1, 2, 3, 9, 20)] == [10, 20, 40, 2560, 3600]


def test_a_redirect_is_not_followed(incident, webhook_receiver):
    webhook_receiver.status = 302  # to http://127.0.0.1:1/elsewhere
    assert notification_deliver(notification_id=webhook(incident).pk) == 10
    notification = webhook(incident)
    assert notification.last_error == "webhook answered 302" and len(webhook_receiver.requests) == 1


def test_email_goes_to_every_address_once(incident):
    notification = incident.notifications.get(channel="email")
    notification_deliver(notification_id=notification.pk)
    notification_deliver(notification_id=notification.pk)
    [message] = mail.outbox
    assert message.to == ["ops@alpha.example.test", "oncall@alpha.example.test"]
    assert message.subject == "[PTA] Opened: Alpha Corp: 0 active agent(s), 1 needed"
    assert "Active agents below the threshold" in message.body


def test_resolution_is_delivered_after_the_commit_by_its_task(incident, webhook_receiver, monkeypatch,
                                                              django_capture_on_commit_callbacks):
    from config.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)  # the task runs here, not on a worker
    with django_capture_on_commit_callbacks(execute=True):
        assert incident_resolve(incident=incident, now=timezone.now())
    assert [json.loads(r.body)["event"] for r in webhook_receiver.requests] == ["incident.resolved"]
    assert [m.subject for m in mail.outbox] == ["[PTA] Resolved: Alpha Corp: 0 active agent(s), 1 needed"]
    with django_capture_on_commit_callbacks(execute=True):
        assert not incident_resolve(incident=incident, now=timezone.now())  # already resolved: nothing more
    assert len(webhook_receiver.requests) == 1 and len(mail.outbox) == 1


def test_a_channel_removed_meanwhile_is_given_up_at_once(incident, tenant_a):
    alert_settings_set(tenant=tenant_a, webhook_url="")
    notification = webhook(incident)
    assert notification_deliver(notification_id=notification.pk) is None
    notification.refresh_from_db()
    assert notification.state == "failed" and notification.last_error == "no webhook is set any more"
