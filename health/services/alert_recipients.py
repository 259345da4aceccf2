"""Confirming the addresses of a tenant's alert e-mail (docs/SECURITY.md, 5f).

Whoever sets an address (a tenant administrator in the console, the platform operator with ``tenant_alerts``)
only asks: the address gets one message, a link to /alerts/confirm/<token>/, and nothing else until someone who
reads it opens the link and presses the button (a GET only shows the page, so a mail scanner following links
confirms nothing). The token is signed (Django's signing, with a salt of its own), expires after
CONFIRMATION_MAX_AGE and names the address's row and the address: a link of an address since removed, or of an
earlier row, confirms nothing.
"""

from __future__ import annotations

import datetime
import logging

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.utils import timezone

from health.models import AlertRecipient
from tenant.models import Tenant

logger = logging.getLogger(__name__)

CONFIRMATION_SALT = "pta.health.alert-email-confirmation.v1"
CONFIRMATION_MAX_AGE = datetime.timedelta(days=3)
# A list saved again (or the command run again) sends an unconfirmed address a new link only this long after
# the last one: saving a page ten times does not mail anyone ten times.
CONFIRMATION_RESEND_AFTER = datetime.timedelta(hours=1)


def alert_confirmation_token(recipient: AlertRecipient) -> str:
    return signing.dumps({"r": recipient.pk, "a": recipient.address}, salt=CONFIRMATION_SALT, compress=False)


def alert_confirmation_url(recipient: AlertRecipient) -> str:
    return f"{settings.PTA_PUBLIC_URL.rstrip('/')}/alerts/confirm/{alert_confirmation_token(recipient)}/"


def alert_recipient_by_token(*, token: str) -> AlertRecipient | None:
    """The row a confirmation link names, while the link is valid: signed by this portal, not expired, and the
    row still there with the same address. None otherwise, whichever the reason."""
    try:
        data = signing.loads(token, salt=CONFIRMATION_SALT, max_age=CONFIRMATION_MAX_AGE)
    except signing.BadSignature:  # forged, altered or expired (SignatureExpired is a BadSignature)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("r"), int) or not isinstance(data.get("a"), str):
        return None
    return AlertRecipient.objects.select_related("tenant").filter(pk=data["r"], address=data["a"]).first()


def alert_recipient_confirm(*, token: str) -> AlertRecipient | None:
    """Confirm the address a valid link names (again: a second press changes nothing)."""
    recipient = alert_recipient_by_token(token=token)
    if recipient is None:
        return None
    if recipient.confirmed_at is None:
        AlertRecipient.objects.filter(pk=recipient.pk, confirmed_at=None).update(confirmed_at=timezone.now())
        recipient.refresh_from_db(fields=["confirmed_at"])
        logger.info("alert e-mail address %s confirmed for tenant %s", recipient.pk, recipient.tenant.slug)
    return recipient


def alert_emails_confirmed(*, tenant_id, addresses: list[str]) -> list[str]:
    """Those of ``addresses`` (in their order) that were confirmed for this tenant."""
    confirmed = set(AlertRecipient.objects.filter(tenant_id=tenant_id, address__in=addresses)
                    .exclude(confirmed_at=None).values_list("address", flat=True))
    return [address for address in addresses if address in confirmed]


def alert_recipients_sync(*, tenant: Tenant, addresses: list[str]) -> list[int]:
    """Rows for exactly ``addresses``: a removed address loses its row (and its confirmation), a new one gets an
    unconfirmed row. Returns the rows owed a confirmation link now (the caller mails them after its commit)."""
    AlertRecipient.objects.filter(tenant=tenant).exclude(address__in=addresses).delete()
    existing = {row.address: row for row in AlertRecipient.objects.filter(tenant=tenant)}
    for address in addresses:
        if address not in existing:
            existing[address] = AlertRecipient.objects.create(tenant=tenant, address=address)
    resend_before = timezone.now() - CONFIRMATION_RESEND_AFTER
    return [row.pk for row in existing.values() if row.confirmed_at is None
            and (row.confirmation_sent_at is None or row.confirmation_sent_at < resend_before)]


def alert_confirmation_send(*, recipient_id: int) -> bool:
    """Mail the confirmation link to an unconfirmed address; True when the SMTP server took it. A failure is
    logged (the address, never the link) and the next save of the list tries again."""
    recipient = AlertRecipient.objects.select_related("tenant").filter(pk=recipient_id, confirmed_at=None).first()
    if recipient is None:
        return False
    body = (f"Someone set this address to receive the health alerts of {recipient.tenant.name} on the "
            f"pass-through authentication portal {settings.PTA_PUBLIC_URL.rstrip('/')}.\n\n"
            f"To receive them, open this link and confirm (it works for {CONFIRMATION_MAX_AGE.days} days):\n\n"
            f"{alert_confirmation_url(recipient)}\n\n"
            "If you did not expect this, ignore it: nothing more is sent to this address unless it is confirmed.\n")
    subject = " ".join(f"[PTA] Confirm alert e-mail for {recipient.tenant.name}".split())  # one header line
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [recipient.address])
    except OSError as exc:
        logger.warning("confirmation for alert address %s not sent: %s", recipient.pk, exc)
        return False
    AlertRecipient.objects.filter(pk=recipient.pk).update(confirmation_sent_at=timezone.now())
    return True
