"""One password sign-in, from the username as typed to a recorded outcome (DESIGN.md, "A sign-in request")."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from channels.db import database_sync_to_async

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
from signin.services.mfa import MfaDecision, device_is_known, mfa_decide
from signin.services.records import signin_event_record
from signin.services.users import user_sync
from tenant.models import Tenant, User
from tenant.selectors import tenant_for_username

MAX_PASSWORD_LENGTH = 512
# AD never matches a control character in a password: refuse before any agent or bind.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
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
    return 0 < len(password) <= MAX_PASSWORD_LENGTH and not _CONTROL.search(password)


async def password_sign_in(*, username: str, password: str, ip: str = "", user_agent: str = "",
                           channel: str = "web", device: str = "") -> SignInResult:
    """Route, check cloud lockout, validate through an agent (or locally for cloud-only accounts), decide on
    the second factor, record. ``device`` is the browser's device id (a signed cookie), if any.

    After a password success the outcome is SUCCESS, or MFA_REQUIRED with the user set: the caller asks for
    the second factor and must not log the user in before it."""
    started = time.monotonic()
    upn = username.strip().lower()
    tenant = await database_sync_to_async(tenant_for_username)(username=upn)
    record = {"username": username, "ip_address": ip or None, "user_agent": user_agent, "channel": channel,
              "tenant": tenant}
    user = await User.objects.filter(upn=upn).select_related("tenant").afirst()
    familiar = False
    validation = None

    if user is not None and user.source == User.Source.CLOUD and (tenant is None or user.tenant_id == tenant.pk):
        if tenant is not None:
            familiar = await address_is_familiar(tenant=tenant, username=upn, ip=ip)
        outcome = await _cloud_password_check(user, password)
    elif tenant is None or not tenant.pass_through_enabled:
        outcome = Outcome.UNKNOWN_DOMAIN
    else:
        familiar = await address_is_familiar(tenant=tenant, username=upn, ip=ip)
        if await lockout_active(tenant=tenant, username=upn, familiar=familiar):
            outcome = Outcome.CLOUD_LOCKED
        elif not password_acceptable(password):
            outcome = Outcome.INVALID_CREDENTIALS
        else:
            validation = await password_validate(tenant_id=str(tenant.pk), domain=upn.rpartition("@")[2],
                                                 username=upn, password=password)
            outcome = validation.outcome
            if outcome is Outcome.SUCCESS:
                directory_upn = str(validation.user.get("upn") or "").lower()
                user = await user_sync(tenant=tenant, upn=await _upn_in_tenant(directory_upn, upn, tenant),
                                       directory=validation.user)
            if outcome in COUNTED_FAILURES:
                await lockout_record_failure(tenant=tenant, username=upn, familiar=familiar)
            elif outcome is Outcome.SUCCESS:
                # The address becomes familiar only once the whole sign-in (second factor included) is done.
                await lockout_record_success(tenant=tenant, username=upn, ip=ip, familiar=familiar,
                                             remember_address=False)

    if outcome is Outcome.SUCCESS and user is not None and not user.is_active:
        outcome = Outcome.ACCOUNT_DISABLED
    mfa = None
    if outcome is Outcome.SUCCESS and user is not None:
        mfa = mfa_decide(tenant=tenant if user.tenant_id else None, user=user, familiar_address=familiar,
                         known_device=await device_is_known(tenant=tenant, username=upn, device=device))
        record.update(mfa_decision=mfa.decision, mfa_reason=mfa.reason)
        if mfa.required:
            outcome = Outcome.MFA_REQUIRED
        elif tenant is not None:
            await address_remember(tenant=tenant, username=upn, ip=ip)
    if validation is not None:
        record.update(agent_id=validation.agent_id, ad_subcode=validation.ad_subcode, agent_ms=validation.agent_ms)
        if validation.request_id:
            record["request_id"] = validation.request_id
    elapsed = time.monotonic() - started
    event = await signin_event_record(**record, user=user, outcome=outcome.value, familiar=familiar,
                                      total_ms=round(elapsed * 1000, 2))
    signins.labels(outcome.value, channel).inc()
    signin_seconds.labels(channel).observe(elapsed)
    signed_in = outcome in (Outcome.SUCCESS, Outcome.MFA_REQUIRED)
    return SignInResult(outcome=outcome, tenant=tenant, user=user if signed_in else None, event=event,
                        familiar=familiar, mfa=mfa)


async def _upn_in_tenant(directory_upn: str, typed_upn: str, tenant: Tenant) -> str:
    """AD's own UPN when it is in one of the tenant's domains (Alternate ID sign-ins), else the typed one."""
    if not directory_upn or directory_upn == typed_upn:
        return typed_upn
    owned = await tenant.domains.filter(name=directory_upn.rpartition("@")[2], verified=True).aexists()
    return directory_upn if owned else typed_upn


async def _cloud_password_check(user: User, password: str) -> Outcome:
    """Break-glass and platform accounts keep a local password; hashing runs off the event loop."""
    if not password_acceptable(password):
        return Outcome.INVALID_CREDENTIALS
    ok = await database_sync_to_async(user.check_password)(password)
    return Outcome.SUCCESS if ok else Outcome.INVALID_CREDENTIALS
