"""The sign-in pages. Thin: parse the form, call the service, render the outcome.

username → password → (when the tenant's policy asks) the second factor. After a password success that needs
MFA the half-done sign-in waits in the session (MFA_SESSION_KEY: user id, tenant id, sign-in record id, next,
channel, start time, wrong codes so far); ``login()`` runs only once the factor is verified, so DOT's authorize
view (which checks only ``is_authenticated``) never issues a code after the password alone.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode, urlsplit

import pta_protocol as protocol
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import SESSION_KEY as AUTH_SESSION_KEY
from django.contrib.auth import login, logout
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponsePermanentRedirect,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice
from oauth2_provider.http import OAuth2ResponseRedirect
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views import RPInitiatedLogoutView
from oauthlib.common import add_params_to_uri

from agents.selectors import password_change_available
from agents.services.sealing import (
    KINDS,
    BrowserSealed,
    SealingRefused,
    browser_sealed_parse,
    sealing_ticket_current,
    sealing_ticket_issue,
    ticket_for_page,
)
from applications.models import Application
from applications.selectors import application_by_client_id
from signin.forms import MfaCodeForm, OtpForm, PasswordChangeForm, PasswordForm, UsernameForm
from signin.helpdesk import help_context
from signin.metrics import metrics_text, signins
from signin.models import PasskeyDevice
from signin.outcomes import OUTCOME_NEXT_STEPS, Outcome
from signin.script import CONTENT_SECURITY_POLICY, SCRIPT_HASH_HEADER, script_integrity
from signin.selectors import MFA_SESSION_KEY, SESSION_KEY, signin_tenant_id
from signin.services.attempt import (
    CHANGEABLE,
    Prepared,
    SignInResult,
    password_change_sign_in,
    password_sign_in,
    password_sign_in_prepare,
    refusal_reason_code,
    signin_completed,
)
from signin.services.authentication import session_authenticated, session_factor_given
from signin.services.client import client_address
from signin.services.logout import (
    LogoutRequest,
    front_channel_frame_sources,
    front_channel_logout_notices,
    logout_request,
    logout_return_allowed,
)
from signin.services.mfa import (
    MAX_CODES_PER_SIGNIN,
    device_id_new,
    mfa_code_verify,
    recovery_codes_exist,
    recovery_codes_issue,
    signin_event_mfa_result,
    totp_device_confirmed,
    totp_enrolment_confirm,
    totp_enrolment_device,
    totp_enrolment_start,
    totp_qr_svg,
    totp_secret_base32,
)
from signin.services.names import username_canonical
from signin.services.oauth_tokens import application_tokens_revoke
from signin.services.passkeys import (
    DEFAULT_NAME,
    Factor,
    PasskeyRefused,
    amr_values,
    passkey_authenticate,
    passkey_authentication_options,
    passkey_exists,
    passkey_register,
    passkey_registration_options,
    phishing_resistant_required,
)
from signin.workers import in_worker, retrying_transient_errors
from tenant.models import Tenant, User
from tenant.selectors import tenant_for_username, user_by_upn

logger = logging.getLogger(__name__)

BACKEND = "signin.backends.PassThroughBackend"
# A half-done sign-in waits this long for its second factor.
MFA_PENDING_SECONDS = 600
DEVICE_COOKIE = "pta_device"
DEVICE_COOKIE_SALT = "pta.device"
DEVICE_COOKIE_AGE = 90 * 24 * 3600
# After an expired or must-change answer, the change page may be used this long.
CHANGE_WINDOW_SECONDS = 600
CHANGE_TEMPLATE = "signin/password_change.html"
CANNOT_SIGN_IN_TEMPLATE = "signin/cannot_sign_in.html"
# What the change page says first, after the password page sent the person there.
CHANGE_REASONS = {
    Outcome.PASSWORD_EXPIRED: "Your password has expired. Choose a new one to sign in.",
    Outcome.PASSWORD_MUST_CHANGE: "Your organisation asks you to choose a new password before you sign in.",
}
# Why the directory refused a new password (the agent's reason code), for the change page.
REFUSAL_MESSAGES = {
    "too_short": "It is too short.",
    "complexity": "It does not meet the complexity rules (for example: upper and lower case letters, digits, "
                  "symbols; not your name).",
    "history": "You have used it before.",
    "too_young": "Your password was changed too recently to change it again yet.",
    "policy": "It does not meet your organisation's password rules.",
}
PASSKEY_REQUIRED = ("Your organisation requires a passkey for this sign-in: codes from an authenticator app and "
                    "recovery codes are not accepted.")
SAML_CONTINUE_PATH = re.compile(r"/saml/[-a-zA-Z0-9_]+/sso/continue/")
ENROLMENT_RESTARTED = ("This set-up was replaced by one started elsewhere. Scan this new code (remove the old "
                       "entry from your app) and enter the code it shows.")


def safe_next(request: HttpRequest, candidate: str | None) -> str:
    """Only local destinations: anything else (another host, a scheme, //host) becomes the default."""
    if candidate and url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()},
                                                     require_https=request.is_secure()):
        return candidate
    return settings.LOGIN_REDIRECT_URL


def _page(request: HttpRequest, template: str, context: dict, *, outcome: Outcome | None = None,
          status: int = 200) -> HttpResponse:
    response = render(request, template, {**context, "outcome": outcome}, status=status)
    # The script that seals the password runs only as published (its hash: signin/script.py).
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response[SCRIPT_HASH_HEADER] = script_integrity()
    if outcome is not None:
        response["PTA-Outcome"] = outcome.value
    return response


def _device(request: HttpRequest) -> str:
    return request.get_signed_cookie(DEVICE_COOKIE, default="", salt=DEVICE_COOKIE_SALT) or ""


def _signed_in_redirect(request: HttpRequest, next_url: str, device: str) -> HttpResponse:
    response = HttpResponseRedirect(next_url)
    response["PTA-Outcome"] = Outcome.SUCCESS.value
    response.set_signed_cookie(DEVICE_COOKIE, device, salt=DEVICE_COOKIE_SALT, max_age=DEVICE_COOKIE_AGE,
                               httponly=True, samesite="Lax", secure=settings.SESSION_COOKIE_SECURE)
    return response


@never_cache
@csrf_protect
@require_http_methods(["GET", "POST"])
@retrying_transient_errors
def username_page(request: HttpRequest) -> HttpResponse:
    next_url = safe_next(request, request.POST.get("next") or request.GET.get("next"))
    if request.method == "GET":
        return _page(request, "signin/username.html", {"form": UsernameForm(), "next": next_url})
    form = UsernameForm(request.POST)
    if not form.is_valid():
        return _page(request, "signin/username.html", {"form": form, "next": next_url}, status=400)
    username = form.cleaned_data["username"]
    # Every name goes on to the password page, and what it shows depends on the domain alone: whether an account
    # of that name exists is told by nothing before a right password (the password step: services/attempt.py).
    upn = username_canonical(typed=username)  # the form checked it has one
    tenant = tenant_for_username(username=upn)
    organisation = tenant.name if tenant is not None else settings.PTA_PLATFORM_NAME
    request.session.cycle_key()  # a sign-in starts: the key the browser came with (perhaps planted) ends here
    request.session.pop(MFA_SESSION_KEY, None)
    request.session[SESSION_KEY] = {"username": username, "organisation": organisation, "next": next_url,
                                    "tenant_id": str(tenant.pk) if tenant is not None else ""}
    if tenant is not None and _sealable(tenant, upn):
        # The domain's agents' keys, for the password page to seal to.
        request.session[SESSION_KEY]["seal"] = sealing_ticket_for(tenant_id=str(tenant.pk),
                                                                  domain=upn.rpartition("@")[2])
    if AUTH_SESSION_KEY not in request.session:  # nobody signed in: the sign-in's state lives minutes, not weeks
        request.session.set_expiry(settings.PTA_SIGNIN_SESSION_SECONDS)
    return HttpResponseRedirect("/login/password/")


def _sealable(tenant: Tenant | None, upn: str) -> bool:
    """Whether the password of ``upn`` goes to agents, and so may be sealed in the browser: a name in a domain of
    a pass-through tenant, unless it is one of that tenant's cloud accounts (a break-glass administrator), whose
    password the portal checks itself (docs/SECURITY.md, "The portal never holds the password": what this
    tells, time already told)."""
    if tenant is None or not tenant.pass_through_enabled:
        return False
    user = user_by_upn(upn=upn, tenant=tenant)
    return not (user is not None and user.source == User.Source.CLOUD and user.tenant_id == tenant.pk)


def sealing_ticket_for(*, tenant_id: str, domain: str, kind: str = protocol.REQUEST_PASSWORD) -> dict | None:
    """A sealing ticket from a synchronous step (the username page runs in a worker thread: the presence read
    runs on the event loop that started it). None, and the page posts the password as without JavaScript, when
    no agent is connected or the registry cannot be read."""
    try:
        return async_to_sync(sealing_ticket_issue)(tenant_id=tenant_id, domain=domain, kind=kind)
    except Exception:  # noqa: BLE001 - the sign-in goes on, sealed by the portal
        logger.warning("no sealing ticket for tenant %s: the page will post the password", tenant_id, exc_info=True)
        return None


def _start_again() -> HttpResponse:
    """The sign-in's state is gone (expired, never there, or its store was lost): back to its first page, with a
    definite outcome for whoever reads it."""
    response = HttpResponseRedirect("/login/")
    response["PTA-Outcome"] = Outcome.SESSION_EXPIRED.value
    return response


def application_of_next(next_url: str) -> Application | None:
    """The application a sign-in is for: the one its ``next`` authorization request names (the authorize
    endpoint sends the browser here with itself as ``next``), else None. Its rule (require MFA) then applies to
    the sign-in itself, so that the code the way back asks for is not refused for want of a second factor."""
    parts = urlsplit(next_url)
    # A SAML sign-in comes back at its continue URL, which names its application's client_id too (samlidp/).
    if parts.path != reverse("oauth2_provider:authorize") and not SAML_CONTINUE_PATH.fullmatch(parts.path):
        return None
    query = parse_qs(parts.query)
    application = application_by_client_id(client_id=query.get("client_id", [""])[0])
    if application is not None and SAML_CONTINUE_PATH.fullmatch(parts.path) and query.get("mfa") == ["1"]:
        # The SAML request asked for a context only a second factor meets (RequestedAuthnContext): this sign-in
        # asks for one as for an application that requires MFA. Never saved; a forged mfa=1 only asks for more.
        application.require_mfa = True
    return application


@dataclass(frozen=True)
class PasswordSubmission:
    state: dict
    password: str | None = field(repr=False)
    device: str
    application: Application | None = None
    sealed: BrowserSealed | None = None  # the password sealed in the browser: then ``password`` is None
    prepared: Prepared | None = None  # the sign-in's first step, done in the form's hop (signin.consumers)


SEALED_FIELD = "sealed"


def _browser_sealed(request: HttpRequest, state: dict, kind: str) -> BrowserSealed:
    """The envelopes the page posted, checked against the sign-in's ticket, which they use up (a replayed post
    finds none). SealingRefused when they do not fit it."""
    ticket = state.pop("seal", None)
    request.session.modified = True
    return browser_sealed_parse(ticket=ticket, posted=request.POST[SEALED_FIELD], kind=kind)


def _seal_again(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    """Envelopes that do not fit the ticket (too old, another sign-in's, tampered with): nothing was asked of an
    agent nor counted; the person types the password again and the page seals it for a fresh ticket."""
    return _page(request, template, {**context, "error": Outcome.SESSION_EXPIRED.message}, status=400,
                 outcome=Outcome.SESSION_EXPIRED)


# Every local, here and in what it calls: the form and its cleaning hold the password under many names.
@sensitive_variables()
def password_submission(request: HttpRequest) -> PasswordSubmission | HttpResponse:
    """The password form, read and checked (synchronous: it runs in the sign-in's first thread hop)."""
    state = request.session.get(SESSION_KEY)
    if not state:
        return _start_again()
    if SEALED_FIELD in request.POST:
        try:
            sealed = _browser_sealed(request, state, protocol.REQUEST_PASSWORD)
        except SealingRefused as refused:
            logger.info("sealed password refused before any agent: %s", refused.reason)
            return _seal_again(request, "signin/password.html", {**_password_context(state), "form": PasswordForm()})
        return PasswordSubmission(state=state, password=None, sealed=sealed,
                                  device=_device(request) or device_id_new(),
                                  application=application_of_next(state["next"]))
    form = PasswordForm(request.POST)
    if not form.is_valid():
        return _page(request, "signin/password.html", {**_password_context(state), "form": form}, status=400,
                     outcome=Outcome.INVALID_CREDENTIALS)
    return PasswordSubmission(state=state, password=form.cleaned_data["password"],
                              device=_device(request) or device_id_new(),
                              application=application_of_next(state["next"]))


def password_form(request: HttpRequest) -> HttpResponse:
    """The password page's form, for the sign-in its session holds (synchronous: one thread hop)."""
    state = request.session.get(SESSION_KEY)
    if not state:
        return _start_again()
    return _page(request, "signin/password.html", {**_password_context(state), "form": PasswordForm()})


def password_submission_prepared(request: HttpRequest, submission: PasswordSubmission) -> PasswordSubmission:
    """The submission with its sign-in's first step done (synchronous: in the form's own hop, so that the sign-in
    takes none before the agent; signin.services.attempt.password_sign_in_prepare)."""
    prepared = password_sign_in_prepare(username=submission.state["username"], ip=client_address(request.META),
                                        device=submission.device)
    return dataclasses.replace(submission, prepared=prepared)


@sensitive_variables("submission")
async def password_submit(request: HttpRequest, submission: PasswordSubmission,
                          then: Callable[[SignInResult], object] | None = None) -> SignInResult:
    """The sign-in of the submission; ``then``: password_sign_in's (the answer, in the sign-in's last hop)."""
    return await password_sign_in(
        username=submission.state["username"], password=submission.password, device=submission.device,
        ip=client_address(request.META), user_agent=request.META.get("HTTP_USER_AGENT", ""),
        application=submission.application, sealed=submission.sealed, prepared=submission.prepared, then=then,
        ticket=submission.state.get("seal") if submission.sealed is None else None,
    )


@sensitive_variables("submission")
def password_answer(request: HttpRequest, submission: PasswordSubmission, result: SignInResult) -> HttpResponse:
    """The page or redirect that ends the password step (synchronous: the sign-in's last thread hop)."""
    state = submission.state
    if result.outcome in CHANGEABLE:
        # The directory knows this password but wants a new one: the change page may follow, for a while.
        assert result.tenant is not None  # the directory answered: an account of a pass-through tenant
        request.session.cycle_key()  # the password was right: a new key before the change is allowed in it
        request.session[SESSION_KEY] = {**state, "change": {
            "outcome": result.outcome.value, "tenant_id": str(result.tenant.pk), "at": time.time()}}
        if result.can_change_password:  # straight to the change form, as Entra ID and Okta do
            response = HttpResponseRedirect("/login/password/change/")
            response["PTA-Outcome"] = result.outcome.value
            return response
        return _cannot_sign_in(request, state, result.outcome)

    def failed() -> HttpResponse:
        if result.outcome in OUTCOME_NEXT_STEPS:  # another try will not help: what to do instead
            return _cannot_sign_in(request, state, result.outcome, locked_until=result.locked_until)
        return _page(request, "signin/password.html", {
            **_password_context(state), "form": PasswordForm(), "error": result.outcome.message},
            outcome=result.outcome)

    return _signed_in_answer(request, state, submission.device, result, failed=failed)


def _cannot_sign_in(request: HttpRequest, state: dict, outcome: Outcome, *,
                    locked_until: float | None = None) -> HttpResponse:
    """The answer the password form cannot change (disabled, locked, outside logon hours, a password that must
    be changed where no agent can change it): what it means, what to do next, whom to ask, and for a cloud
    lock when it ends. The password form is one link away (Try again), not the page's main action.

    Whom to ask is the tenant the typed name's domain routes to (the username step's), never the account's: a
    cloud account in a domain no tenant verified belongs to a tenant all the same, and its helpdesk on a
    ``cloud_locked`` page would tell that the account exists, and whose it is (docs/SECURITY.md, 5a)."""
    tenant = _tenant(state.get("tenant_id"))
    context = {**_password_context(state), **help_context(tenant=tenant), "error": outcome.message,
               "next_steps": OUTCOME_NEXT_STEPS[outcome]}
    if locked_until is not None and tenant is not None:
        # Said to the minute, rounded up: never earlier than the lock really ends. A domain that routes to a tenant
        # locks every name in it by that tenant's policy, so the time tells nothing about the account.
        minute = math.ceil(locked_until / 60) * 60
        context.update(lock_ends=datetime.fromtimestamp(minute, UTC),
                       lock_minutes=max(1, math.ceil((minute - time.time()) / 60)))
    elif locked_until is not None:
        # A domain no tenant verified: a platform administrator and a name nobody has lock for the platform's
        # time, a tenant's break-glass account for its tenant's. When would tell them apart: not said.
        context["lock_later"] = True
    return _page(request, CANNOT_SIGN_IN_TEMPLATE, context, outcome=outcome)


def _signed_in_answer(request: HttpRequest, state: dict, device: str, result: SignInResult,
                      failed: Callable[[], HttpResponse]) -> HttpResponse:
    """After the directory's answer: the second factor, the application (or the done page), or ``failed()``."""
    if result.outcome is Outcome.MFA_REQUIRED:
        # Half done: not logged in. The second factor's pages finish it.
        assert result.user is not None  # MFA_REQUIRED names the user who passed the first factor
        # A new key before the half-done sign-in is stored: only the browser that typed the password holds it,
        # whoever else knew (or planted) the key it came with.
        request.session.cycle_key()
        request.session.pop(SESSION_KEY, None)
        request.session[MFA_SESSION_KEY] = {
            "user_id": result.user.pk, "tenant_id": str(result.user.tenant_id or ""), "event_id": result.event.pk,
            "next": state["next"], "channel": result.event.channel, "started": time.time(), "failures": 0,
            # Only a passkey completes this sign-in (the tenant's, the application's or the platform's rule).
            "phishing_resistant": phishing_resistant_required(
                tenant=result.user.tenant if result.user.tenant_id else None,
                application=application_of_next(state["next"])),
        }
        response = HttpResponseRedirect("/login/mfa/")
        response["PTA-Outcome"] = Outcome.MFA_REQUIRED.value
        return response
    if not result.succeeded:
        return failed()
    request.session.pop(SESSION_KEY, None)
    login(request, result.user, backend=BACKEND)
    session_authenticated(session=request.session, amr=amr_values(factor=""))  # auth_time; prompt=login, max_age
    return _signed_in_redirect(request, state["next"], device)


def _password_context(state: dict) -> dict:
    seal = state.get("seal")
    return {"username": state["username"], "organisation": state["organisation"], "next": state["next"],
            "seal": ticket_for_page(seal) if seal else None}


@never_cache
@csrf_protect
@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
@sensitive_variables("submission")
async def password_page(request: HttpRequest) -> HttpResponse:
    """The password page. It is usually served by signin.consumers (PAGES), which runs the same steps without
    the middleware chain's thread hops; this view serves it wherever that is not routed (the test client, other
    ASGI servers)."""
    if request.method == "GET":
        return await in_worker(password_form)(request)
    submission = await in_worker(password_submission)(request)
    if isinstance(submission, HttpResponse):
        return submission
    result = await password_submit(request, submission)
    return await in_worker(password_answer)(request, submission, result)


# --- changing an expired or must-change password ---------------------------------------------------------

@dataclass(frozen=True)
class ChangeSubmission:
    state: dict
    current_password: str | None = field(repr=False)
    new_password: str | None = field(repr=False)
    device: str
    application: Application | None = None
    sealed: BrowserSealed | None = None  # the three passwords sealed together in the browser


def _change_state(request: HttpRequest) -> dict | None:
    """The sign-in state, when its password step ended expired or must-change a short while ago."""
    state = request.session.get(SESSION_KEY)
    change = (state or {}).get("change")
    if not change or time.time() - change.get("at", 0) > CHANGE_WINDOW_SECONDS:
        return None
    return state


def _change_context(state: dict) -> dict:
    return {**_password_context(state), "why": CHANGE_REASONS[Outcome(state["change"]["outcome"])]}


def _change_unavailable(request: HttpRequest, state: dict) -> HttpResponse:
    """No agent that can change passwords serves the domain: what the password page said, and the helpdesk."""
    return _cannot_sign_in(request, state, Outcome(state["change"]["outcome"]))


async def _change_available(state: dict) -> bool:
    return await password_change_available(tenant_id=state["change"]["tenant_id"], domain=_domain(state))


def _domain(state: dict) -> str:
    return username_canonical(typed=state["username"]).rpartition("@")[2]


def _change_form(request: HttpRequest, ticket: dict | None) -> HttpResponse:
    """The change form, with the ticket its script seals the three passwords to (kept in the session)."""
    state = _change_state(request)
    if state is None:
        return HttpResponseRedirect("/login/")
    state["seal"] = ticket
    request.session.modified = True
    return _page(request, CHANGE_TEMPLATE, {**_change_context(state), "form": PasswordChangeForm()},
                 outcome=Outcome(state["change"]["outcome"]))


def _seal_ticket_kept(request: HttpRequest, kind: str) -> tuple[dict, str, str] | None:
    """The sign-in's state, its tenant and domain for a ticket of ``kind`` (None: no sign-in is at that step)."""
    if kind == protocol.REQUEST_PASSWORD_CHANGE:
        state = _change_state(request)
        return (state, state["change"]["tenant_id"], _domain(state)) if state else None
    state = request.session.get(SESSION_KEY)
    if not state:
        return None
    if not state.get("tenant_id"):
        return state, "", ""  # a domain no tenant verified: a cloud account or nobody, checked by the portal
    if "seal" not in state and not _sealable(_tenant(state["tenant_id"]), username_canonical(typed=state["username"])):
        return state, "", ""  # no agent checks this password: the portal does, as without JavaScript
    return state, state["tenant_id"], _domain(state)


def _seal_ticket_store(request: HttpRequest, kind: str, ticket: dict | None) -> None:
    found = _seal_ticket_kept(request, kind)
    if found is not None and found[0].get("seal") is not ticket:
        found[0]["seal"] = ticket
        request.session.modified = True


@never_cache
@csrf_protect
@require_http_methods(["POST"])
async def seal_ticket_page(request: HttpRequest) -> JsonResponse:
    """What the page's script seals to, asked for just before it seals: the ticket of the username step (or of
    the change page) while it is fresh and its agents are all still connected, else a new one for those connected
    now (so that a page left open, or whose agents went away, seals again without asking the person anything).
    ``candidates`` empty: no agent is connected; the page posts the password as without JavaScript."""
    kind = request.POST.get("kind", "")
    if kind not in KINDS:
        return JsonResponse({"error": "kind"}, status=400)
    found = await in_worker(_seal_ticket_kept)(request, kind)
    if found is None:
        return JsonResponse({"error": "session_expired", "outcome": Outcome.SESSION_EXPIRED.value}, status=409)
    state, tenant_id, domain = found
    if not tenant_id:
        return JsonResponse({"candidates": []})
    ticket = await sealing_ticket_current(ticket=state.get("seal"), tenant_id=tenant_id, domain=domain, kind=kind)
    await in_worker(_seal_ticket_store)(request, kind, ticket)
    return JsonResponse(ticket_for_page(ticket) if ticket else {"candidates": []})


@sensitive_variables()
def password_change_submission(request: HttpRequest) -> ChangeSubmission | HttpResponse:
    """The change form, read and checked before any agent is contacted (first thread hop)."""
    state = _change_state(request)
    if state is None:
        return HttpResponseRedirect("/login/")
    if SEALED_FIELD in request.POST:
        try:
            sealed = _browser_sealed(request, state, protocol.REQUEST_PASSWORD_CHANGE)
        except SealingRefused as refused:
            logger.info("sealed password change refused before any agent: %s", refused.reason)
            return _seal_again(request, CHANGE_TEMPLATE, {**_change_context(state), "form": PasswordChangeForm()})
        return ChangeSubmission(state=state, current_password=None, new_password=None, sealed=sealed,
                                device=_device(request) or device_id_new(),
                                application=application_of_next(state["next"]))
    form = PasswordChangeForm(request.POST)
    if not form.is_valid():
        return _page(request, CHANGE_TEMPLATE, {**_change_context(state), "form": form}, status=400)
    return ChangeSubmission(state=state, current_password=form.cleaned_data["current_password"],
                            new_password=form.cleaned_data["new_password"],
                            device=_device(request) or device_id_new(),
                            application=application_of_next(state["next"]))


@sensitive_variables("submission")
def password_change_answer(request: HttpRequest, submission: ChangeSubmission, result: SignInResult
                           ) -> HttpResponse:
    """Changed: on as after a sign-in (the second factor, the application). Else the form again, with why."""
    state = submission.state

    def failed() -> HttpResponse:
        reason = (REFUSAL_MESSAGES[refusal_reason_code(result.detail)]
                  if result.outcome is Outcome.PASSWORD_REJECTED else "")
        directory_said = result.detail.partition(":")[2].strip() if reason else ""
        return _page(request, CHANGE_TEMPLATE, {
            **_change_context(state), "form": PasswordChangeForm(), "error": result.outcome.message,
            "reason": reason, "directory_said": directory_said}, outcome=result.outcome)

    return _signed_in_answer(request, state, submission.device, result, failed=failed)


@never_cache
@csrf_protect
@sensitive_post_parameters("current_password", "new_password", "confirm_password")
@require_http_methods(["GET", "POST"])
@sensitive_variables("submission")
async def password_change_page(request: HttpRequest) -> HttpResponse:
    """After password_expired or password_must_change: the current password, a new one twice. The change is
    made by an agent with a service account (agents/onprem/pta_agent/directory.py), through the same path as a sign-in
    (signin.services.attempt.password_change_sign_in); without such an agent nothing is sent."""
    if request.method == "GET":
        state = await in_worker(_change_state)(request)
        if state is None:
            return HttpResponseRedirect("/login/")
        if not await _change_available(state):
            return await in_worker(_change_unavailable)(request, state)
        ticket = await sealing_ticket_issue(tenant_id=state["change"]["tenant_id"], domain=_domain(state),
                                            kind=protocol.REQUEST_PASSWORD_CHANGE)
        return await in_worker(_change_form)(request, ticket)
    submission = await in_worker(password_change_submission)(request)
    if isinstance(submission, HttpResponse):
        return submission
    if not await _change_available(submission.state):
        return await in_worker(_change_unavailable)(request, submission.state)
    result = await password_change_sign_in(
        username=submission.state["username"], current_password=submission.current_password,
        new_password=submission.new_password, device=submission.device, ip=client_address(request.META),
        user_agent=request.META.get("HTTP_USER_AGENT", ""), application=submission.application,
        sealed=submission.sealed)
    return await in_worker(password_change_answer)(request, submission, result)


# --- the second factor -----------------------------------------------------------------------------------

def _pending(request: HttpRequest) -> tuple[dict, User] | None:
    pending = request.session.get(MFA_SESSION_KEY)
    if not pending:
        return None
    user = User.objects.filter(pk=pending["user_id"], is_active=True).select_related("tenant").first()
    if time.time() - pending["started"] > MFA_PENDING_SECONDS or user is None:
        request.session.pop(MFA_SESSION_KEY, None)
        return None
    return pending, user


def _mfa_complete(request: HttpRequest, pending: dict, user: User, device_id: str, *, factor: str,
                  passkey: PasskeyDevice | None = None) -> str:
    """The factor is verified: log in now, finish the record, remember the place. Returns the device id."""
    request.session.pop(MFA_SESSION_KEY, None)
    login(request, user, backend=BACKEND)
    request.session[DEVICE_ID_SESSION_KEY] = device_id  # django-otp's marker: this session is verified
    session_authenticated(session=request.session, amr=amr_values(factor=factor, device=passkey))
    session_factor_given(session=request.session, passkey=passkey is not None)
    signin_event_mfa_result(event_id=pending["event_id"], outcome=Outcome.SUCCESS, factor=factor)
    signins.labels(Outcome.SUCCESS.value, pending["channel"]).inc()
    device = _device(request) or device_id_new()
    signin_completed(tenant=user.tenant, user=user, ip=client_address(request.META), device=device)
    return device


def _mfa_throttled(request: HttpRequest, template: str, context: dict, form_class: type[OtpForm],
                   retry_after: int) -> HttpResponse:
    """A try while django-otp throttles the device: the code was not checked, so it is no wrong code (neither
    the sign-in's count nor the record change); the page says how long to wait."""
    seconds = f"{retry_after} second{'s' if retry_after != 1 else ''}"
    error = f"Too many wrong codes. Wait {seconds}, then enter a new code."
    return _page(request, template, {**context, "form": form_class(), "error": error, "retry_after": retry_after},
                 outcome=Outcome.MFA_FAILED)


def _mfa_failed(request: HttpRequest, pending: dict, template: str, context: dict,
                form_class: type[OtpForm]) -> HttpResponse:
    pending["failures"] += 1
    signin_event_mfa_result(event_id=pending["event_id"], outcome=Outcome.MFA_FAILED)
    signins.labels(Outcome.MFA_FAILED.value, pending["channel"]).inc()
    if pending["failures"] >= MAX_CODES_PER_SIGNIN:
        request.session.pop(MFA_SESSION_KEY, None)
        return _page(request, "signin/mfa_ended.html", {"next": pending["next"]}, outcome=Outcome.MFA_FAILED)
    request.session[MFA_SESSION_KEY] = pending
    return _page(request, template, {**context, "form": form_class(), "error": Outcome.MFA_FAILED.message},
                 outcome=Outcome.MFA_FAILED)


def _code_factor(check) -> str:
    """Which device a verified code belonged to (django-otp's persistent id names the device's model)."""
    return Factor.RECOVERY_CODE if check.device_id.startswith("otp_static.") else Factor.TOTP


def _codes_allowed(pending: dict, user: User) -> bool:
    """A code (authenticator app or recovery code) may be given: the sign-in does not require a passkey, or the
    user has none yet (the code is then the existing factor, and a passkey is enrolled before it completes)."""
    return not pending.get("phishing_resistant") or not passkey_exists(user=user)


def _mfa_context(request: HttpRequest, pending: dict, user: User) -> dict:
    context: dict = {"username": user.upn, "next": pending["next"], "form": MfaCodeForm(),
                     "codes_allowed": _codes_allowed(pending, user) and (
                         totp_device_confirmed(user=user) is not None or recovery_codes_exist(user=user))}
    if passkey_exists(user=user):  # offered first; a new challenge for this session with every page shown
        context["passkey_options"] = json.loads(passkey_authentication_options(session=request.session, user=user))
    return context


@never_cache
@csrf_protect
@sensitive_post_parameters("otp")
@require_http_methods(["GET", "POST"])
def mfa_page(request: HttpRequest) -> HttpResponse:
    found = _pending(request)
    if found is None:
        return HttpResponseRedirect("/login/")
    pending, user = found
    if pending.get("enrol_passkey") or (totp_device_confirmed(user=user) is None and not passkey_exists(user=user)):
        return HttpResponseRedirect("/login/mfa/enrol/")
    if request.method == "GET":
        return _page(request, "signin/mfa.html", _mfa_context(request, pending, user), outcome=Outcome.MFA_REQUIRED)
    if not _codes_allowed(pending, user):
        # A code relayed by a fake page would pass here: this sign-in takes a passkey only. Not a wrong code.
        return _page(request, "signin/mfa.html", {**_mfa_context(request, pending, user),
                                                  "error": PASSKEY_REQUIRED}, outcome=Outcome.MFA_FAILED)
    form = MfaCodeForm(request.POST)
    check = mfa_code_verify(user=user, token=form.data.get("otp", "")) if form.is_valid() else None
    if check is not None and check.throttled:
        return _mfa_throttled(request, "signin/mfa.html", _mfa_context(request, pending, user), MfaCodeForm,
                              check.retry_after)
    if check is None or not check.ok:
        return _mfa_failed(request, pending, "signin/mfa.html", _mfa_context(request, pending, user), MfaCodeForm)
    if pending.get("phishing_resistant"):  # the existing factor is given; a passkey is enrolled, then used
        pending.update(enrol_passkey=True, factor_given=_code_factor(check))
        request.session[MFA_SESSION_KEY] = pending
        return HttpResponseRedirect("/login/mfa/enrol/")
    device = _mfa_complete(request, pending, user, check.device_id, factor=_code_factor(check))
    return _signed_in_redirect(request, pending["next"], device)


@never_cache
@csrf_protect
@require_http_methods(["POST"])
def mfa_passkey_page(request: HttpRequest) -> HttpResponse:
    """The passkey's answer (navigator.credentials.get(), sent by signin/static/signin/passkey.js)."""
    found = _pending(request)
    if found is None:
        return HttpResponseRedirect("/login/")
    pending, user = found
    try:
        passkey = passkey_authenticate(session=request.session, user=user,
                                       credential_json=request.POST.get("credential", ""))
    except PasskeyRefused as refused:
        logger.warning("passkey refused for sign-in record %s: %s", pending["event_id"], refused)
        return _mfa_failed(request, pending, "signin/mfa.html", _mfa_context(request, pending, user), MfaCodeForm)
    device = _mfa_complete(request, pending, user, passkey.persistent_id, factor=Factor.PASSKEY, passkey=passkey)
    if pending.get("recovery_codes_due"):  # a first factor enrolled in this sign-in: codes for the lost device
        response = _page(request, "signin/recovery_codes.html", {
            "codes": recovery_codes_issue(user=user), "next": pending["next"], "factor": "passkey"},
            outcome=Outcome.SUCCESS)
        response.set_signed_cookie(DEVICE_COOKIE, device, salt=DEVICE_COOKIE_SALT, max_age=DEVICE_COOKIE_AGE,
                                   httponly=True, samesite="Lax", secure=settings.SESSION_COOKIE_SECURE)
        return response
    return _signed_in_redirect(request, pending["next"], device)


def _enrol_context(request: HttpRequest, pending: dict, user: User, *, totp_allowed: bool) -> dict:
    context: dict = {"username": user.upn, "next": pending["next"], "totp_allowed": totp_allowed,
                     "passkey_default_name": DEFAULT_NAME,
                     "passkey_create_options": json.loads(passkey_registration_options(session=request.session,
                                                                                       user=user))}
    return context


@never_cache
@csrf_protect
@sensitive_post_parameters("otp")
@require_http_methods(["GET", "POST"])
def mfa_enrol_page(request: HttpRequest) -> HttpResponse:
    found = _pending(request)
    if found is None:
        return HttpResponseRedirect("/login/")
    pending, user = found
    passkey_due = bool(pending.get("enrol_passkey"))  # a passkey is required and the existing factor was given
    if not passkey_due and (totp_device_confirmed(user=user) is not None or passkey_exists(user=user)):
        return HttpResponseRedirect("/login/mfa/")
    totp_allowed = not passkey_due and not pending.get("phishing_resistant")
    if not totp_allowed:
        if request.method == "POST":  # an authenticator app is no answer here
            return _page(request, "signin/mfa_enrol.html", {
                **_enrol_context(request, pending, user, totp_allowed=False), "error": PASSKEY_REQUIRED},
                outcome=Outcome.MFA_FAILED)
        return _page(request, "signin/mfa_enrol.html", _enrol_context(request, pending, user, totp_allowed=False),
                     outcome=Outcome.MFA_REQUIRED)
    # Each enrolment has its own secret, bound to this sign-in's session; starting one voids any other.
    device = totp_enrolment_device(user=user, device_id=pending.get("enrol_device"))
    restarted = device is None and "enrol_device" in pending and request.method == "POST"
    if device is None:
        device = totp_enrolment_start(user=user)
        pending["enrol_device"] = device.pk
        request.session[MFA_SESSION_KEY] = pending
    context = {**_enrol_context(request, pending, user, totp_allowed=True), "qr_svg": totp_qr_svg(device),
               "secret": totp_secret_base32(device)}
    if restarted:
        return _page(request, "signin/mfa_enrol.html", {**context, "form": OtpForm(), "error": ENROLMENT_RESTARTED},
                     outcome=Outcome.MFA_REQUIRED)
    if request.method == "GET":
        return _page(request, "signin/mfa_enrol.html", {**context, "form": OtpForm()}, outcome=Outcome.MFA_REQUIRED)
    form = OtpForm(request.POST)
    check, codes = (totp_enrolment_confirm(user=user, device_id=device.pk, token=form.cleaned_data["otp"])
                    if form.is_valid() else (None, []))
    if check is not None and check.throttled:
        return _mfa_throttled(request, "signin/mfa_enrol.html", context, OtpForm, check.retry_after)
    if check is None or not check.ok:
        return _mfa_failed(request, pending, "signin/mfa_enrol.html", context, OtpForm)
    device_cookie = _mfa_complete(request, pending, user, check.device_id, factor=Factor.TOTP)
    # The recovery codes are shown this once; the sign-in is complete.
    response = _page(request, "signin/recovery_codes.html", {"codes": codes, "next": pending["next"]},
                     outcome=Outcome.SUCCESS)
    response.set_signed_cookie(DEVICE_COOKIE, device_cookie, salt=DEVICE_COOKIE_SALT, max_age=DEVICE_COOKIE_AGE,
                               httponly=True, samesite="Lax", secure=settings.SESSION_COOKIE_SECURE)
    return response


@never_cache
@csrf_protect
@require_http_methods(["POST"])
def mfa_enrol_passkey_page(request: HttpRequest) -> HttpResponse:
    """A new passkey's answer (navigator.credentials.create()). Stored, then used at once on the second factor's
    page: the sign-in completes with an assertion of it, like every passkey sign-in."""
    found = _pending(request)
    if found is None:
        return HttpResponseRedirect("/login/")
    pending, user = found
    passkey_due = bool(pending.get("enrol_passkey"))
    if not passkey_due and (totp_device_confirmed(user=user) is not None or passkey_exists(user=user)):
        return HttpResponseRedirect("/login/mfa/")  # enrolment is for a user without a factor, or a passkey due
    try:
        passkey_register(session=request.session, user=user, credential_json=request.POST.get("credential", ""),
                         name=request.POST.get("name", ""))
    except PasskeyRefused as refused:
        logger.warning("passkey registration refused for sign-in record %s: %s", pending["event_id"], refused)
        totp_allowed = not passkey_due and not pending.get("phishing_resistant")
        if totp_allowed:
            return HttpResponseRedirect("/login/mfa/enrol/")
        return _page(request, "signin/mfa_enrol.html", {
            **_enrol_context(request, pending, user, totp_allowed=False),
            "error": "The passkey could not be set up. Try again."}, outcome=Outcome.MFA_FAILED)
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()  # an app enrolment left half done is void
    pending.pop("enrol_passkey", None)
    pending["recovery_codes_due"] = not passkey_due and not pending.get("phishing_resistant") \
        and not recovery_codes_exist(user=user)
    request.session[MFA_SESSION_KEY] = pending
    return HttpResponseRedirect("/login/mfa/")


# --- help, the portal's front page, its icon -----------------------------------------------------------------

def _tenant(tenant_id: str | None) -> Tenant | None:
    return Tenant.objects.filter(pk=tenant_id).first() if tenant_id else None


def _signin_tenant(request: HttpRequest) -> Tenant | None:
    """The tenant of the sign-in this session is in (after its username step, or waiting for the second
    factor), if any."""
    return _tenant(signin_tenant_id(session=request.session))


@never_cache
@require_http_methods(["GET"])
def help_page(request: HttpRequest) -> HttpResponse:
    """"Can't access your account?": the tenant's help text (plain, escaped) and helpdesk contact once the sign-in
    knows its tenant; before that, or without them, generic advice."""
    tenant = _signin_tenant(request)
    state = request.session.get(SESSION_KEY) or {}
    back = "/login/password/" if state else "/login/"
    return _page(request, "signin/help.html", {**help_context(tenant=tenant), "tenant": tenant, "back": back,
                                               "organisation": tenant.name if tenant is not None else ""})


@never_cache
@require_http_methods(["GET"])
def home_page(request: HttpRequest) -> HttpResponse:
    """``/``: what this site is, and the way in (the applications send people to /login/ themselves)."""
    return _page(request, "signin/home.html", {})


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page links: the portal's own SVG icon, from static."""
    return HttpResponsePermanentRedirect(static("signin/favicon.svg"))


# --- after sign-in ---------------------------------------------------------------------------------------

@never_cache
async def done_page(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    if not user.is_authenticated:
        return HttpResponseRedirect("/login/")
    # In a worker thread: the page reads the database (the tenant's branding).
    return await in_worker(_page)(request, "signin/done.html", {"user": user}, outcome=Outcome.SUCCESS)


# How long the signed-out page waits for its frames to tell the other protocols' applications before it goes on to
# the application that asked for the sign-out (a meta refresh: no script, which the pages' policy keeps out).
FRONT_CHANNEL_WAIT_SECONDS = 3


def _signed_out_telling(request: HttpRequest, *, continue_to: str = "") -> HttpResponse:
    """The signed-out page with a hidden frame per application of another protocol (SAML SPs) to tell of the
    sign-out (``front_channel_logout_notices``), then on to ``continue_to`` when there is one."""
    response = _page(request, "signin/signed_out.html", {
        "front_channel": front_channel_logout_notices(request=request), "continue_to": continue_to,
        "wait_seconds": FRONT_CHANNEL_WAIT_SECONDS})
    # The notices' frames: the portal's notice page, then the application's logout URL it posts to.
    sources = " ".join(["'self'", *front_channel_frame_sources(notices=front_channel_logout_notices(request=request))])
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY + f"; frame-src {sources}"
    return response


class LogoutView(RPInitiatedLogoutView):
    """The portal's sign-out page is also OpenID Connect's end_session_endpoint (RP-initiated logout):
    a plain POST from the portal's own pages signs out. An application's request names the application (its
    client_id, or the audience of its id_token_hint: ``signin/services/logout.py``); a signed-in user confirms,
    and only what that user holds at that application is revoked (nothing without a session, whatever the hint).
    It always ends on a page: the registered post_logout_redirect_uri (with state) only when a signed-in session
    ends with a hint of that application for its user, else the portal's signed-out page; a request that cannot
    be verified is explained there (or on the sign-out page, signed in), never redirected."""

    template_name = "signin/logout.html"

    def post(self, request, *args, **kwargs):
        if not any(request.POST.get(k) for k in ("id_token_hint", "client_id", "post_logout_redirect_uri")):
            logout(request)
            if front_channel_logout_notices(request=request):
                return _signed_out_telling(request)
            return HttpResponseRedirect("/login/")
        return super().post(request, *args, **kwargs)

    def validate_logout_request(self, id_token_hint, client_id, post_logout_redirect_uri):
        self.logout_request: LogoutRequest = logout_request(
            id_token_hint=id_token_hint, client_id=client_id, issuer=oauth2_settings.oidc_issuer(self.request))
        application = self.logout_request.application
        self.validate_post_logout_redirect_uri(application, post_logout_redirect_uri)
        return application, None  # the hint never says whose tokens go: the session does

    def do_logout(self, application=None, post_logout_redirect_uri=None, state=None, token_user=None):
        user = self.request.user if self.request.user.is_authenticated else None
        if application is not None and user is not None:
            application_tokens_revoke(user=user, application=application)
        logout(self.request)
        # Registered for this application (validate_logout_request), and this session's user's own request.
        if post_logout_redirect_uri and logout_return_allowed(request=self.logout_request, user=user):
            target = add_params_to_uri(post_logout_redirect_uri, [("state", state)]) if state else \
                post_logout_redirect_uri
            if front_channel_logout_notices(request=self.request) and \
                    urlsplit(target).scheme in application.get_allowed_schemes():
                return _signed_out_telling(self.request, continue_to=target)
            return OAuth2ResponseRedirect(target, application.get_allowed_schemes())
        if front_channel_logout_notices(request=self.request):
            return _signed_out_telling(self.request)
        return _page(self.request, "signin/signed_out.html", {})

    def error_response(self, error):
        problem = f"The application's sign-out request could not be verified: {error.description}"
        if self.request.user.is_authenticated:  # the plain sign-out form, without the application's request
            return _page(self.request, self.template_name, {"problem": problem})
        return _page(self.request, "signin/signed_out.html", {"problem": problem})


@never_cache
def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin console signs in through the same pages (and second factor) as everyone."""
    next_url = safe_next(request, request.GET.get("next")) if request.GET.get("next") else "/admin/"
    if request.user.is_authenticated and not request.user.is_staff:
        return _page(request, "signin/not_admin.html", {"user": request.user}, status=403)
    return HttpResponseRedirect("/login/?" + urlencode({"next": next_url}))


def _metrics_caller_allowed(request: HttpRequest) -> bool:
    """The caller presents ``Authorization: Bearer <PTA_METRICS_TOKEN>`` (compared in constant time)."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    expected = settings.PTA_METRICS_TOKEN.encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), expected)


@never_cache
async def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics, for the scraper only: they list every tenant's agent ids and outcome counts."""
    if not settings.PTA_METRICS_TOKEN:
        raise Http404  # not configured: the endpoint does not exist
    if not _metrics_caller_allowed(request):
        response = HttpResponse("A bearer token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics_text(), content_type="text/plain; version=0.0.4; charset=utf-8")
