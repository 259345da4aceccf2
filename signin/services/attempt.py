"""One password sign-in, from the username as typed to a recorded outcome (DESIGN.md, "A sign-in request")."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.utils import timezone

from agents.protocol import Outcome
from agents.services.dispatch import password_validate
from signin.metrics import signin_seconds, signins
from signin.models import SignInEvent
from signin.services.lockout import (
    address_is_familiar,
    address_remember,
    lockout_active,
    lockout_record_failure,
    lockout_record_success,
)
from signin.services.mfa import MfaDecision, device_is_known, device_remember, mfa_decide
from signin.services.records import CONTROL_CHARACTERS, signin_event_record
from signin.services.users import user_sync
from signin.workers import in_worker
from tenant.models import Tenant, User
from tenant.selectors import tenant_for_username

MAX_PASSWORD_LENGTH = 512
# Outcomes that are a wrong guess at the password: they count towards cloud smart lockout.
COUNTED_FAILURES = {Outcome.INVALID_CREDENTIALS}


@dataclass(frozen=True)
class SignInResult:
    outcome: Outcome
    tenant: Tenant | None
    user: User | None
    event: SignInEvent
    familiar: bool = False
    # Set after a password success: whether the second factor is required, and why.
    mfa: MfaDecision | None = None

    @property
    def succeeded(self) -> bool:
        """Signed in, with nothing left to ask. MFA_REQUIRED is not a success: nobody logs in yet."""
        return self.outcome is Outcome.SUCCESS


def password_acceptable(password: str) -> bool:
    # AD never matches a control character in a password: refuse before any agent or bind.
    return 0 < len(password) <= MAX_PASSWORD_LENGTH and not CONTROL_CHARACTERS.search(password)


@dataclass(frozen=True)
class _Before:
    """What is known before any agent is asked (one thread hop)."""

    tenant: Tenant | None
    user: User | None
    familiar: bool
    locked: bool
    known_device: bool


def _before(*, upn: str, ip: str, device: str) -> _Before:
    tenant = tenant_for_username(username=upn)
    user = User.objects.filter(upn=upn).select_related("tenant").first()
    familiar = tenant is not None and address_is_familiar(tenant=tenant, username=upn, ip=ip)
    return _Before(tenant=tenant, user=user, familiar=familiar,
                   locked=tenant is not None and lockout_active(tenant=tenant, username=upn, familiar=familiar),
                   known_device=device_is_known(tenant=tenant, username=upn, device=device))


async def password_sign_in(*, username: str, password: str, ip: str = "", user_agent: str = "",
                           channel: str = "web", device: str = "") -> SignInResult:
    """Route, check cloud lockout, validate through an agent (or locally for cloud-only accounts), decide on
    the second factor, record. ``device`` is the browser's device id (a signed cookie), if any; after a
    complete success it is remembered as a known device.

    After a password success the outcome is SUCCESS, or MFA_REQUIRED with the user set: the caller asks for
    the second factor and must not log the user in before it. The database and cache work happens in two
    thread hops, one before and one after the agent: each hop costs more than the work in it."""
    started = time.monotonic()
    upn = username.strip().lower()
    before = await in_worker(_before)(upn=upn, ip=ip, device=device)
    tenant, user = before.tenant, before.user
    validation = None
    if user is not None and user.source == User.Source.CLOUD and (tenant is None or user.tenant_id == tenant.pk):
        outcome = Outcome.CLOUD_LOCKED if before.locked else await _cloud_password_check(user, password)
    elif tenant is None or not tenant.pass_through_enabled:
        outcome = Outcome.UNKNOWN_DOMAIN
    elif before.locked:
        outcome = Outcome.CLOUD_LOCKED
    elif not password_acceptable(password):
        outcome = Outcome.INVALID_CREDENTIALS
    else:
        validation = await password_validate(tenant_id=str(tenant.pk), domain=upn.rpartition("@")[2],
                                             username=upn, password=password)
        outcome = validation.outcome
    result = await in_worker(_after)(
        before=before, upn=upn, ip=ip, device=device, outcome=outcome, validation=validation, started=started,
        record={"username": username, "ip_address": ip or None, "user_agent": user_agent, "channel": channel,
                "tenant": tenant})
    signins.labels(result.outcome.value, channel).inc()
    signin_seconds.labels(channel).observe(time.monotonic() - started)
    return result


def _after(*, before: _Before, upn: str, ip: str, device: str, outcome: Outcome, validation, started: float,
           record: dict) -> SignInResult:
    """Everything after the answer (one thread hop): the user, lockout, the MFA decision, the record."""
    tenant, user = before.tenant, before.user
    if validation is not None and outcome is Outcome.SUCCESS:
        directory_upn = str(validation.user.get("upn") or "").lower()
        user = user_sync(tenant=tenant, upn=_upn_in_tenant(directory_upn, upn, tenant), directory=validation.user,
                         known=user)
    if tenant is not None and outcome in COUNTED_FAILURES:
        lockout_record_failure(tenant=tenant, username=upn, familiar=before.familiar)
    elif tenant is not None and outcome is Outcome.SUCCESS:
        # The address becomes familiar only once the whole sign-in (second factor included) is done.
        lockout_record_success(tenant=tenant, username=upn, ip=ip, familiar=before.familiar,
                               remember_address=False)
    if outcome is Outcome.SUCCESS and user is not None and not user.is_active:
        outcome = Outcome.ACCOUNT_DISABLED
    mfa = None
    if outcome is Outcome.SUCCESS and user is not None:
        mfa = mfa_decide(tenant=tenant if user.tenant_id else None, user=user, familiar_address=before.familiar,
                         known_device=before.known_device)
        record.update(mfa_decision=mfa.decision, mfa_reason=mfa.reason)
        if mfa.required:
            outcome = Outcome.MFA_REQUIRED
        else:
            signin_completed(tenant=tenant, user=user, ip=ip, device=device)
    if validation is not None:
        record.update(agent_id=validation.agent_id, ad_subcode=validation.ad_subcode, agent_ms=validation.agent_ms)
        if validation.request_id:
            record["request_id"] = validation.request_id
    event = signin_event_record(**record, user=user, outcome=outcome.value, familiar=before.familiar,
                                total_ms=round((time.monotonic() - started) * 1000, 2))
    signed_in = outcome in (Outcome.SUCCESS, Outcome.MFA_REQUIRED)
    return SignInResult(outcome=outcome, tenant=tenant, user=user if signed_in else None, event=event,
                        familiar=before.familiar, mfa=mfa)


def signin_completed(*, tenant: Tenant | None, user: User, ip: str, device: str) -> None:
    """A whole sign-in is done (second factor included): remember the place, and when (ID tokens' auth_time)."""
    if tenant is not None:
        address_remember(tenant=tenant, username=user.upn, ip=ip)
    device_remember(tenant=tenant, username=user.upn, device=device)
    user.last_login = timezone.now()
    User.objects.filter(pk=user.pk).update(last_login=user.last_login)


def _upn_in_tenant(directory_upn: str, typed_upn: str, tenant: Tenant) -> str:
    """AD's own UPN when it is in one of the tenant's domains (Alternate ID sign-ins), else the typed one."""
    if not directory_upn or directory_upn == typed_upn:
        return typed_upn
    owned = tenant.domains.filter(name=directory_upn.rpartition("@")[2], verified=True).exists()
    return directory_upn if owned else typed_upn


async def _cloud_password_check(user: User, password: str) -> Outcome:
    """Break-glass and platform accounts keep a local password; hashing runs off the event loop."""
    if not password_acceptable(password):
        return Outcome.INVALID_CREDENTIALS
    ok = await in_worker(user.check_password)(password)
    return Outcome.SUCCESS if ok else Outcome.INVALID_CREDENTIALS
