"""Passkeys (WebAuthn) as a second factor: who must use one (the phishing-resistant policy), the registration and
authentication ceremonies, and the factor's names for the record and the ID token's ``amr`` (RFC 8176).

The checks of each ceremony are py_webauthn's (``verify_registration_response``, ``verify_authentication_response``):
the challenge, the type, the origin (the portal's own, from ``PTA_PUBLIC_URL``), the RP ID's hash (that URL's
host), user presence, the signature against the key stored at registration, and the signature counter (from a
non-zero start, an assertion that does not raise it is refused: a copy of the key). What is ours: the challenge
lives in the session of the sign-in that asked for it and is taken out before it is checked, so it works once and
only for that browser; a credential is looked up among the signing-in user's own passkeys only; the counter is
stored with an update conditional on the value just checked, so two requests racing with one assertion cannot
both pass.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from signin.models import PasskeyDevice
from tenant.models import Tenant, User

logger = logging.getLogger(__name__)

CHALLENGE_SESSION_KEY = "pta_passkey_challenge"
# A ceremony's challenge is good for this long (the browser's own timeout is a minute).
CHALLENGE_SECONDS = 300
CEREMONY_TIMEOUT_MS = 60_000
# A browser's answer is a few hundred bytes; anything much larger is not one.
MAX_CREDENTIAL_JSON = 16_384
NAME_MAX = 64
DEFAULT_NAME = "Passkey"


class Factor:
    """The second factor that completed a sign-in: on the record (SignInEvent.mfa_factor) and behind ``amr``."""

    PASSKEY = "passkey"
    TOTP = "totp"
    RECOVERY_CODE = "recovery_code"


# --- the policy ------------------------------------------------------------------------------------------------

def phishing_resistant_required(*, tenant: Tenant | None, application=None) -> bool:
    """Whether this sign-in's second factor must be a passkey: the tenant's setting, the application's, or for
    platform administrators (no tenant) PTA_PLATFORM_PHISHING_RESISTANT."""
    if application is not None and getattr(application, "phishing_resistant_required", False):
        return True
    if tenant is None:
        return bool(settings.PTA_PLATFORM_PHISHING_RESISTANT)
    return bool(tenant.phishing_resistant_required)


def amr_values(*, factor: str, device: PasskeyDevice | None = None) -> list[str]:
    """RFC 8176's authentication method references for a sign-in: the password, then the second factor if any.
    A passkey bound to one authenticator is a hardware-secured key (hwk); a synced one (backup eligible) may live
    in software (swk)."""
    if not factor:
        return ["pwd"]
    if factor == Factor.PASSKEY:
        second = "swk" if device is None or device.backup_eligible else "hwk"
    else:
        second = "otp"
    return ["pwd", second, "mfa"]


# --- the relying party -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RelyingParty:
    id: str  # the portal's host: what the browser scopes credentials to
    origin: str  # scheme://host[:port], as the browser writes it into clientDataJSON
    name: str


def relying_party() -> RelyingParty:
    url = urlsplit(settings.PTA_PUBLIC_URL)
    # The name authenticators show beside the account: the portal's host, as the address bar does.
    return RelyingParty(id=url.hostname or "", origin=f"{url.scheme}://{url.netloc}", name=url.hostname or "")


def passkeys_of(*, user: User) -> list[PasskeyDevice]:
    return list(PasskeyDevice.objects.filter(user=user, confirmed=True).order_by("created_at", "pk"))


def passkey_exists(*, user: User) -> bool:
    return PasskeyDevice.objects.filter(user=user, confirmed=True).exists()


# --- the challenge, bound to the session -------------------------------------------------------------------------

def _challenge_store(session, *, purpose: str, user: User, challenge: bytes) -> None:
    session[CHALLENGE_SESSION_KEY] = {"purpose": purpose, "user": user.pk, "challenge": bytes_to_base64url(challenge),
                                      "expires": time.time() + CHALLENGE_SECONDS}


def _challenge_take(session, *, purpose: str, user: User) -> bytes | None:
    """The challenge this session was given for this ceremony and user, taken out: a second answer finds none."""
    stored = session.pop(CHALLENGE_SESSION_KEY, None)
    if not isinstance(stored, dict) or stored.get("purpose") != purpose or stored.get("user") != user.pk \
            or time.time() > float(stored.get("expires", 0)):
        return None
    return base64url_to_bytes(stored["challenge"])


def _descriptors(devices: list[PasskeyDevice]) -> list[PublicKeyCredentialDescriptor]:
    known = {t.value for t in AuthenticatorTransport}
    return [PublicKeyCredentialDescriptor(
        id=base64url_to_bytes(d.credential_id),
        transports=[AuthenticatorTransport(t) for t in d.transports.split(",") if t in known] or None)
        for d in devices]


def _user_handle(user: User) -> bytes:
    # Opaque (no name, no e-mail), stable per account.
    return f"pta-user:{user.pk}".encode()


# --- registration ------------------------------------------------------------------------------------------------

def passkey_registration_options(*, session, user: User) -> str:
    """The options for navigator.credentials.create() (JSON), with a new challenge kept in this session."""
    rp = relying_party()
    challenge = secrets.token_bytes(32)
    options = generate_registration_options(
        rp_id=rp.id, rp_name=rp.name, user_name=user.upn, user_id=_user_handle(user),
        user_display_name=user.display_name or user.upn, challenge=challenge, timeout=CEREMONY_TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.PREFERRED),
        exclude_credentials=_descriptors(passkeys_of(user=user)))
    _challenge_store(session, purpose="register", user=user, challenge=challenge)
    return options_to_json(options)


class PasskeyRefused(Exception):
    """A ceremony's answer that is not accepted; the message is for the log, never the page."""


def _credential(credential_json: str) -> dict:
    if not credential_json or len(credential_json) > MAX_CREDENTIAL_JSON:
        raise PasskeyRefused("no answer, or one too large")
    try:
        credential = json.loads(credential_json)
    except ValueError as exc:
        raise PasskeyRefused("not JSON") from exc
    if not isinstance(credential, dict) or not isinstance(credential.get("id"), str):
        raise PasskeyRefused("not a public-key credential")
    return credential


def passkey_name_clean(name: str) -> str:
    name = " ".join((name or "").split())[:NAME_MAX]
    return name or DEFAULT_NAME


def passkey_register(*, session, user: User, credential_json: str, name: str) -> PasskeyDevice:
    """Verify navigator.credentials.create()'s answer against this session's challenge and store the passkey.
    Raises PasskeyRefused."""
    challenge = _challenge_take(session, purpose="register", user=user)
    if challenge is None:
        raise PasskeyRefused("no registration challenge in this session (expired, used, or never asked)")
    credential = _credential(credential_json)
    rp = relying_party()
    try:
        verified = verify_registration_response(credential=credential, expected_challenge=challenge,
                                                expected_rp_id=rp.id, expected_origin=rp.origin)
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise PasskeyRefused(f"registration not verified: {exc}") from exc
    transports = credential.get("response", {}).get("transports") if isinstance(credential.get("response"),
                                                                                dict) else None
    credential_id = bytes_to_base64url(verified.credential_id)
    with transaction.atomic():
        if PasskeyDevice.objects.filter(credential_id=credential_id).exists():
            raise PasskeyRefused("this credential is registered already")
        device = PasskeyDevice(
            user=user, name=passkey_name_clean(name), confirmed=True, credential_id=credential_id,
            public_key=verified.credential_public_key, sign_count=verified.sign_count,
            backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
            transports=",".join(t for t in transports if isinstance(t, str))[:200] if isinstance(transports, list)
            else "")
        device.full_clean(exclude=["public_key"])
        device.save()
    return device


# --- authentication ----------------------------------------------------------------------------------------------

def passkey_authentication_options(*, session, user: User) -> str:
    """The options for navigator.credentials.get() (JSON): this user's passkeys, a new challenge in this session."""
    rp = relying_party()
    challenge = secrets.token_bytes(32)
    options = generate_authentication_options(
        rp_id=rp.id, challenge=challenge, timeout=CEREMONY_TIMEOUT_MS,
        allow_credentials=_descriptors(passkeys_of(user=user)),
        user_verification=UserVerificationRequirement.PREFERRED)
    _challenge_store(session, purpose="authenticate", user=user, challenge=challenge)
    return options_to_json(options)


def passkey_authenticate(*, session, user: User, credential_json: str) -> PasskeyDevice:
    """Verify navigator.credentials.get()'s answer: this session's challenge, one of this user's passkeys, the
    origin, RP ID, signature and counter. Returns the passkey (its counter and last use stored). Raises
    PasskeyRefused."""
    challenge = _challenge_take(session, purpose="authenticate", user=user)
    if challenge is None:
        raise PasskeyRefused("no authentication challenge in this session (expired, used, or never asked)")
    credential = _credential(credential_json)
    rp = relying_party()
    with transaction.atomic():
        device = PasskeyDevice.objects.select_for_update().filter(
            user=user, confirmed=True, credential_id=credential["id"]).first()
        if device is None:
            raise PasskeyRefused("not one of this user's passkeys")
        try:
            verified = verify_authentication_response(
                credential=credential, expected_challenge=challenge, expected_rp_id=rp.id,
                expected_origin=rp.origin, credential_public_key=bytes(device.public_key),
                credential_current_sign_count=device.sign_count)
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise PasskeyRefused(f"assertion not verified: {exc}") from exc
        updated = PasskeyDevice.objects.filter(pk=device.pk, sign_count=device.sign_count).update(
            sign_count=verified.new_sign_count, last_used_at=timezone.now(),
            backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE)
        if not updated:
            raise PasskeyRefused("the counter moved while this assertion was checked")
    device.refresh_from_db()
    return device


# --- the user's and the administrator's changes --------------------------------------------------------------

def passkey_rename(*, user: User, device_id: int, name: str) -> bool:
    return bool(PasskeyDevice.objects.filter(user=user, pk=device_id).update(name=passkey_name_clean(name)))


def passkey_remove(*, user: User, device_id: int) -> bool:
    removed, _ = PasskeyDevice.objects.filter(user=user, pk=device_id).delete()
    return bool(removed)
