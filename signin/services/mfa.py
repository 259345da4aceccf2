"""The second factor: who needs it (the tenant's policy), TOTP enrolment and verification (django-otp), recovery
codes, and the sign-in record's MFA fields (docs/architecture.md, "Libraries: how they really behave").

A sign-in is "familiar" when it comes from an address, or a device (a signed cookie), that has completed a
sign-in of this user before: completed, so a password alone never makes a place familiar under the
"unfamiliar" policy.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import segno
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_otp.models import VerifyNotAllowed
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from signin.models import PasskeyDevice, RecoveryCode, SignInEvent
from signin.outcomes import Outcome
from signin.recovery_codes import (
    recovery_code_digest,
    recovery_code_matches,
    recovery_code_new,
    recovery_code_normalised,
)
from tenant.models import Tenant, User
from tenant.selectors import LocationMatch
from trail.stream import stream_on, stream_signin

RECOVERY_CODE_COUNT = 10
# Wrong codes allowed in one half-done sign-in before it is dropped and the password is asked again.
MAX_CODES_PER_SIGNIN = 5
TOTP_DEVICE_NAME = "Authenticator app"
RECOVERY_DEVICE_NAME = "Recovery codes"


@dataclass(frozen=True)
class MfaDecision:
    required: bool
    reason: str

    @property
    def decision(self) -> str:
        return SignInEvent.MfaDecision.REQUIRED if self.required else SignInEvent.MfaDecision.NOT_REQUIRED


def mfa_decide(*, tenant: Tenant | None, user: User, familiar_address: bool, known_device: bool,
               location: LocationMatch | None = None, application_requires: bool = False,
               phishing_resistant: bool = False) -> MfaDecision:
    """The tenant's policy applied to one password success, then the application's own rule: an application that
    requires MFA asks for it whatever the policy said. ``location`` is the tenant's named location the client's
    address is in. A phishing-resistant factor required (signin/services/passkeys.py) asks for a passkey at
    every sign-in, wherever it comes from. Pure: no database, no cache."""
    if phishing_resistant:
        return MfaDecision(True, "phishing_resistant_required")
    policy = _policy_decide(tenant=tenant, user=user, familiar_address=familiar_address, known_device=known_device,
                            trusted_location=location is not None and location.trusted)
    if application_requires and not policy.required:
        return MfaDecision(True, "application_requires_mfa")
    return policy


def _policy_decide(*, tenant: Tenant | None, user: User, familiar_address: bool, known_device: bool,
                   trusted_location: bool) -> MfaDecision:
    if tenant is None:  # platform administrators: no tenant policy; the second factor unless the platform waives it
        required = user.mfa_enforced or settings.PTA_PLATFORM_MFA
        return MfaDecision(required, "platform_account" if required else "platform_mfa_off")
    policy = tenant.mfa_policy
    if policy == Tenant.MfaPolicy.ALL:
        return MfaDecision(True, "policy_all")
    if policy == Tenant.MfaPolicy.PER_USER:
        return MfaDecision(user.mfa_enforced, "user_enforced" if user.mfa_enforced else "user_not_enforced")
    if policy == Tenant.MfaPolicy.UNFAMILIAR:
        if known_device:
            return MfaDecision(False, "known_device")
        if familiar_address:
            return MfaDecision(False, "familiar_address")
        if trusted_location:  # the organisation's own networks are familiar ground
            return MfaDecision(False, "trusted_location")
        return MfaDecision(True, "unfamiliar_sign_in")
    if policy == Tenant.MfaPolicy.UNTRUSTED:
        return MfaDecision(False, "trusted_location") if trusted_location else MfaDecision(True, "untrusted_location")
    return MfaDecision(False, "policy_off")


# --- devices (remembered with the familiar places: signin/services/lockout.py) ----------------------------

def device_id_new() -> str:
    return secrets.token_urlsafe(24)


# --- TOTP and recovery codes -----------------------------------------------------------------------------

def totp_device_confirmed(*, user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


@transaction.atomic
def totp_enrolment_start(*, user: User) -> TOTPDevice:
    """A new device with a new secret, for one enrolment (its id is kept in that sign-in's session). Any other
    unconfirmed device of the user is void from now on: a secret seen elsewhere never becomes a factor."""
    TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).delete()
    device = TOTPDevice(user=user, name=TOTP_DEVICE_NAME, confirmed=False)
    device.full_clean()
    device.save()
    return device


def totp_enrolment_device(*, user: User, device_id: int | None) -> TOTPDevice | None:
    """The device this enrolment started, while it is still the one being enrolled."""
    if device_id is None:
        return None
    return TOTPDevice.objects.filter(pk=device_id, user=user, confirmed=False).first()


def totp_secret_base32(device: TOTPDevice) -> str:
    import base64

    return base64.b32encode(device.bin_key).decode("ascii").rstrip("=")


def totp_qr_svg(device: TOTPDevice) -> str:
    """The otpauth:// URL as an inline SVG QR code (no external request, nothing written to disk)."""
    return segno.make(device.config_url, error="m").svg_inline(scale=5, dark="#1b1f24", light="#ffffff",
                                                                 title="QR code for your authenticator app")


@dataclass(frozen=True)
class CodeCheck:
    ok: bool
    # Refused unchecked: the device is throttled after wrong codes (django-otp), for retry_after more seconds.
    # The code was not looked at, so the try is not a wrong code (nor counted as one anywhere).
    throttled: bool = False
    device_id: str = ""
    retry_after: int = 0


def _refused(info) -> CodeCheck:
    if not info or info.get("reason") != VerifyNotAllowed.N_FAILED_ATTEMPTS:
        return CodeCheck(False)
    until = info.get("locked_until")
    wait = math.ceil((until - timezone.now()).total_seconds()) if until is not None else 1
    return CodeCheck(False, throttled=True, retry_after=max(1, wait))


def _check(device, token: str) -> CodeCheck:
    # Asked first, so a throttled try never reaches verify_token (whose failure would count and double the wait).
    allowed, info = device.verify_is_allowed()
    if not allowed:
        return _refused(info)
    return CodeCheck(bool(device.verify_token(token)), device_id=device.persistent_id)


def totp_enrolment_confirm(*, user: User, device_id: int, token: str) -> tuple[CodeCheck, list[str]]:
    """Confirm this enrolment's device with a first code; on success, recovery codes (shown once)."""
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().filter(pk=device_id, user=user, confirmed=False).first()
        if device is None:
            return CodeCheck(False), []
        check = _check(device, _digits(token))
        if not check.ok:
            return check, []
        TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
    return check, recovery_codes_issue(user=user)


@transaction.atomic
def recovery_codes_issue(*, user: User) -> list[str]:
    """A fresh set of one-time recovery codes, returned to be shown this once; only their keyed hashes are stored
    (signin/recovery_codes.py). The previous set stops working."""
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    codes = [recovery_code_new() for _ in range(RECOVERY_CODE_COUNT)]
    RecoveryCode.objects.bulk_create(RecoveryCode(device=device, digest=recovery_code_digest(code)) for code in codes)
    return codes


def recovery_codes_exist(*, user: User) -> bool:
    return RecoveryCode.objects.filter(device__user=user, device__confirmed=True).exists()


def recovery_code_verify(*, device: StaticDevice, token: str) -> CodeCheck:
    """StaticDevice.verify_token against the hashes: django-otp's throttling (verify_is_allowed, a failure
    counted, a success resetting it) and its last-use time, with the device's row locked so that two requests
    with one code cannot both use it: the code's row is deleted, and only the request that deleted it passes."""
    with transaction.atomic():
        device = StaticDevice.objects.select_for_update().get(pk=device.pk)
        allowed, info = device.verify_is_allowed()
        if not allowed:
            return _refused(info)
        codes = list(RecoveryCode.objects.filter(device=device).values_list("pk", "digest"))
        index = recovery_code_matches(token, [digest for _, digest in codes])
        if index is not None and RecoveryCode.objects.filter(pk=codes[index][0]).delete()[0]:
            device.throttle_reset(commit=False)
            device.set_last_used_timestamp(commit=False)
            device.save()
            return CodeCheck(True, device_id=device.persistent_id)
        device.throttle_increment()
        return CodeCheck(False)


def mfa_code_verify(*, user: User, token: str) -> CodeCheck:
    """A code from the authenticator app, or a recovery code. Each device throttles its own failures
    (django-otp: the delay doubles after each wrong code) and a TOTP code works once."""
    token = (token or "").strip()
    digits = _digits(token)
    totp = totp_device_confirmed(user=user)
    if totp is not None and digits.isdigit() and len(digits) == totp.digits:
        return _check(totp, digits)
    recovery = StaticDevice.objects.filter(user=user, confirmed=True).first()
    code = recovery_code_normalised(token)
    if recovery is not None and code and len(code) <= 16:
        return recovery_code_verify(device=recovery, token=code)
    if totp is not None:  # neither shape: counts as a wrong code all the same
        return _check(totp, "x")
    return CodeCheck(False)


def _digits(token: str) -> str:
    return (token or "").replace(" ", "").replace("-", "").strip()[:16]


@transaction.atomic
def mfa_reset(*, user: User) -> int:
    """An administrator's reset: every factor of the user goes; the next required sign-in enrols again."""
    removed, _ = TOTPDevice.objects.filter(user=user).delete()
    static, _ = StaticDevice.objects.filter(user=user).delete()
    passkeys, _ = PasskeyDevice.objects.filter(user=user).delete()
    return removed + static + passkeys


# --- the sign-in record ----------------------------------------------------------------------------------

def signin_event_mfa_result(*, event_id: int, outcome: Outcome, factor: str = "") -> None:
    """The second factor's result goes on the same record as the password step: one attempt, one record. The
    factor that completed it (signin/services/passkeys.py Factor) with a success."""
    fields: dict[str, str] = {"outcome": outcome.value, "mfa_result": outcome.value}
    if factor:
        fields["mfa_factor"] = factor
    SignInEvent.objects.filter(pk=event_id).update(**fields)
    if stream_on() and (event := SignInEvent.objects.filter(pk=event_id).first()) is not None:
        stream_signin(event)  # the record's final state, a second line of the same id
