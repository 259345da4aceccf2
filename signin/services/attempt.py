"""One password sign-in, from the username as typed to a recorded outcome (docs/architecture.md, "A sign-in")."""

from __future__ import annotations

import dataclasses
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pta_protocol as protocol
from django.conf import settings
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from agents.queue import QueueFull, SlotQueues
from agents.selectors import password_change_available
from agents.services.dispatch import Validation, password_change, password_validate
from agents.services.sealing import BrowserSealed, ticket_agents
from applications.models import Application
from applications.selectors import application_user_assigned
from signin import timing
from signin.metrics import queue_seconds, signin_seconds, signins
from signin.models import SignInEvent
from signin.outcomes import Outcome
from signin.services.lockout import (
    Hold,
    Place,
    Reservation,
    Verdict,
    alias_remember,
    alias_user_id,
    lockout_account,
    lockout_ends,
    lockout_reserve,
    lockout_reserve_at,
    lockout_settle,
    place_recognised,
    place_remember,
)
from signin.services.mfa import MfaDecision, mfa_decide
from signin.services.names import UsernameRefused, username_canonical
from signin.services.passkeys import phishing_resistant_required
from signin.services.records import CONTROL_CHARACTERS, signin_event_record
from signin.services.users import (
    DIRECTORY_STATES,
    IdentityRejected,
    directory_upn,
    user_directory_state_record,
    user_groups_sync,
    user_sync,
)
from signin.workers import in_worker, in_worker_retrying
from tenant.models import Tenant, User
from tenant.selectors import LocationMatch, location_for_address, tenant_for_username, user_by_upn

logger = logging.getLogger(__name__)
# Guesses at one account waiting for the answers of those in flight (lockout BUSY), in line per account.
lockout_lines = SlotQueues()
MAX_PASSWORD_LENGTH = protocol.MAX_PASSWORD_LENGTH
# Outcomes that are a wrong guess at the password: they count towards cloud smart lockout.
COUNTED_FAILURES = {Outcome.INVALID_CREDENTIALS}
# The directory states a user may leave by changing their password on the sign-in page.
CHANGEABLE = (Outcome.PASSWORD_EXPIRED, Outcome.PASSWORD_MUST_CHANGE)
# Why AD refused a new password, as the agent reports it (agents/onprem/pta_agent/directory.py: REFUSAL_REASONS).
REFUSAL_REASONS = {"too_short", "complexity", "history", "too_young", "policy", "mismatch"}


@dataclass(frozen=True)
class SignInResult:
    outcome: Outcome
    tenant: Tenant | None
    user: User | None
    event: SignInEvent
    familiar: bool = False
    # Set after a password success: whether the second factor is required, and why.
    mfa: MfaDecision | None = None
    # After PASSWORD_EXPIRED or PASSWORD_MUST_CHANGE: whether an agent that can change it serves the domain now.
    can_change_password: bool = False
    # What the agent said beyond the outcome (PASSWORD_REJECTED: the directory's reason).
    detail: str = ""
    # CLOUD_LOCKED: when the account's cloud lock ends (Unix time), if it is known.
    locked_until: float | None = None

    @property
    def succeeded(self) -> bool:
        """Signed in, with nothing left to ask. MFA_REQUIRED is not a success: nobody logs in yet."""
        return self.outcome is Outcome.SUCCESS


def password_acceptable(password: str) -> bool:
    # AD never matches a control character in a password: refuse before any agent or bind. The agent checks the
    # same (pta_protocol.password_refusal), for a password sealed in the browser, which never reaches here.
    return not protocol.password_refusal(password) and not CONTROL_CHARACTERS.search(password)


class Route(enum.Enum):
    CLOUD = "cloud"  # a cloud-only or platform account: its local password, no agent
    PASS_THROUGH = "pass-through"  # a verified domain of a tenant: its agents
    UNKNOWN = "unknown"  # no account and no directory: answered as a wrong password, after the same work


@dataclass(frozen=True)
class _Before:
    """What is known before any agent is asked (one thread hop)."""

    route: Route
    tenant: Tenant | None  # the account's tenant: the routing one, or a cloud account's own (None: platform)
    user: User | None
    familiar: bool
    known_device: bool
    reservation: Reservation | None  # this guess, reserved against the account's lockout
    account: str = ""  # the lockout account the reservation is for
    location: LocationMatch | None = None  # the tenant's named location the client's address is in
    place: Place | None = None  # as place_recognised read it (its record saves place_remember a read)

    @property
    def locked(self) -> bool:
        return self.reservation is not None and self.reservation.hold is Hold.LOCKED

    @property
    def blocked(self) -> bool:
        return self.location is not None and self.location.blocked


def _before(*, upn: str, ip: str, device: str) -> _Before:
    if not upn:  # a name no account can have (whitespace or an invisible character inside): nothing to check
        return _Before(route=Route.UNKNOWN, tenant=None, user=None, familiar=False, known_device=False,
                       reservation=None)
    routed = tenant_for_username(username=upn)
    user = user_by_upn(upn=upn, tenant=routed)
    if user is not None and user.source == User.Source.CLOUD and (routed is None or user.tenant_id == routed.pk):
        route, tenant = Route.CLOUD, user.tenant
    elif routed is not None and routed.pass_through_enabled:
        route, tenant = Route.PASS_THROUGH, routed
        if user is not None and user.tenant_id != routed.pk:
            user = None  # not this tenant's: the sign-in ends in identity_conflict, its lockout is the name's
        elif user is None and (alias := alias_user_id(tenant=routed, typed=upn)):
            user = User.objects.filter(pk=alias, tenant=routed).select_related("tenant").first()
            user = user if user is not None and user.upn != upn else None
    else:
        # Nobody to sign in (no pass-through tenant owns the domain, no cloud account has the name): guessed at
        # as an account would be (its lockout bucket, a password's hashing), so nothing tells it from a cloud
        # account's wrong password; the domain's tenant, if any, for the record and the policy.
        route, tenant, user = Route.UNKNOWN, routed, None
    location = location_for_address(tenant=tenant, ip=ip)
    if location is not None and location.blocked:
        # Refused by the network alone, whatever the account (so it tells nothing about one): no guess is
        # reserved or counted, no password checked, no agent asked.
        return _Before(route=route, tenant=tenant, user=None, familiar=False, known_device=False, reservation=None,
                       location=location)
    account = lockout_account(tenant=tenant, user=user, username=upn)
    # Last: everything before it is a read, so this hop is safe to run again after a transient error. The account's
    # places (familiar address and device) are read in the reservation: they choose its bucket.
    place, reservation = lockout_reserve_at(tenant=tenant, account=account, ip=ip, device=device,
                                            username=user.upn if user is not None else upn)
    if user is not None and user.upn != upn:
        user = None  # reached by another name (Alternate ID): the directory's answer says who signs in
    return _Before(route=route, tenant=tenant, user=user, familiar=place.familiar_address, reservation=reservation,
                   account=account, known_device=place.known_device, location=location, place=place)


@dataclass(frozen=True)
class Prepared:
    """A sign-in's first step (``_before``), done by its caller in a thread hop it had to take anyway (the password
    POST's consumer, with its form): the sign-in then takes no hop of its own before the agent. ``started`` is
    when it began (its deadline and its record's ``total_ms`` count from there)."""

    upn: str
    before: _Before = field(repr=False)
    started: float


def password_sign_in_prepare(*, username: str, ip: str, device: str) -> Prepared | None:
    """``_before`` of the sign-in of ``username``, synchronously (call it in a worker thread); None when it failed
    (the database or Redis restarting, or worse): the sign-in then takes its own hop, which waits out a transient
    error and answers any other as before. Safe to run again: everything before its last step is a read."""
    started = time.monotonic()
    upn = _canonical(username)
    try:
        return Prepared(upn=upn, before=_before(upn=upn, ip=ip, device=device), started=started)
    except Exception:  # noqa: BLE001 - the sign-in's own hop tries again, and answers what it finds
        logger.info("the sign-in's first step failed in the form's hop; it runs again on its own", exc_info=True)
        return None


def _canonical(username: str) -> str:
    try:
        # One spelling per account for routing, the user, the agent's bind and lockout: AD binds "bob   @corp"
        # as bob, so a spelling must never be a bucket of its own (signin/services/names.py).
        return username_canonical(typed=username)
    except UsernameRefused:
        return ""


async def _reserved(before: _Before, *, deadline: float) -> _Before:
    """A guess that found the account's threshold taken by guesses in flight waits in line for their answers,
    then asks again (one at a time per account: each answer frees at most one way)."""
    if before.reservation is None or before.reservation.hold is not Hold.BUSY:
        return before
    try:
        ticket = lockout_lines.join(before.reservation.bucket, limit=settings.PTA_SIGNIN_QUEUE_LENGTH)
    except QueueFull:
        return before
    try:
        while (remaining := deadline - time.monotonic()) > 0.05:
            await lockout_lines.wait(ticket, timeout=remaining)
            if lockout_lines.at_head(ticket):
                reservation = await in_worker(lockout_reserve)(tenant=before.tenant, account=before.account,
                                                               familiar=before.familiar)
                before = dataclasses.replace(before, reservation=reservation)
                if reservation.hold is not Hold.BUSY:
                    break
    finally:
        lockout_lines.leave(ticket)
    return before


@sensitive_variables("password")
async def password_sign_in(*, username: str, password: str | None = None, ip: str = "", user_agent: str = "",
                           channel: str = "web", device: str = "", application: Application | None = None,
                           sealed: BrowserSealed | None = None, prepared: Prepared | None = None,
                           then: Callable[[SignInResult], object] | None = None,
                           ticket: dict | None = None) -> SignInResult:
    """Route, reserve the guess against cloud lockout, validate through an agent (or locally for cloud-only
    accounts), decide on the second factor, record. ``device`` is the browser's device id (a signed cookie), if
    any; after a complete success it is remembered as a known device. ``application`` is the application the
    sign-in is for, when known (its rule may ask for the second factor; the record names it).

    After a password success the outcome is SUCCESS, or MFA_REQUIRED with the user set: the caller asks for
    the second factor and must not log the user in before it. The database and cache work happens in two
    thread hops, one before and one after the agent: each hop costs more than the work in it.

    ``sealed``: the password never reached the portal, sealed in the browser for the agents the page was given
    (their envelopes, checked against the sign-in's ticket). It goes to those agents, which check what
    password_acceptable checks here. A cloud account's page is given no agents (signin/views.py ``_sealable``):
    its password comes as typed and is checked here.

    ``prepared``: the first step, done by the caller in its own thread hop (password_sign_in_prepare, for this
    username, address and device). ``then``: called with the result in the thread of the last step, unless the
    outcome is CHANGEABLE (the caller's answer, in the same hop); it must not raise (keep what it would raise).
    ``ticket``: the sign-in's sealing ticket, unused (the password came as typed): its agents are asked first."""

    @sensitive_variables()
    async def check(before: _Before, upn: str) -> tuple[Outcome, Validation | None]:
        if sealed is not None:
            if before.route is Route.UNKNOWN or before.tenant is None:
                return Outcome.INVALID_CREDENTIALS, None  # its tenant stopped passing through since the ticket
            validation = await password_validate(tenant_id=str(before.tenant.pk), domain=upn.rpartition("@")[2],
                                                 username=upn, sealed=sealed)
            return Outcome(validation.outcome), validation
        assert password is not None  # either the password or its envelopes
        if not password_acceptable(password):
            return Outcome.INVALID_CREDENTIALS, None
        if before.route is Route.CLOUD:
            assert before.user is not None  # the cloud route is taken for a cloud account only
            return await _cloud_password_check(before.user, password), None
        if before.route is Route.UNKNOWN:
            return await _no_account_password_check(password), None
        assert before.tenant is not None  # the pass-through route has the routing tenant
        validation = await password_validate(tenant_id=str(before.tenant.pk), domain=upn.rpartition("@")[2],
                                             username=upn, password=password,
                                             hint=ticket_agents(ticket, tenant_id=str(before.tenant.pk)))
        return Outcome(validation.outcome), validation

    result = await _attempt(username=username, ip=ip, user_agent=user_agent, channel=channel, device=device,
                            check=check, application=application, sealed_in_browser=sealed is not None,
                            prepared=prepared, then=then)
    if result.outcome in CHANGEABLE and result.tenant is not None:
        # Offered only where an agent that can make the change serves the domain now; else the helpdesk.
        available = await password_change_available(tenant_id=str(result.tenant.pk),
                                                    domain=username_canonical(typed=username).rpartition("@")[2])
        result = dataclasses.replace(result, can_change_password=available)
    return result


@sensitive_variables("current_password", "new_password")
async def password_change_sign_in(*, username: str, current_password: str | None = None,
                                  new_password: str | None = None, ip: str = "", user_agent: str = "",
                                  channel: str = "web", device: str = "", application: Application | None = None,
                                  sealed: BrowserSealed | None = None) -> SignInResult:
    """Change an expired or must-change password, then sign in with it: the same path as a password sign-in
    (route, lockout reservation: a wrong current password counts, an agent, the record), with an agent that
    announced it can change passwords. After PASSWORD_CHANGED the sign-in goes on as after a success (the user
    as the agent read them after a bind with the new password, the second factor, the record); the record says
    it was a change. Nothing is sent to an agent when none that can change passwords serves the domain."""

    @sensitive_variables()
    async def check(before: _Before, upn: str) -> tuple[Outcome, Validation | None]:
        if before.route is not Route.PASS_THROUGH:
            return Outcome.NO_AGENT_AVAILABLE, None  # cloud accounts never expire in AD: nothing to change
        assert before.tenant is not None  # the pass-through route has the routing tenant
        if sealed is not None:  # the three passwords sealed together in the browser: the agent checks them
            validation = await password_change(tenant_id=str(before.tenant.pk), domain=upn.rpartition("@")[2],
                                               username=upn, sealed=sealed)
            outcome = Outcome(validation.outcome)
            return (Outcome.SUCCESS if outcome is Outcome.PASSWORD_CHANGED else outcome), validation
        assert current_password is not None and new_password is not None
        if not password_acceptable(current_password):
            return Outcome.INVALID_CREDENTIALS, None
        if not password_acceptable(new_password):
            return Outcome.PASSWORD_REJECTED, None
        assert before.tenant is not None  # the pass-through route has the routing tenant
        validation = await password_change(tenant_id=str(before.tenant.pk), domain=upn.rpartition("@")[2],
                                           username=upn, current_password=current_password,
                                           new_password=new_password)
        outcome = Outcome(validation.outcome)
        if outcome is Outcome.PASSWORD_CHANGED:
            return Outcome.SUCCESS, validation  # signed in with the new password: on as after a success
        return outcome, validation

    return await _attempt(username=username, ip=ip, user_agent=user_agent, channel=channel, device=device,
                          check=check, password_change=True, application=application,
                          sealed_in_browser=sealed is not None)


async def _attempt(*, username: str, ip: str, user_agent: str, channel: str, device: str,
                   check: Callable[[_Before, str], Awaitable[tuple[Outcome, Validation | None]]],
                   password_change: bool = False, application: Application | None = None,
                   sealed_in_browser: bool = False, prepared: Prepared | None = None,
                   then: Callable[[SignInResult], object] | None = None) -> SignInResult:
    if prepared is not None:  # _before done in the caller's hop (password_sign_in_prepare)
        started, upn, before = prepared.started, prepared.upn, prepared.before
        until = started + settings.PTA_SIGNIN_DEADLINE_SECONDS / 2
    else:
        started = time.monotonic()
        upn = _canonical(username)
        until = started + settings.PTA_SIGNIN_DEADLINE_SECONDS / 2  # waits out a database or Redis restart
        before = await in_worker_retrying(_before, upn=upn, ip=ip, device=device, until=until)
    try:
        before = await _reserved(before, deadline=started + settings.PTA_SIGNIN_DEADLINE_SECONDS)
        tenant = before.tenant
        validation = None
        if not upn:
            outcome = Outcome.UNKNOWN_DOMAIN  # a name no account can have, refused by its shape alone
        elif before.blocked:
            outcome = Outcome.LOCATION_BLOCKED  # the tenant refuses this network: before lockout and any agent
        elif before.locked:
            outcome = Outcome.CLOUD_LOCKED
        elif before.reservation is not None and before.reservation.hold is Hold.BUSY:
            outcome = Outcome.TOO_MANY_SIGNINS  # this account's guesses in flight never left room in time
        else:
            asked = time.perf_counter()
            outcome, validation = await check(before, upn)
            timing.step("agent", time.perf_counter() - asked)
            if validation is not None and validation.agent_ms is not None:
                timing.step("handoff", validation.agent_ms / 1000)
                if validation.agent_own_ms is not None:
                    timing.step("agent_own", validation.agent_own_ms / 1000)
        record: dict[str, object] = {"username": username, "ip_address": ip or None, "user_agent": user_agent,
                                     "channel": channel, "tenant": tenant}
        if password_change:
            record["password_change"] = True
        if before.location is not None:
            record.update(location=before.location.name, location_kind=before.location.kind)
        if application is not None:
            record["application_id"] = application.pk
        if validation is not None and validation.request_id:
            # Which side sealed what the agent opened: the page's script, or the portal (no JavaScript, the
            # password grant). The feature's reason: on the second path the portal held the plaintext.
            record["sealed_by"] = SignInEvent.SealedBy.BROWSER if sealed_in_browser else SignInEvent.SealedBy.PORTAL
        if validation is not None and outcome is Outcome.PASSWORD_REJECTED:
            record["detail"] = refusal_reason_code(validation.detail)
        result = await in_worker_retrying(
            _after_then, before=before, upn=upn, ip=ip, device=device, outcome=outcome, validation=validation,
            started=started, record=record, until=max(until, time.monotonic() + 2),
            application_requires=application is not None and application.require_mfa,
            application=application,
            # The password grant gives tokens at once: the assignment is checked here, with the groups just read.
            # A browser sign-in is the portal's own; the authorize endpoint checks the application's.
            assignment_of=application if channel == "oauth" else None, then=then)
    except BaseException:
        # Whatever broke (Redis or the database away, a cancelled request), this guess no longer counts: a
        # reservation left behind would hold the account's way for RESERVATION_SECONDS.
        await _release(before)
        raise
    if before.reservation is not None and before.reservation.granted:
        lockout_lines.slot_freed(before.reservation.bucket)  # the next guess at this account may go
    if validation is not None and validation.queued_ms:
        queue_seconds.observe(validation.queued_ms / 1000)
    signins.labels(result.outcome.value, channel).inc()
    signin_seconds.labels(channel).observe(time.monotonic() - started)
    return result


async def _release(before: _Before) -> None:
    reservation = before.reservation
    if reservation is None or not reservation.granted:
        return
    try:
        await in_worker(lockout_settle)(reservation=reservation, verdict=Verdict.RELEASED)
    except Exception:  # noqa: BLE001 - the store is away too: the reservation expires by itself
        logger.warning("could not release a lockout reservation; it expires by itself", exc_info=True)
    lockout_lines.slot_freed(reservation.bucket)


def refusal_reason_code(detail: str) -> str:
    """The agent's 'history: the password was already used …' → 'history' (what the record keeps)."""
    code = detail.split(":", 1)[0].strip().lower()
    return code if code in REFUSAL_REASONS else "policy"


def _verdict(outcome: Outcome) -> Verdict:
    if outcome in COUNTED_FAILURES:
        return Verdict.FAILED
    return Verdict.SUCCEEDED if outcome is Outcome.SUCCESS else Verdict.RELEASED


def _after_then(*, then: Callable[[SignInResult], object] | None, **kwargs) -> SignInResult:
    """``_after``, then in the same thread the caller's ``then`` (the password page's answer: its session and
    cookies), unless the outcome needs more of the event loop first (CHANGEABLE: whether an agent can change the
    password). ``then`` runs once: what it raises is its caller's to keep (it must not make ``_after`` run again)."""
    result = _after(**kwargs)
    if then is not None and result.outcome not in CHANGEABLE:
        then(result)
    return result


def _after(*, before: _Before, upn: str, ip: str, device: str, outcome: Outcome, validation, started: float,
           record: dict, application_requires: bool = False, application: Application | None = None,
           assignment_of: Application | None = None) -> SignInResult:
    """Everything after the answer (one thread hop): lockout, the user, the MFA decision, the record."""
    tenant, user = before.tenant, before.user
    familiar, known_device, place = before.familiar, before.known_device, before.place
    verdict = _verdict(outcome)
    # A right password with nothing to forgive ends its reservation in its new place's write, when it has one
    # (one command instead of two); else here, or below.
    ending = before.reservation if (verdict is Verdict.SUCCEEDED and before.reservation is not None
                                    and before.reservation.granted and before.reservation.clean) else None
    if before.reservation is not None and ending is None:
        lockout_settle(reservation=before.reservation, verdict=verdict)
    if validation is not None and outcome is Outcome.SUCCESS:
        assert tenant is not None  # an agent answered: the pass-through route, which has the routing tenant
        try:
            signed_upn = directory_upn(typed_upn=upn, directory=validation.user, served_domains=validation.domains)
            user = user_sync(tenant=tenant, upn=signed_upn, directory=validation.user, known=user,
                             served_domains=validation.domains)
        except IdentityRejected as exc:
            logger.warning("sign-in %s refused after agent %s answered: %s", validation.request_id,
                           validation.agent_id, exc)
            outcome, user = Outcome.IDENTITY_CONFLICT, None
        else:
            user_groups_sync(user=user, groups=validation.groups, truncated=validation.groups_truncated,
                             asked=validation.groups_asked)
            if user.upn != upn:  # Alternate ID: the place, the device and the lockout are the account's
                place = place_recognised(tenant=tenant, username=user.upn, ip=ip, device=device)
                familiar, known_device = place.familiar_address, place.known_device
                alias_remember(tenant=tenant, typed=upn, user=user)
    if validation is not None and outcome.value in DIRECTORY_STATES and user is not None:
        user_directory_state_record(user=user, state=outcome.value)  # its tokens die with the account
    if outcome is Outcome.SUCCESS and user is not None and not user.is_active:
        outcome = Outcome.ACCOUNT_DISABLED
    if outcome is Outcome.SUCCESS and user is not None and assignment_of is not None \
            and not application_user_assigned(application=assignment_of, user=user):
        outcome = Outcome.APP_NOT_ASSIGNED  # no second factor asked for an application it gets no token for
    mfa = None
    if outcome is Outcome.SUCCESS and user is not None:
        mfa = mfa_decide(tenant=tenant, user=user, familiar_address=familiar, known_device=known_device,
                         location=before.location, application_requires=application_requires,
                         phishing_resistant=phishing_resistant_required(tenant=tenant, application=application))
        record.update(mfa_decision=mfa.decision, mfa_reason=mfa.reason)
        if mfa.required:
            outcome = Outcome.MFA_REQUIRED
        elif signin_completed(tenant=tenant, user=user, ip=ip, device=device, seen=place, ending=ending):
            ending = None  # ended in the place's write
    if ending is not None:
        lockout_settle(reservation=ending, verdict=Verdict.SUCCEEDED)
    if validation is not None:
        record.update(agent_id=validation.agent_id, ad_subcode=validation.ad_subcode, agent_ms=validation.agent_ms,
                      queued_ms=validation.queued_ms or None)
        if validation.request_id:
            record["request_id"] = validation.request_id
    event = signin_event_record(**record, user=user, outcome=outcome.value, familiar=familiar,
                                total_ms=round((time.monotonic() - started) * 1000, 2))
    signed_in = outcome in (Outcome.SUCCESS, Outcome.MFA_REQUIRED)
    locked_until = (lockout_ends(reservation=before.reservation)
                    if outcome is Outcome.CLOUD_LOCKED and before.reservation is not None else None)
    return SignInResult(outcome=outcome, tenant=tenant, user=user if signed_in else None, event=event,
                        familiar=familiar, mfa=mfa, detail=validation.detail if validation is not None else "",
                        locked_until=locked_until)


def signin_completed(*, tenant: Tenant | None, user: User, ip: str, device: str, seen: Place | None = None,
                     ending: Reservation | None = None) -> bool:
    """A whole sign-in is done (second factor included): remember the place, and when (ID tokens' auth_time).
    ``seen``: the place as this request read it, if it did. ``ending``: its clean reservation, ended in the
    place's write if there is one (True: the caller does not settle it; place_remember)."""
    ended = place_remember(tenant=tenant, username=user.upn, ip=ip, device=device, seen=seen, ending=ending)
    user.last_login = timezone.now()
    User.objects.filter(pk=user.pk).update(last_login=user.last_login)
    return ended


@sensitive_variables("password")
async def _cloud_password_check(user: User, password: str) -> Outcome:
    """Break-glass and platform accounts keep a local password; hashing runs off the event loop."""
    if not password_acceptable(password):
        return Outcome.INVALID_CREDENTIALS
    ok = await in_worker(user.check_password)(password)
    return Outcome.SUCCESS if ok else Outcome.INVALID_CREDENTIALS


@sensitive_variables("password")
async def _no_account_password_check(password: str) -> Outcome:
    """No account of that name: the password is hashed all the same, as Django's ModelBackend does for a
    missing user, so the answer takes as long as a cloud account's wrong password (PBKDF2: most of it)."""
    await in_worker(User().set_password)(password)  # an unsaved user: the hash is thrown away
    return Outcome.INVALID_CREDENTIALS
