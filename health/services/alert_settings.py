"""A tenant's alert settings: where its alerts go, and the webhook secret, encrypted at rest like the CA keys."""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from health.confirmations import send_alert_confirmation
from health.models import AlertSettings
from health.services.alert_recipients import alert_recipients_sync
from health.webhooks import address_public
from tenant.models import Tenant

MIN_SECRET_LENGTH = 16
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _secret_key() -> AESGCM:
    # The CA keys' secret, with a label of its own: a key derived for one use never serves the other.
    secret = settings.PTA_CA_ENCRYPTION_KEY.encode()
    return AESGCM(HKDF(hashes.SHA256(), 32, salt=None, info=b"pta-alert-webhook-secret-v1").derive(secret))


def _encrypt_secret(secret: str, *, tenant: Tenant) -> bytes:
    nonce = os.urandom(12)
    return nonce + _secret_key().encrypt(nonce, secret.encode(), str(tenant.pk).encode())


def webhook_secret_read(alert_settings: AlertSettings) -> bytes:
    """The tenant's webhook secret, decrypted for signing; bound to its tenant, so a row copied to another
    tenant does not decrypt."""
    blob = bytes(alert_settings.webhook_secret_encrypted or b"")
    return _secret_key().decrypt(blob[:12], blob[12:], str(alert_settings.tenant_id).encode())


def webhook_address_allowed(address: str) -> bool:
    """Whether a webhook may be posted to ``address``: a public one, or one the operator allowed
    (PTA_ALERT_WEBHOOK_ALLOWED_NETWORKS). Anything else would let a tenant administrator reach the portal's own
    network: its loopback services, the cloud's metadata service, internal hosts."""
    ip = ipaddress.ip_address(address)
    return address_public(address) or any(ip in network for network in settings.PTA_ALERT_WEBHOOK_ALLOWED_NETWORKS)


def webhook_url_problem(url: str) -> str | None:
    """Why alerts cannot be posted to ``url``, or None. Plain http would carry incidents readable on the way. An
    address written in the URL is checked here; a name is resolved, and its addresses checked, at each delivery."""
    parts = urlsplit(url)
    lab = parts.scheme == "http" and parts.hostname in _LOOPBACK and settings.PTA_ALERT_WEBHOOK_HTTP_LOOPBACK
    if not (parts.scheme == "https" and parts.hostname or lab):
        return "The webhook URL must be https:// (plain http only to loopback, in a test set-up)."
    try:
        allowed = webhook_address_allowed(parts.hostname or "")
    except ValueError:  # a name, not an address
        return None
    return None if allowed else "The webhook URL must not point at a loopback, private or link-local address."


def alert_settings_get(*, tenant: Tenant) -> AlertSettings:
    """The tenant's settings, or unsaved defaults (no e-mail, no webhook, threshold 1)."""
    return AlertSettings.objects.filter(tenant=tenant).first() or AlertSettings(tenant=tenant)


@transaction.atomic
def alert_settings_set(*, tenant: Tenant, emails: list[str] | None = None, webhook_url: str | None = None,
                       webhook_secret: str | None = None, active_agents_threshold: int | None = None,
                       commit: bool = True) -> AlertSettings:
    """Change where a tenant's alerts go; what is not given stays. An empty list or URL clears it (and an empty
    URL its secret). A webhook needs a secret of at least MIN_SECRET_LENGTH characters; once stored it is never
    returned, only replaced. A new e-mail address is mailed a confirmation link after the commit and gets no alert
    before it is confirmed (health/services/alert_recipients.py). ``commit=False`` only validates (the admin
    form's check before it saves)."""
    current = AlertSettings.objects.select_for_update().filter(tenant=tenant).first() or AlertSettings(tenant=tenant)
    errors: dict[str, str] = {}
    if emails is not None:
        emails = [address.strip() for address in emails if address.strip()]
        for address in emails:
            try:
                validate_email(address)
            except ValidationError:
                errors["emails"] = f"Not an e-mail address: {address!r}."
        current.emails = "\n".join(dict.fromkeys(emails))
    if webhook_url is not None:
        current.webhook_url = webhook_url.strip()
        if not current.webhook_url:
            current.webhook_secret_encrypted = None
        elif problem := webhook_url_problem(current.webhook_url):
            errors["webhook_url"] = problem
    if webhook_secret is not None:
        webhook_secret = webhook_secret.strip()
        if len(webhook_secret) < MIN_SECRET_LENGTH:
            errors["webhook_secret"] = f"The webhook secret must have at least {MIN_SECRET_LENGTH} characters."
        else:
            current.webhook_secret_encrypted = _encrypt_secret(webhook_secret, tenant=tenant)
    if current.webhook_url and not current.webhook_secret_set and "webhook_secret" not in errors:
        errors["webhook_secret"] = "A webhook needs a secret: the receiver checks each request's signature with it."
    if active_agents_threshold is not None:
        current.active_agents_threshold = active_agents_threshold
    if errors:
        raise ValidationError(errors)
    current.full_clean(validate_unique=False)
    if commit:
        current.save()
        if emails is not None:
            _confirmations_ask(alert_recipients_sync(tenant=tenant, addresses=current.email_list))
    return current


def _confirmations_ask(recipient_ids: list[int]) -> None:
    def enqueue() -> None:
        for recipient_id in recipient_ids:
            send_alert_confirmation.delay(recipient_id)

    if recipient_ids:
        transaction.on_commit(enqueue, robust=True)
