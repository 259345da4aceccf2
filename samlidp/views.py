"""The IdP's pages: metadata, SSO (HTTP-Redirect and HTTP-POST), the way back from the sign-in pages. Thin: read the
request, call the services, render the answer. A request that cannot be answered with an assertion gets a page
saying why (400), never a 500, and nothing is sent to an ACS that is not registered."""

from __future__ import annotations

import base64
import logging
from urllib.parse import urlencode

from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers, patch_cache_control
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT

from applications.selectors import application_user_assigned
from samlidp.models import ServiceProvider
from samlidp.selectors import service_provider_by_entity_id, service_provider_by_pk
from samlidp.services.idp import (
    METADATA_CACHE_SECONDS,
    authn_context_stated,
    authn_response_xml,
    error_response_xml,
    idp_metadata,
    logout_request_xml,
    logout_response_xml,
)
from samlidp.services.requests import AuthnRequest, SamlRequestError, authn_request_read, logout_request_read
from samlidp.services.slo import slo_notice_redeem
from samlidp.services.sso import (
    PARTICIPANTS_KEY,
    sso_identity,
    sso_participant_record,
    sso_participants,
    sso_pending,
    sso_pending_drop,
    sso_pending_store,
    sso_ticket_issue,
    sso_ticket_redeem,
)
from signin.helpdesk import help_context
from signin.outcomes import OUTCOME_NEXT_STEPS, Outcome
from signin.services.authentication import (
    session_authentication,
    session_mfa_due,
    session_reauthentication_require,
)
from signin.services.client import client_address
from signin.services.passkeys import phishing_resistant_required
from signin.services.records import signin_event_record
from signin.views import DEVICE_COOKIE, DEVICE_COOKIE_SALT
from tenant.models import Tenant, User
from tenant.selectors import location_for_address

logger = logging.getLogger(__name__)

STATUS_NO_PASSIVE = "urn:oasis:names:tc:SAML:2.0:status:NoPassive"
STATUS_REQUEST_DENIED = "urn:oasis:names:tc:SAML:2.0:status:RequestDenied"
STATUS_NO_AUTHN_CONTEXT = "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext"


def _tenant(slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise Http404("No such organisation.")
    return tenant


def _error(request: HttpRequest, message: str, *, tenant: Tenant | None, status: int = 400,
           outcome: str = "saml_request_refused") -> HttpResponse:
    response = render(request, "samlidp/error.html", {"error": message, "outcome": outcome,
                                                        "organisation": tenant.name if tenant else ""}, status=status)
    add_never_cache_headers(response)
    return response


@require_GET
def metadata(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _tenant(slug)
    response = HttpResponse(idp_metadata(tenant=tenant), content_type="application/samlmetadata+xml")
    patch_cache_control(response, public=True, max_age=METADATA_CACHE_SECONDS)
    return response


@csrf_exempt  # the SP's page posts here, cross-site: the request's own checks (issuer, ACS, signature, age) apply
@require_http_methods(["GET", "POST"])
def sso(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _tenant(slug)
    params = request.POST if request.method == "POST" else request.GET
    if request.method == "GET" and "ticket" in params:
        return _ticket_answer(request, tenant, params["ticket"])
    if "SAMLRequest" not in params:
        return _idp_initiated(request, tenant, params.get("sp", ""))
    binding = BINDING_HTTP_POST if request.method == "POST" else BINDING_HTTP_REDIRECT
    try:
        authn = authn_request_read(tenant=tenant, binding=binding, encoded=params.get("SAMLRequest", ""),
                                   relay_state=params.get("RelayState", ""), sig_alg=params.get("SigAlg"),
                                   signature=params.get("Signature"))
    except SamlRequestError as exc:
        logger.info("SAML request to tenant %s refused: %s", tenant.slug, exc)
        return _error(request, str(exc), tenant=tenant)
    if request.method == "POST":
        # The SP's page posted here cross-site: the session cookie (SameSite=Lax) did not come with it. The checked
        # request waits in the cache and the browser comes back by a GET, which brings the cookie.
        return HttpResponseRedirect("?" + urlencode({"ticket": sso_ticket_issue(request=authn)}), status=303)
    return _pending_answer(request, tenant, authn)


def _pending_answer(request: HttpRequest, tenant: Tenant, authn: AuthnRequest) -> HttpResponse:
    key = sso_pending_store(session=request.session, request=authn)
    if authn.force_authn and authn.is_passive:
        # A fresh sign-in without a page cannot be had (SAML core 3.4.1: not freshly authenticated, then NoPassive).
        pending = sso_pending(session=request.session, key=key)
        if pending is not None:
            return _post_status(request, tenant, authn.sp, pending, key, STATUS_NO_PASSIVE,
                                "A fresh sign-in needs a page (ForceAuthn with IsPassive).")
    if authn.force_authn:
        session_reauthentication_require(session=request.session, request_key=_request_key(key))
    return _answer(request, tenant, key)


def _ticket_answer(request: HttpRequest, tenant: Tenant, ticket: str) -> HttpResponse:
    authn = sso_ticket_redeem(tenant=tenant, ticket=ticket)
    if authn is None:
        return _error(request, "This sign-in request has expired or was used already: start again from the "
                               "application.", tenant=tenant)
    return _pending_answer(request, tenant, authn)


def _idp_initiated(request: HttpRequest, tenant: Tenant, entity_id: str) -> HttpResponse:
    sp = service_provider_by_entity_id(tenant=tenant, entity_id=entity_id) if entity_id else None
    if sp is None or not sp.allow_idp_initiated:
        return _error(request, "This link names no service provider that allows sign-in from the portal.",
                      tenant=tenant)
    key = sso_pending_store(session=request.session, request=AuthnRequest(
        sp=sp, request_id="", acs_url=sp.acs_url_list()[0], relay_state="", force_authn=False, is_passive=False))
    return _answer(request, tenant, key)


@require_GET
def sso_continue(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _tenant(slug)
    return _answer(request, tenant, request.GET.get("key", ""))


def _request_key(key: str) -> str:
    return f"saml:{key}"


def _answer(request: HttpRequest, tenant: Tenant, key: str) -> HttpResponse:
    """The pending request's answer for this session: the sign-in pages first when it has no usable sign-in
    (none, another organisation's, ForceAuthn not satisfied yet, a second factor now due), NoPassive instead of
    them for IsPassive; the application's access rules; then the signed response."""
    pending = sso_pending(session=request.session, key=key)
    sp = service_provider_by_pk(tenant=tenant, pk=pending["sp"]) if pending else None
    if pending is None or sp is None:
        return _error(request, "This sign-in request has expired or is unknown: start again from the application.",
                      tenant=tenant)
    contexts = None if pending.get("contexts") is None else tuple(pending["contexts"])
    if contexts == ():
        return _post_status(request, tenant, sp, pending, key, STATUS_NO_AUTHN_CONTEXT,
                            "The portal can give none of the authentication contexts the application asked for.")
    # A RequestedAuthnContext that only a second factor meets asks for one as an application that requires MFA does.
    mfa_asked = contexts is not None and authn_context_stated(acceptable=contexts, mfa=False) is None
    user = request.user if isinstance(request.user, User) and request.user.is_authenticated else None
    signed_in = session_authentication(session=request.session)
    ip = client_address(request.META)
    device = request.get_signed_cookie(DEVICE_COOKIE, default="", salt=DEVICE_COOKIE_SALT) or ""
    application = sp.application
    usable = user is not None and (user.tenant_id == tenant.pk
              and not signed_in.reauthentication_pending(_request_key(key))
              and not session_mfa_due(signed_in=signed_in, user=user, ip=ip, device=device,
                                      application_requires=application.require_mfa or mfa_asked)
              # A passkey required (the tenant's or the application's rule): a session signed in with a code is not
              # enough, as for OpenID Connect (signin/oidc.py).
              and (signed_in.phishing_resistant
                   or not phishing_resistant_required(tenant=tenant, application=application)))
    if user is None or not usable:
        if pending["passive"]:
            return _post_status(request, tenant, sp, pending, key, STATUS_NO_PASSIVE, "A sign-in is needed.")
        continue_url = reverse("samlidp:sso-continue", args=[tenant.slug]) + "?" + urlencode(
            {"key": key, "client_id": application.client_id, **({"mfa": "1"} if mfa_asked else {})})
        return redirect_to_login(continue_url, "/login/")
    location = location_for_address(tenant=tenant, ip=ip)
    blocked = location is not None and location.blocked
    assigned = not blocked and application_user_assigned(application=application, user=user)
    if pending["passive"] and not assigned:  # IsPassive: never a page, the refusal goes to the SP
        if not blocked:
            _not_assigned_record(request, user, tenant, sp)
        return _post_status(request, tenant, sp, pending, key, STATUS_REQUEST_DENIED,
                            (Outcome.LOCATION_BLOCKED if blocked else Outcome.APP_NOT_ASSIGNED).message)
    if blocked:
        sso_pending_drop(session=request.session, key=key)
        return _error(request, Outcome.LOCATION_BLOCKED.message, tenant=tenant, status=403,
                      outcome=Outcome.LOCATION_BLOCKED.value)
    if not assigned:
        return _not_assigned(request, user, tenant, sp, pending, key)
    identity = sso_identity(user=user, sp=sp, session=request.session)
    context = None
    if contexts is not None:
        context = authn_context_stated(acceptable=contexts, mfa=identity.mfa or "mfa" in identity.amr)
        if context is None:  # not reached: a session without the factor asked for is not usable above
            return _post_status(request, tenant, sp, pending, key, STATUS_NO_AUTHN_CONTEXT,
                                "This sign-in does not meet the authentication context the application asked for.")
    xml, session_index = authn_response_xml(tenant=tenant, sp=sp, identity=identity,
                                            in_response_to=pending["id"] or None, acs_url=pending["acs"],
                                            context=context)
    sso_pending_drop(session=request.session, key=key)
    sso_participant_record(session=request.session, sp=sp, identity=identity, session_index=session_index)
    return _post(request, sp, pending, xml, outcome=Outcome.SUCCESS.value)


def _post(request: HttpRequest, sp: ServiceProvider, pending: dict, xml: str, *, outcome: str) -> HttpResponse:
    fields = [("SAMLResponse", base64.b64encode(xml.encode()).decode())]
    if pending["relay_state"]:
        fields.append(("RelayState", pending["relay_state"]))
    response = render(request, "signin/form_post.html", {
        "action": pending["acs"], "fields": fields, "application_name": sp.application.name, "outcome": outcome})
    response["PTA-Outcome"] = outcome
    add_never_cache_headers(response)  # it carries the assertion
    return response


def _post_status(request: HttpRequest, tenant: Tenant, sp: ServiceProvider, pending: dict, key: str, status: str,
                 message: str) -> HttpResponse:
    xml = error_response_xml(tenant=tenant, sp=sp, in_response_to=pending["id"] or None, acs_url=pending["acs"],
                             status=status, message=message)
    sso_pending_drop(session=request.session, key=key)
    return _post(request, sp, pending, xml, outcome="saml_" + status.rsplit(":", 1)[1])


def _not_assigned_record(request: HttpRequest, user: User, tenant: Tenant, sp: ServiceProvider) -> None:
    signin_event_record(username=user.upn, user=user, tenant=tenant, outcome=Outcome.APP_NOT_ASSIGNED.value,
                        channel="web", ip_address=client_address(request.META) or None,
                        user_agent=request.META.get("HTTP_USER_AGENT", ""), application_id=sp.application_id)


def _not_assigned(request: HttpRequest, user: User, tenant: Tenant, sp: ServiceProvider, pending: dict,
                  key: str) -> HttpResponse:
    """The signed-in user may not use this SP: the page OpenID Connect shows, its way back a RequestDenied
    response to the SP's ACS. Recorded."""
    _not_assigned_record(request, user, tenant, sp)
    xml = error_response_xml(tenant=tenant, sp=sp, in_response_to=pending["id"] or None, acs_url=pending["acs"],
                             status=STATUS_REQUEST_DENIED, message=Outcome.APP_NOT_ASSIGNED.message)
    sso_pending_drop(session=request.session, key=key)
    fields = [("SAMLResponse", base64.b64encode(xml.encode()).decode())]
    if pending["relay_state"]:
        fields.append(("RelayState", pending["relay_state"]))
    context = {
        **help_context(tenant=tenant), "outcome": Outcome.APP_NOT_ASSIGNED, "error": Outcome.APP_NOT_ASSIGNED.message,
        "next_steps": OUTCOME_NEXT_STEPS[Outcome.APP_NOT_ASSIGNED], "application_name": sp.application.name,
        "username": user.upn, "organisation": tenant.name,
        "back": {"method": "post", "action": pending["acs"], "fields": fields},
        "sign_in_again": "/login/",
    }
    response = render(request, "signin/app_not_assigned.html", context, status=403)
    response["PTA-Outcome"] = Outcome.APP_NOT_ASSIGNED.value
    add_never_cache_headers(response)
    return response


@csrf_exempt  # the SP's page posts here, cross-site: the request's own checks apply
@require_http_methods(["GET", "POST"])
def slo(request: HttpRequest, slug: str) -> HttpResponse:
    """An SP's LogoutRequest: the portal session ends (the one OpenID Connect's logout ends too) when it is the
    session of the user the request names at that SP, and the SP gets a signed LogoutResponse at its SLO URL."""
    tenant = _tenant(slug)
    params = request.POST if request.method == "POST" else request.GET
    binding = BINDING_HTTP_POST if request.method == "POST" else BINDING_HTTP_REDIRECT
    relay_state = params.get("RelayState", "")
    if "SAMLRequest" not in params and "SAMLResponse" in params:
        # An SP's answer to the LogoutRequest the portal sent it (front-channel, in a frame): the portal session is
        # over already, nothing to do, nothing read.
        return _error(request, "You are signed out.", tenant=tenant, status=200, outcome="signed_out")
    try:
        sp, message = logout_request_read(tenant=tenant, binding=binding, encoded=params.get("SAMLRequest", ""),
                                          relay_state=relay_state, sig_alg=params.get("SigAlg"),
                                          signature=params.get("Signature"))
    except SamlRequestError as exc:
        logger.info("SAML logout request to tenant %s refused: %s", tenant.slug, exc)
        return _error(request, str(exc), tenant=tenant)
    user = request.user if isinstance(request.user, User) and request.user.is_authenticated else None
    if user is not None:
        named = message.name_id.text if message.name_id is not None else ""
        if user.tenant_id != tenant.pk or named != sso_identity(user=user, sp=sp, session=request.session).name_id:
            return _error(request, "This sign-out request is for another user than the one signed in here: "
                                   "nobody was signed out.", tenant=tenant)
        if not sp.requests_signed and not _session_index_matches(request, sp, message):
            # Unsigned, it could come from any page (the NameID may be a guessable UPN): only the SP that got this
            # session's assertion knows its SessionIndex.
            return _error(request, "This unsigned sign-out request does not name the SessionIndex this session "
                                   "was given at the application: nobody was signed out. Sign out on the "
                                   "portal's own page instead.", tenant=tenant)
    others = _other_participants_told(request, tenant, sp) if user is not None else []
    if user is not None:
        request.session.pop(PARTICIPANTS_KEY, None)  # told here: not again by the sign-out's notices
        logout(request)
    if not sp.slo_url:
        return _error(request, "You are signed out.", tenant=tenant, status=200, outcome="signed_out")
    xml, destination = logout_response_xml(tenant=tenant, sp=sp, request=message)
    response = render(request, "samlidp/logout.html", {
        "action": destination, "saml_response": base64.b64encode(xml.encode()).decode(), "relay_state": relay_state,
        "others": others, "application_name": sp.application.name})
    response["PTA-Outcome"] = "signed_out"
    add_never_cache_headers(response)
    return response


def _session_index_matches(request: HttpRequest, sp: ServiceProvider, message) -> bool:
    given = sso_participants(session=request.session).get(str(sp.pk), {}).get("session_index", "")
    named = [(index.text or "").strip() for index in (message.session_index or [])]
    return bool(given) and given in named


def _other_participants_told(request: HttpRequest, tenant: Tenant, asking: ServiceProvider) -> list[dict]:
    """A signed LogoutRequest for each other SP this session signed in to that has an SLO URL: the logout page
    posts each from a frame of its own before it answers the asking SP (front-channel; JavaScript needed)."""
    told = []
    for pk, seen in sso_participants(session=request.session).items():
        other = service_provider_by_pk(tenant=tenant, pk=pk) if pk != str(asking.pk) else None
        if other is None or not other.slo_url:
            continue
        xml = logout_request_xml(tenant=tenant, sp=other, name_id=seen["name_id"], name_id_format=seen["format"],
                                 session_index=seen.get("session_index", ""))
        told.append({"action": other.slo_url, "saml_request": base64.b64encode(xml.encode()).decode(),
                     "name": other.application.name})
    return told


@xframe_options_sameorigin  # loaded in a hidden frame of the portal's own signed-out page
@require_GET
def slo_notice(request: HttpRequest, slug: str, notice: str) -> HttpResponse:
    """One SP's front-channel logout after the portal's own sign-out: the signed LogoutRequest made before the
    session ended (samlidp/signals.py), posted to the SP's SLO URL from this frame. Once only."""
    tenant = _tenant(slug)
    found = slo_notice_redeem(tenant=tenant, notice=notice)
    if found is None:
        return _error(request, "This sign-out notice has expired or was used already.", tenant=tenant)
    response = render(request, "samlidp/slo_notice.html", {"action": found["action"],
                                                           "saml_request": found["saml_request"]})
    response["PTA-Outcome"] = "signed_out"
    add_never_cache_headers(response)
    return response
