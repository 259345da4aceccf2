"""OpenID Connect provider glue for django-oauth-toolkit: the ID token's claims (per scope) and auth_time, the
password grant through pass-through validation, the authorize endpoint (the application's own tenant only;
prompt, max_age and response_mode; RFC 9207's iss on every answer) and discovery that says what all this does."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from asgiref.sync import async_to_sync
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import DisallowedRedirect
from django.shortcuts import render, resolve_url
from django.utils.cache import add_never_cache_headers
from django.views.decorators.debug import sensitive_variables
from oauth2_provider.exceptions import InvalidIDTokenError, OAuthToolkitError
from oauth2_provider.models import get_access_token_model, get_grant_model
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views import AuthorizationView, ConnectDiscoveryInfoView
from oauthlib.oauth2.rfc6749 import errors
from oauthlib.oauth2.rfc6749.grant_types.authorization_code import code_challenge_method_s256

from applications.models import Application
from applications.selectors import application_user_assigned
from signin.helpdesk import help_context
from signin.models import IdTokenAuthTime
from signin.outcomes import OUTCOME_NEXT_STEPS, Outcome
from signin.services.account_state import account_still_enabled
from signin.services.attempt import password_sign_in
from signin.services.authentication import (
    session_authentication,
    session_mfa_due,
    session_reauthentication_require,
)
from signin.services.client import client_address
from signin.services.group_claims import OVERAGE_CLAIM, groups_claims
from signin.services.id_token_hint import id_token_hint_read
from signin.services.names import UsernameRefused, username_canonical
from signin.services.oauth_tokens import (
    authorization_code_tokens_record,
    authorization_code_tokens_revoke,
    pkce_value_well_formed,
)
from signin.services.passkeys import phishing_resistant_required
from signin.services.records import signin_event_record
from signin.views import DEVICE_COOKIE, DEVICE_COOKIE_SALT
from tenant.selectors import location_for_address, tenant_for_username

# Outcomes that say the portal or the directory could not answer: not the caller's fault, try again later.
UNAVAILABLE = {Outcome.NO_AGENT_AVAILABLE, Outcome.AGENT_TIMEOUT, Outcome.AGENT_ERROR, Outcome.DIRECTORY_UNAVAILABLE}
# The session's sign-in time, kept on the authorization grant (with its stored claims) for the ID token.
GRANT_AUTH_TIME = "pta_auth_time"
# The methods of that sign-in (RFC 8176 amr: pwd, otp, hwk or swk, mfa), kept the same way for the ID token.
GRANT_AMR = "pta_amr"
RESPONSE_MODES = ("query", "form_post")
# What an ID token carries besides the user's claims (discovery's claims_supported lists both).
TOKEN_CLAIMS = ("iss", "aud", "exp", "iat", "auth_time", "amr", "nonce", "at_hash", "jti")


class OutcomeError(errors.OAuth2Error):
    """An OAuth error whose JSON body also carries the sign-in outcome code (README.md, "Signing in"; docs/oidc.md):
    ``{"error": …, "error_description": …, "outcome": "<code>"}``; ``outcome`` is null when the request was
    refused before any sign-in was attempted (a client or tenant that may not use the grant)."""

    def __init__(self, error: str, description: str, *, outcome: Outcome | None, status_code: int = 400,
                 request=None):
        self.error = error
        self.outcome = outcome
        super().__init__(description=description, status_code=status_code, request=request)

    @property
    def twotuples(self):
        return [*super().twotuples, ("outcome", self.outcome.value if self.outcome else None)]


class PortalOAuth2Validator(OAuth2Validator):
    # --- who the tokens name, and for how long they hold (tokens die with the account) -------------------

    def get_claim_dict(self, request):
        # `sub` is the user's opaque subject, never the primary key: it never moves to another person.
        return {**super().get_claim_dict(request), "sub": lambda r: str(r.user.subject)}

    def validate_bearer_token(self, token, scopes, request):
        if not super().validate_bearer_token(token, scopes, request):
            return False
        if not request.user.is_active:  # disabled, expired or locked in AD since, or departed
            request.oauth2_error = {"error": "invalid_token", "error_description": "The account is not active."}
            return False
        return True

    def validate_refresh_token(self, refresh_token, client, request, *args, **kwargs):
        if not super().validate_refresh_token(refresh_token, client, request, *args, **kwargs):
            return False
        user = request.user
        if not user.is_active:
            return False
        if not account_still_enabled(user=user):  # also reads the groups again, when the tenant checks AD
            return False
        # Unassigned since (the user, or a group of theirs, or left the group): no new tokens for the application.
        return application_user_assigned(application=client, user=user)

    def save_bearer_token(self, token, request, *args, **kwargs):
        # A public client cannot keep a refresh token secret: it renews with prompt=none instead.
        if request.client is not None and request.client.client_type == Application.CLIENT_PUBLIC:
            token.pop("refresh_token", None)
        return super().save_bearer_token(token, request, *args, **kwargs)

    # DOT keeps only the claims whose scope was granted (ID token and userinfo alike): the tenant and the account
    # with "openid" itself, the person's names with "profile", the mail with "email".
    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "tid": "openid", "upn": "openid", "name": "profile",
                        "preferred_username": "profile", "email": "email", "email_verified": "email",
                        "groups": "groups", OVERAGE_CLAIM: "groups"}

    def get_additional_claims(self):  # type: ignore[override]  # DOT reads the signature: no request, see below
        # The request-agnostic form (callables): DOT then also lists these claims in discovery.
        return {
            "tid": lambda request: str(request.user.tenant_id) if request.user.tenant_id else None,
            "upn": lambda request: request.user.upn,
            "name": lambda request: request.user.get_full_name(),
            "preferred_username": lambda request: request.user.upn,
            "email": lambda request: request.user.email,
            "email_verified": lambda request: _email_verified(request.user),
            # The directory groups, per the application's settings (signin/services/group_claims.py).
            "groups": lambda request: _group_claims(request).get("groups"),
            OVERAGE_CLAIM: lambda request: _group_claims(request).get(OVERAGE_CLAIM),
        }

    def get_oidc_claims(self, token, token_handler, request):
        # A claim with no value is left out: clients read "" as a value (an empty mail address).
        claims = super().get_oidc_claims(token, token_handler, request)
        return {name: value for name, value in claims.items() if value is not None and value != ""}

    # --- prompt=none and auth_time ---------------------------------------------------------------------------

    def validate_silent_login(self, request):
        # prompt=none: oauthlib's request does not carry the session, so TenantAuthorizationView decides (and
        # answers login_required or interaction_required) before any code is made.
        return True

    def validate_silent_authorization(self, request):
        # Same: the view answers consent_required for an application that would show the consent page.
        return True

    def _create_authorization_code(self, request, code, expires=None):
        # The session's sign-in time (credentials["auth_time"], from the view) and how it was made (RFC 8176 amr)
        # ride on the grant's stored claims, which DOT hands back to the token request (validate_code), to become
        # the ID token's. Those claims are the portal's alone: oauthlib fills them from the authorize URL's
        # `claims` parameter, which this provider does not support (discovery: claims_parameter_supported false),
        # and a client's or a user's "pta_amr" there would otherwise be the ID token's amr.
        kept: dict = {}
        auth_time = getattr(request, "auth_time", None)
        if auth_time is not None:
            kept[GRANT_AUTH_TIME] = auth_time
        amr = getattr(request, "pta_amr", None)
        if amr:
            kept[GRANT_AMR] = list(amr)
        request.claims = kept
        return super()._create_authorization_code(request, code, expires)

    def get_id_token_dictionary(self, token, token_handler, request):
        claims, expiration_time = super().get_id_token_dictionary(token, token_handler, request)
        sign_in = _sign_in(request)
        if sign_in.auth_time is not None:  # else DOT's: last_login (a grant or token from before auth_time was kept)
            claims["auth_time"] = sign_in.auth_time
        request.pta_auth_time = claims["auth_time"]
        if sign_in.amr:  # the code's sign-in, or on a refresh the one the refreshed tokens came from
            claims["amr"] = list(sign_in.amr)
        request.pta_id_token_amr = sign_in.amr
        return claims, expiration_time

    def _save_id_token(self, jti, request, expires, *args, **kwargs):
        id_token = super()._save_id_token(jti, request, expires, *args, **kwargs)
        auth_time = getattr(request, "pta_auth_time", None)
        if auth_time is not None:  # an ID token issued on refresh repeats it, and the amr
            amr = getattr(request, "pta_id_token_amr", None)
            IdTokenAuthTime.objects.create(id_token=id_token, auth_time=datetime.fromtimestamp(auth_time, tz=UTC),
                                           amr=list(amr) if amr else None)
        return id_token

    @sensitive_variables("password")
    def validate_user(self, username, password, client, request, *args, **kwargs):
        """The password grant. oauthlib calls this before it checks the client's grant type, so everything that
        can refuse without a password check comes first, and what the client may do before anything about the
        username (else a client of a tenant that does not allow the grant could tell its domains from others by
        the answers): the client's grant type, a confidential client, its tenant's policy; then the username's
        tenant (the client's own); then pass-through, which checks cloud lockout before any agent."""
        if client is None or client.authorization_grant_type != Application.GRANT_PASSWORD:
            raise OutcomeError("unauthorized_client", "This client is not registered for the password grant.",
                               outcome=None, request=request)
        if client.client_type != Application.CLIENT_CONFIDENTIAL:
            raise OutcomeError("unauthorized_client", "Only a confidential client may use the password grant.",
                               outcome=None, request=request)
        if not client.tenant.password_grant_enabled:
            raise OutcomeError("unauthorized_client", "Your organisation does not allow the password grant.",
                               outcome=None, request=request)
        try:
            upn = username_canonical(typed=username or "")
        except UsernameRefused:
            upn = ""  # whitespace or an invisible character inside: no account's name, no tenant's
        tenant = tenant_for_username(username=upn) if upn else None
        if tenant is None or tenant.pk != client.tenant_id:
            raise OutcomeError("invalid_grant", Outcome.UNKNOWN_DOMAIN.message, outcome=Outcome.UNKNOWN_DOMAIN,
                               request=request)
        headers = request.headers or {}
        result = async_to_sync(password_sign_in)(
            username=username, password=password or "", ip=client_address(headers),
            user_agent=headers.get("HTTP_USER_AGENT", ""), channel="oauth", application=client,
        )
        if result.outcome is Outcome.MFA_REQUIRED:
            # As the commercial systems do: a legacy client cannot show a second factor.
            raise OutcomeError("interaction_required", "Your organisation requires a second factor: sign in "
                               "through the browser.", outcome=Outcome.MFA_REQUIRED, request=request)
        if result.outcome in (Outcome.LOCATION_BLOCKED, Outcome.APP_NOT_ASSIGNED):
            raise OutcomeError("access_denied", result.outcome.message, outcome=result.outcome, status_code=403,
                               request=request)
        if not result.succeeded:
            if result.outcome in UNAVAILABLE:
                raise OutcomeError("temporarily_unavailable", result.outcome.message, outcome=result.outcome,
                                   status_code=503, request=request)
            raise OutcomeError("invalid_grant", result.outcome.message, outcome=result.outcome, request=request)
        request.user = result.user
        return True

    # --- authorization codes: a well-formed PKCE challenge, one try, a replay revokes what the code bought ---

    def save_authorization_code(self, client_id, code, request, *args, **kwargs):
        # RFC 7636 §4.2: an S256 challenge is 43 base64url characters; a malformed one is refused, never stored.
        if not pkce_value_well_formed(request.code_challenge):
            raise errors.InvalidRequestError(description="code_challenge must be 43 to 128 characters of "
                                             "A-Z a-z 0-9 - . _ ~ (RFC 7636).", request=request)
        return super().save_authorization_code(client_id, code, request, *args, **kwargs)

    def validate_code(self, client_id, code, client, request, *args, **kwargs):
        grant = get_grant_model().objects.filter(code=code, application=client).first()
        if grant is None:
            authorization_code_tokens_revoke(code=code)  # spent already? then a replay (RFC 6749 §4.1.2)
            return False
        if grant.code_challenge and not _verifier_matches(grant, request.code_verifier):
            grant.delete()  # one try: a wrong, malformed or missing verifier burns the code
            return False
        return super().validate_code(client_id, code, client, request, *args, **kwargs)

    def save_token(self, token, request, *args, **kwargs):
        saved = super().save_token(token, request, *args, **kwargs)
        if request.grant_type == "authorization_code" and request.code and token.get("access_token"):
            authorization_code_tokens_record(code=request.code, access_token=token["access_token"])
        return saved

    def invalidate_authorization_code(self, client_id, code, request, *args, **kwargs):
        try:
            super().invalidate_authorization_code(client_id, code, request, *args, **kwargs)
        except errors.InvalidGrantError:
            # Two exchanges of one code raced and the other spent it first: neither keeps its tokens.
            authorization_code_tokens_revoke(code=code)
            raise


def _verifier_matches(grant, verifier: str | None) -> bool:
    """RFC 7636 §4.6, S256 only, and the verifier itself well formed (§4.1: 43 to 128 unreserved characters)."""
    return (pkce_value_well_formed(verifier) and grant.code_challenge_method == "S256"
            and code_challenge_method_s256(verifier, grant.code_challenge))


def _email_verified(user) -> bool | None:
    """True only for a mail that is still the address the directory gave while the agent answering for the user
    served its domain (signin/services/users.py), or in the UPN's own domain, and whose domain the user's tenant
    verified; False for any other mail (still released as ``email``: the portal does not know who reads that
    mailbox); None (left out) without a mail."""
    if not user.email:
        return None
    mail = user.email.strip().lower()
    domain = mail.rpartition("@")[2]
    vouched = mail == user.directory_verified_email.strip().lower() or domain == user.upn.rpartition("@")[2]
    owner = tenant_for_username(username=mail) if vouched else None
    return owner is not None and owner.pk == user.tenant_id


def _group_claims(request) -> dict:
    """Read once per token request (two claims come from it)."""
    if not hasattr(request, "pta_group_claims"):
        request.pta_group_claims = groups_claims(user=request.user, application=request.client)
    return request.pta_group_claims


@dataclass(frozen=True)
class SignInBehindToken:
    auth_time: int | None  # epoch seconds; None when unknown
    amr: tuple[str, ...] = ()  # RFC 8176 methods; empty when unknown


def _sign_in(request) -> SignInBehindToken:
    """When and how the sign-in behind this token request completed: kept on the grant by the authorize endpoint,
    or, on a refresh, the auth_time and amr of the ID token the refreshed tokens came with (OpenID Connect Core
    12.2: an ID token from a refresh says the original sign-in's)."""
    claims = request.claims if isinstance(request.claims, dict) else {}
    if claims.get(GRANT_AUTH_TIME) is not None or isinstance(claims.get(GRANT_AMR), list):
        auth_time, amr = claims.get(GRANT_AUTH_TIME), claims.get(GRANT_AMR)
        return SignInBehindToken(int(auth_time) if auth_time is not None else None,
                                 tuple(str(value) for value in amr) if isinstance(amr, list) else ())
    refresh = getattr(request, "refresh_token_instance", None)
    if refresh is None:
        return SignInBehindToken(None)
    access = refresh.access_token or get_access_token_model().objects.filter(source_refresh_token=refresh).first()
    if access is None or access.id_token_id is None:
        return SignInBehindToken(None)
    kept = IdTokenAuthTime.objects.filter(id_token_id=access.id_token_id).first()
    if kept is None:
        return SignInBehindToken(None)
    amr = tuple(str(value) for value in kept.amr) if isinstance(kept.amr, list) else ()
    return SignInBehindToken(int(kept.auth_time.timestamp()), amr)


def _same_tenant(request, credentials: dict) -> None:
    """A user gets codes only for the applications of their own tenant."""
    application = Application.objects.filter(client_id=credentials.get("client_id")).only("tenant_id").first()
    user = request.user
    if application is None or not user.is_authenticated or user.tenant_id == application.tenant_id:
        return
    raise OAuthToolkitError(
        error=errors.AccessDeniedError(description="This application belongs to another organisation.",
                                       state=credentials.get("state")),
        redirect_uri=credentials.get("redirect_uri"),
    )


def _request_key(parameters) -> str:
    """One authorization request, as its client made it (its validated credentials, the consent form's fields or
    its query): a mark on it (prompt=login pending) holds for it alone. A code for other values of these would be
    no use to the client waiting on this one (state, PKCE)."""
    fields = ("client_id", "redirect_uri", "state", "nonce", "code_challenge")
    return hashlib.sha256(json.dumps([parameters.get(k) or "" for k in fields]).encode()).hexdigest()[:32]


class TenantAuthorizationView(AuthorizationView):
    """DOT's authorize endpoint; unauthenticated users go through /login/ (LOGIN_URL) and back. Added: the
    application's own tenant only; prompt=none, prompt=login and max_age decided from this session's own sign-in
    (signin/services/authentication.py), and the second factor the tenant's policy or the application (its
    require_mfa) now asks; no code to a network the tenant blocks; response_mode query
    or form_post; RFC 9207's iss on every answer. Every way to a code (the GET, the consent form's POST) passes
    the same session checks (_session_answer) before DOT makes one."""

    session_checked = False  # _session_answer let this request have a code

    def validate_authorization_request(self, request):
        scopes, credentials = super().validate_authorization_request(request)
        _same_tenant(request, credentials)
        return scopes, credentials

    def create_authorization_response(self, request, scopes, credentials, allow):
        _same_tenant(request, credentials)
        if not self.session_checked:  # a way to a code that skipped the session's checks: none is given
            raise OAuthToolkitError(error=errors.LoginRequired(state=credentials.get("state")),
                                    redirect_uri=credentials.get("redirect_uri"))
        signed_in = session_authentication(session=request.session)
        if signed_in.at is not None:
            credentials["auth_time"] = int(signed_in.at)  # to the grant, then the ID token (the validator)
        if signed_in.amr:
            credentials["pta_amr"] = list(signed_in.amr)
        return super().create_authorization_response(request, scopes, credentials, allow)

    def get(self, request, *args, **kwargs):
        try:
            _, credentials = self.validate_authorization_request(request)
        except OAuthToolkitError as error:
            return self.error_response(error, application=None)
        answer = self._session_answer(request, credentials)
        return answer if answer is not None else super().get(request, *args, **kwargs)

    def form_valid(self, form):
        """The consent page's answer (DOT's form, POSTed to the authorize URL it was shown at). Only an application
        that shows one may be answered so, and the answer gets a code only where get() would give one."""
        credentials = {k: form.cleaned_data.get(k) for k in ("client_id", "redirect_uri", "state", "nonce",
                                                             "code_challenge")}
        application = Application.objects.filter(client_id=credentials["client_id"] or "").first()
        if application is None or application.skip_authorization \
                or not application.redirect_uri_allowed(credentials["redirect_uri"] or ""):
            # No consent page is ever shown for it (or not for this address): this POST answers none. A page,
            # never a redirect.
            return self.error_response(OAuthToolkitError(error=errors.InvalidRequestError(
                description="This is no answer to a consent page of the portal: start again from the application.")),
                application=None)
        answer = self._session_answer(self.request, credentials)
        return answer if answer is not None else super().form_valid(form)

    def handle_no_permission(self):
        # Not signed in. prompt=none: DOT answers login_required (through self.redirect: with iss). prompt=login
        # or max_age: the sign-in about to happen satisfies them, and the way back must not ask again.
        prompt = set(self.request.GET.get("prompt", "").split())
        if "none" not in prompt and ("login" in prompt or "max_age" in self.request.GET):
            return self._sign_in_again(_request_key(self.request.GET))
        return super().handle_no_permission()

    def redirect(self, redirect_to, application):
        # Every answer to the client, errors included, names this issuer (RFC 9207: mix-up defence).
        redirect_to = _with_issuer(redirect_to, oauth2_settings.oidc_issuer(self.request))
        if self.request.GET.get("response_mode") == "form_post":
            return _form_post(self.request, redirect_to, application)
        return super().redirect(redirect_to, application)

    def _session_answer(self, request, credentials: dict):
        """None when this signed-in session may have a code now; otherwise the answer: an error to the client
        (a malformed request; prompt=none when the session cannot do without the sign-in pages) or those pages.
        The parameters are the authorize URL's (a consent POST keeps them in its query)."""
        def refuse(error):
            application = Application.objects.filter(client_id=credentials["client_id"]).first()
            return self.error_response(OAuthToolkitError(error=error, redirect_uri=credentials["redirect_uri"]),
                                       application)

        client_state = credentials.get("state")
        mode = request.GET.get("response_mode", "query")
        if mode not in RESPONSE_MODES:
            return refuse(errors.InvalidRequestError(
                description=f"response_mode {mode!r} is not supported: use query or form_post.", state=client_state))
        try:
            max_age = _max_age(request.GET.get("max_age"))
        except ValueError:
            return refuse(errors.InvalidRequestError(description="max_age must be a whole number of seconds.",
                                                     state=client_state))
        prompt = set(request.GET.get("prompt", "").split())
        key = _request_key(credentials)
        signed_in = session_authentication(session=request.session)
        stale = "login" in prompt or signed_in.reauthentication_pending(key) or (max_age is not None
                                                                                   and signed_in.older_than(max_age))
        device = request.get_signed_cookie(DEVICE_COOKIE, default="", salt=DEVICE_COOKIE_SALT) or ""
        ip = client_address(request.META)
        application = Application.objects.filter(client_id=credentials["client_id"]).only(
            "tenant_id", "require_mfa", "phishing_resistant_required", "assignment_required", "name").first()
        location = location_for_address(tenant=request.user.tenant if request.user.tenant_id else None, ip=ip)
        if location is not None and location.blocked:
            # A session signed in elsewhere, now on a network its tenant blocks: no code from here.
            return refuse(errors.AccessDeniedError(description=Outcome.LOCATION_BLOCKED.message, state=client_state))
        mfa_due = session_mfa_due(signed_in=signed_in, user=request.user, ip=ip, device=device,
                                  application_requires=application is not None and application.require_mfa)
        # A passkey required (the tenant's or the application's rule) and this session signed in without one.
        mfa_due = mfa_due or (not signed_in.phishing_resistant and phishing_resistant_required(
            tenant=request.user.tenant if request.user.tenant_id else None, application=application))
        # Who may use the application (its assignment): decided on the stored groups of this session's sign-in. A
        # sign-in due anyway (stale) comes first: it reads the groups again, and may be another account's.
        refused = application is not None and not application_user_assigned(application=application,
                                                                            user=request.user)
        if "none" not in prompt:
            if stale:
                return self._sign_in_again(key)
            if application is not None and refused:
                return self._not_assigned(request, application, credentials, mode)
            if mfa_due:
                return self._sign_in_again(key)
            self.session_checked = True
            return None
        hint = request.GET.get("id_token_hint")
        if hint:  # the client means this user: another one signed in here is no silent answer (OIDC Core 3.1.2.1)
            try:
                hinted = id_token_hint_read(id_token_hint=hint, issuer=oauth2_settings.oidc_issuer(request))
            except InvalidIDTokenError:
                return refuse(errors.InvalidRequestError(
                    description="id_token_hint is not an ID token of this provider.", state=client_state))
            stale = stale or hinted.subject != str(request.user.subject)
        if stale:
            return refuse(errors.LoginRequired(description="A new sign-in is required.", state=client_state))
        if application is not None and refused:
            _not_assigned_record(request, application)
            return refuse(errors.AccessDeniedError(description=Outcome.APP_NOT_ASSIGNED.message, state=client_state))
        if mfa_due:
            return refuse(errors.CustomOAuth2Error(
                "interaction_required", description="Your organisation requires a second factor for this "
                "application.", state=client_state))
        if not Application.objects.filter(client_id=credentials["client_id"], skip_authorization=True).exists():
            return refuse(errors.ConsentRequired(state=client_state))
        self.session_checked = True
        return None

    def _not_assigned(self, request, application: Application, credentials: dict, mode: str):
        """The signed-in user may not use this application: a page that says so (naming no group: which groups
        admit is the organisation's business, not a hint to whoever holds the account), whom to ask, and the way
        back to the application, which gets access_denied (with iss) on its redirect URI. Recorded."""
        _not_assigned_record(request, application)
        issuer = oauth2_settings.oidc_issuer(request)
        error = errors.AccessDeniedError(description=Outcome.APP_NOT_ASSIGNED.message, state=credentials.get("state"))
        redirect_uri = credentials["redirect_uri"]
        if mode == "form_post":
            back = {"method": "post", "action": redirect_uri, "fields": [*error.twotuples, ("iss", issuer)]}
        else:
            back = {"method": "get", "href": _with_issuer(error.in_uri(redirect_uri), issuer)}
        query = [(k, v) for k, v in parse_qsl(request.META.get("QUERY_STRING", ""), keep_blank_values=True)
                 if k != "prompt"]
        user = request.user
        context = {
            **help_context(tenant=user.tenant), "outcome": Outcome.APP_NOT_ASSIGNED, "back": back,
            "error": Outcome.APP_NOT_ASSIGNED.message, "next_steps": OUTCOME_NEXT_STEPS[Outcome.APP_NOT_ASSIGNED],
            "application_name": application.name, "username": user.upn,
            "organisation": user.tenant.name if user.tenant_id else "",
            "sign_in_again": f"{request.path}?{urlencode([*query, ('prompt', 'login')])}",
        }
        response = render(request, "signin/app_not_assigned.html", context, status=403)
        response["PTA-Outcome"] = Outcome.APP_NOT_ASSIGNED.value
        add_never_cache_headers(response)
        return response

    def _sign_in_again(self, key: str):
        """Through the sign-in pages, then back. This authorization request (``key``) is marked first, and only a
        completed sign-in clears the mark: the way back (this request without prompt and max_age, which that
        sign-in satisfies) gives no code by itself. Other requests of this browser, for this application or
        another, are not held up by a sign-in abandoned here."""
        session_reauthentication_require(session=self.request.session, request_key=key)
        query = [(k, v) for k, v in parse_qsl(self.request.META.get("QUERY_STRING", ""), keep_blank_values=True)
                 if k not in ("prompt", "max_age")]
        return redirect_to_login(f"{self.request.path}?{urlencode(query)}", resolve_url(self.get_login_url()),
                                 self.get_redirect_field_name())


def _not_assigned_record(request, application: Application) -> None:
    """The refusal in the sign-in records: who, from where, for which application."""
    user = request.user
    signin_event_record(username=user.upn, user=user, tenant=user.tenant, outcome=Outcome.APP_NOT_ASSIGNED.value,
                        channel="web", ip_address=client_address(request.META) or None,
                        user_agent=request.META.get("HTTP_USER_AGENT", ""), application_id=application.pk)


def _max_age(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    value = int(raw)
    if value < 0:
        raise ValueError(raw)
    return value


def _with_issuer(url: str, issuer: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "iss"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("iss", issuer)])))


def _form_post(request, url: str, application):
    """response_mode=form_post (OAuth 2.0 Form Post Response Mode): the browser posts the answer's parameters to
    the redirect URI (its own query, if registered with one, kept in the action) from a page that submits itself."""
    allowed = application.get_allowed_schemes() if application else oauth2_settings.ALLOWED_REDIRECT_URI_SCHEMES
    target = urlsplit(url)
    if target.scheme not in allowed:
        raise DisallowedRedirect(f"Redirect to scheme {target.scheme!r} is not permitted")
    fields = parse_qsl(target.query, keep_blank_values=True)
    sent = request.GET.get("redirect_uri", "")
    own = parse_qsl(urlsplit(sent).query, keep_blank_values=True)
    if sent and urlsplit(sent)[:3] == target[:3] and fields[:len(own)] == own:
        action, fields = sent, fields[len(own):]
    else:
        action = urlunsplit(target._replace(query=""))
    response = render(request, "signin/form_post.html", {"action": action, "fields": fields})
    add_never_cache_headers(response)  # it carries the code
    return response


class DiscoveryView(ConnectDiscoveryInfoView):
    """OpenID Provider metadata that names exactly what this provider does (DOT's names what DOT could be set up
    to do: hybrid and implicit response types, HS256, …). Each value is tried by a test (test_oidc_conformance)."""

    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        metadata = json.loads(response.content)
        auth_methods = ["client_secret_basic", "client_secret_post", "none"]  # none: public clients, with PKCE
        metadata.update({
            "response_types_supported": ["code"],
            "response_modes_supported": list(RESPONSE_MODES),
            # password: only for a confidential client of a tenant that allows it (tenant_policy --password-grant)
            "grant_types_supported": ["authorization_code", "refresh_token", "password"],
            "id_token_signing_alg_values_supported": [Application.RS256_ALGORITHM],
            "token_endpoint_auth_methods_supported": auth_methods,
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": sorted({*metadata.get("claims_supported", []), *TOKEN_CLAIMS}),
            "authorization_response_iss_parameter_supported": True,
            "revocation_endpoint": self._get_endpoint_url(request, "revoke-token", required=True),
            "revocation_endpoint_auth_methods_supported": auth_methods,
            # Discovery's defaults say a request_uri is accepted; none of these is.
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "claims_parameter_supported": False,
        })
        metadata.pop("introspection_endpoint", None)
        response.content = json.dumps(metadata)
        return response
