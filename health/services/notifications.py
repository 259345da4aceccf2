"""Delivering the outbox: each notification by e-mail (Django's mail settings) or as a signed JSON webhook.

One attempt at a time claims its row (an UPDATE conditional on it being due, which moves the due time a lease
ahead), so two workers never send the same message; success is written at once. A failed attempt is due again
after an exponential backoff, until MAX_ATTEMPTS. Nothing here waits for a retry: the caller (a Celery task, or
the embedded timer's next sweep) comes back when it is due.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import F
from django.utils import timezone

from health.models import AlertSettings, Notification
from health.services.alert_recipients import alert_emails_confirmed
from health.services.alert_settings import webhook_address_allowed, webhook_secret_read, webhook_url_problem
from health.webhooks import SIGNATURE_HEADER, signature_header

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_FIRST_SECONDS = 10
BACKOFF_MAX_SECONDS = 3600
WEBHOOK_TIMEOUT_SECONDS = 5
# Longer than the slowest attempt (SMTP's EMAIL_TIMEOUT, the webhook's timeout), so a claim is never taken over
# while its attempt may still succeed.
LEASE = datetime.timedelta(seconds=120)


class DeliveryFailed(Exception):
    """An attempt that did not deliver; the message is kept on the row (no secret, no body)."""


class ChannelRemoved(DeliveryFailed):
    """The tenant removed the channel since: no later attempt would do better."""


def backoff_seconds(attempts: int) -> int:
    """The wait after the ``attempts``-th failed attempt: 10 s, 20 s, 40 s, … at most an hour."""
    return min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** max(0, attempts - 1))


def notification_payload(notification: Notification) -> dict:
    """The webhook's JSON: the event, the delivery's id (a receiver's key against duplicates) and the incident."""
    incident = notification.incident
    return {
        "event": f"incident.{notification.event}",
        "delivery": notification.pk,
        "incident": {
            "id": incident.pk, "tenant": incident.tenant.slug, "kind": incident.kind, "subject": incident.subject,
            "summary": incident.summary, "details": incident.details, "opened_at": incident.opened_at.isoformat(),
            "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
        },
    }


def _email_send(notification: Notification, recipients: list[str]) -> None:
    incident = notification.incident
    state = "Resolved" if notification.event == Notification.Event.RESOLVED else "Opened"
    lines = [incident.summary, "", f"{incident.get_kind_display()} ({incident.kind})",
             f"Opened:   {incident.opened_at:%Y-%m-%d %H:%M:%S} UTC"]
    if incident.resolved_at:
        lines.append(f"Resolved: {incident.resolved_at:%Y-%m-%d %H:%M:%S} UTC")
    lines += [f"{name}: {value}" for name, value in incident.details.items()]
    public_url = getattr(settings, "PTA_PUBLIC_URL", "").rstrip("/")
    if public_url:
        lines += ["", f"Incidents: {public_url}/admin/health/incident/{incident.pk}/change/"]
    # One line whatever the tenant's or the agent's name holds: Django refuses a header with a line break (no
    # injection), which would leave the alert unsent.
    subject = " ".join(f"[PTA] {state}: {incident.summary}".split())
    try:
        send_mail(subject, "\n".join(lines) + "\n", settings.DEFAULT_FROM_EMAIL, recipients)
    except OSError as exc:  # smtplib's errors, refused connections and timeouts
        raise DeliveryFailed(f"mail: {exc}") from None


def _webhook_socket(host: str, port: int, deadline: float) -> socket.socket:
    """A connection to ``host``, each of whose addresses must be allowed (webhook_address_allowed). The address
    checked is the one connected to: the name is resolved once, so it cannot answer a public address to the
    check and a private one to the connection. A name that does not resolve is refused alike, so the message
    tells nothing of the portal's own DNS."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        found = []
    if not found or not all(webhook_address_allowed(str(sockaddr[0])) for *_, sockaddr in found):
        raise DeliveryFailed(f"webhook: {host} has no address alerts may be posted to")
    error: OSError = TimeoutError("timed out")
    for family, kind, proto, _, sockaddr in found:
        if (remaining := deadline - time.monotonic()) <= 0:
            break
        sock = socket.socket(family, kind, proto)
        sock.settimeout(remaining)
        try:
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise DeliveryFailed(f"webhook: {error}")


@contextlib.contextmanager
def _cut_at(sock: socket.socket, deadline: float) -> Iterator[threading.Event]:
    """Shut the connection down at ``deadline``; the event tells it happened. A socket timeout bounds each read,
    not the answer: a receiver sending a byte every few seconds would otherwise hold this worker (in the
    embedded profile, the timer that runs every tenant's periodic work) for as long as it liked."""
    handle = sock.dup()  # TLS takes ``sock`` over; shutting a duplicate down ends the connection for both
    expired = threading.Event()

    def cut() -> None:
        expired.set()
        with contextlib.suppress(OSError):
            handle.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), cut)
    timer.daemon = True
    timer.start()
    try:
        yield expired
    finally:
        timer.cancel()
        handle.close()


def _webhook_send(notification: Notification, alert_settings: AlertSettings) -> None:
    """One POST, within WEBHOOK_TIMEOUT_SECONDS in all; a redirect is an answer like any other that is not 2xx
    (the signed body goes to the URL the tenant set, nowhere else)."""
    url = alert_settings.webhook_url
    if problem := webhook_url_problem(url):
        raise DeliveryFailed(problem)
    body = json.dumps(notification_payload(notification), separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "pta-portal-alerts",
               SIGNATURE_HEADER: signature_header(webhook_secret_read(alert_settings), int(time.time()), body),
               "PTA-Event": f"incident.{notification.event}", "PTA-Delivery": str(notification.pk)}
    parts = urlsplit(url)
    host, https = parts.hostname or "", parts.scheme == "https"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        port = parts.port or (443 if https else 80)
    except ValueError as exc:  # a port that is not a number
        raise DeliveryFailed(f"webhook: {exc}") from None
    deadline = time.monotonic() + WEBHOOK_TIMEOUT_SECONDS
    sock = _webhook_socket(host, port, deadline)
    connection = (http.client.HTTPSConnection if https else http.client.HTTPConnection)(host, port)
    try:
        with _cut_at(sock, deadline) as expired:
            try:
                if https:  # the certificate is checked against the URL's name, not the address
                    sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
                connection.sock = sock
                connection.request("POST", target, body, headers)
                status = connection.getresponse().status
            except (OSError, http.client.HTTPException) as exc:
                if not expired.is_set():
                    raise DeliveryFailed(f"webhook: {exc}") from None
            if expired.is_set():  # an answer cut short is no answer, whatever its first line said
                raise DeliveryFailed(f"webhook: no answer within {WEBHOOK_TIMEOUT_SECONDS} s")
    finally:
        connection.close()
        sock.close()
    if not 200 <= status < 300:
        raise DeliveryFailed(f"webhook answered {status}")


def _claim(notification_id: int, now: datetime.datetime) -> bool:
    return bool(Notification.objects.filter(pk=notification_id, sent_at=None, failed_at=None,
                                            next_attempt_at__lte=now)
                .update(next_attempt_at=now + LEASE, attempts=F("attempts") + 1))


def notification_deliver(*, notification_id: int) -> float | None:
    """One attempt at a due notification. Returns the seconds until the next attempt when this one failed and
    another is owed; None when it was sent, given up, or not this caller's to send (not due, or claimed)."""
    now = timezone.now()
    if not _claim(notification_id, now):
        return None
    notification = Notification.objects.select_related("incident__tenant").get(pk=notification_id)
    alert_settings = AlertSettings.objects.filter(tenant_id=notification.incident.tenant_id).first()
    try:
        if notification.channel == Notification.Channel.EMAIL:
            listed = alert_settings.email_list if alert_settings else []
            if not listed:
                raise ChannelRemoved("no e-mail address is set any more")
            # Only addresses whose owner confirmed them: an administrator cannot have alerts sent to anyone.
            recipients = alert_emails_confirmed(tenant_id=notification.incident.tenant_id, addresses=listed)
            if not recipients:
                raise ChannelRemoved("no confirmed e-mail address")
            _email_send(notification, recipients)
        else:
            if not (alert_settings and alert_settings.webhook_url and alert_settings.webhook_secret_set):
                raise ChannelRemoved("no webhook is set any more")
            _webhook_send(notification, alert_settings)
    except DeliveryFailed as exc:
        return _failed(notification, str(exc), final=isinstance(exc, ChannelRemoved))
    except Exception as exc:  # e.g. a secret that no longer decrypts: counted and retried like any failure
        logger.exception("%s for incident %s", notification.channel, notification.incident_id)
        return _failed(notification, type(exc).__name__)
    Notification.objects.filter(pk=notification_id).update(sent_at=timezone.now(), last_error="")
    logger.info("%s sent for incident %s (%s)", notification.channel, notification.incident_id, notification.event)
    return None


def _failed(notification: Notification, error: str, *, final: bool = False) -> float | None:
    now = timezone.now()
    if final or notification.attempts >= MAX_ATTEMPTS:
        Notification.objects.filter(pk=notification.pk).update(failed_at=now, last_error=error[:300])
        logger.error("%s for incident %s given up after %d attempts: %s", notification.channel,
                     notification.incident_id, notification.attempts, error)
        return None
    delay = backoff_seconds(notification.attempts)
    Notification.objects.filter(pk=notification.pk).update(
        next_attempt_at=now + datetime.timedelta(seconds=delay), last_error=error[:300])
    logger.warning("%s for incident %s failed (attempt %d, next in %d s): %s", notification.channel,
                   notification.incident_id, notification.attempts, delay, error)
    return delay


def notifications_due(*, now: datetime.datetime | None = None) -> list[int]:
    """Notifications owed an attempt now: the embedded profile's retries, and production's safety net for a
    task message that was lost."""
    return list(Notification.objects.filter(sent_at=None, failed_at=None, next_attempt_at__lte=now or timezone.now())
                .values_list("pk", flat=True)[:500])
