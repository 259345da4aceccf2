"""OpenID Connect as client libraries expect it, driven as they drive it (Authlib, plain httpx for what a library
would not send) against a live Daphne, a real pta-agent and the Samba AD DC: prompt=none (silent renew),
prompt=login and max_age, auth_time per session and on refresh, claims per scope, discovery that names exactly
what works (each value tried here), RFC 9207's iss, response_mode=form_post, and the password grant's order of
checks."""

from __future__ import annotations

import contextlib
import html
import re
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from authlib.jose import JsonWebKey, jwt

import tests.integration.test_oidc as base
from tests.fixtures.http import found, sign_in
from tests.fixtures.portal import wait_for
from tests.integration.test_oidc import (
    _CSRF,
    _OUTCOME,
    _SECRET,
    REDIRECT_URI,
    browser,
    code_of,
    discovery,
    events,
    kv,
    password_grant,
    totp_code,
    verify_id_token,
)

pytestmark = pytest.mark.integration

# The module fixtures of test_oidc, instantiated for this module: a portal of its own.
oidc = base.oidc
policy = base.policy

_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
_ACTION = re.compile(r'<form method="post" action="([^"]+)">')


@pytest.fixture(scope="module")
def spa(oidc):
    """A public client (a single-page application: no secret, PKCE only)."""
    return kv(oidc["portal"].manage("app_register", "--tenant", oidc["tenant"], "--name", "SPA", "--public",
                                    "--redirect-uri", REDIRECT_URI).stdout)


def client_for(app: dict, scope: str = "openid profile email", **kwargs) -> OAuth2Client:
    return OAuth2Client(app["client_id"], app.get("client_secret"), redirect_uri=REDIRECT_URI, scope=scope,
                        code_challenge_method="S256", timeout=20, **kwargs)


def authorize(oidc, client: OAuth2Client, **params) -> tuple[str, str, str, str]:
    """An authorization URL with PKCE and a nonce (and ``params``: prompt, max_age, response_mode, …)."""
    verifier, nonce = generate_token(48), generate_token(20)
    url, state = client.create_authorization_url(discovery(oidc["node"])["authorization_endpoint"],
                                                 code_verifier=verifier, nonce=nonce, **params)
    return url, verifier, nonce, state


def answer(response: httpx.Response) -> dict[str, str]:
    """The parameters of a redirect to the client."""
    assert response.status_code == 302, (response.status_code, response.text[:500])
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    return {k: v[0] for k, v in parse_qs(urlparse(location).query).items()}


def to_sign_in(response: httpx.Response) -> str:
    """A redirect to the sign-in pages; returns its next."""
    assert response.status_code == 302, (response.status_code, response.text[:500])
    location = urlparse(response.headers["location"])
    assert location.path == "/login/", response.headers["location"]
    return parse_qs(location.query)["next"][0]


def exchange(oidc, client: OAuth2Client, redirect: str, verifier: str, nonce: str) -> tuple[dict, dict]:
    """The code exchanged at the token endpoint; the tokens and the ID token's verified claims."""
    token = client.fetch_token(discovery(oidc["node"])["token_endpoint"], authorization_response=redirect,
                               code_verifier=verifier)
    return token, verify_id_token(oidc, token["id_token"], client.client_id, nonce)


@contextlib.contextmanager
def signed_in(oidc, ad_testbed, name: str) -> Iterator[httpx.Client]:
    """A browser with a signed-in session of the user."""
    with browser(oidc) as web:
        user = ad_testbed.user(name)
        assert sign_in(oidc["node"].url, user["upn"], user["password"], client=web).outcome == "success"
        yield web


# --- discovery: exactly what works ---------------------------------------------------------------------------

def test_discovery_names_exactly_what_the_provider_does(oidc):
    meta = discovery(oidc["node"])
    assert meta["response_types_supported"] == ["code"]
    assert meta["response_modes_supported"] == ["query", "form_post"]
    assert meta["grant_types_supported"] == ["authorization_code", "refresh_token", "password"]
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]
    assert sorted(meta["token_endpoint_auth_methods_supported"]) == ["client_secret_basic", "client_secret_post",
                                                                      "none"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["revocation_endpoint"] == f"{oidc['node'].url}/revoke_token/"
    assert "introspection_endpoint" not in meta
    assert meta["request_uri_parameter_supported"] is False and meta["claims_parameter_supported"] is False
    assert {"sub", "tid", "upn", "name", "preferred_username", "email", "email_verified", "auth_time"} <= set(
        meta["claims_supported"])
    # The deprecated form with a trailing slash says the same (DOT's own view answered it before).
    assert httpx.get(f"{oidc['node'].url}/.well-known/openid-configuration/", timeout=10).json() == meta


def test_only_the_code_response_type_is_answered(oidc, ad_testbed):
    client = client_for(oidc["web"])
    with signed_in(oidc, ad_testbed, "alice") as web:
        for response_type in ("code id_token", "code token", "id_token", "token", "id_token token"):
            url, _, _, _ = authorize(oidc, client, response_type=response_type)
            response = web.get(url)
            location = response.headers.get("location", "")
            assert response.status_code in (302, 400), (response_type, response.status_code)
            assert not {"code", "id_token", "access_token"} & set(parse_qs(urlparse(location).query)), location
            assert "#" not in location and (response.status_code == 400 or "error=" in location), location


def test_each_advertised_client_authentication_works(oidc, ad_testbed, spa):
    """client_secret_basic (Authlib's default), client_secret_post, and none for a public client (with PKCE)."""
    clients = [client_for(oidc["web"]),
               client_for(oidc["web"], token_endpoint_auth_method="client_secret_post"),
               client_for(spa)]
    with signed_in(oidc, ad_testbed, "alice") as web:
        for client in clients:
            url, verifier, nonce, _ = authorize(oidc, client)
            token, claims = exchange(oidc, client, code_of(web.get(url)), verifier, nonce)
            assert claims["aud"] == client.client_id and token["access_token"]
    # client_secret_post with a wrong secret is refused.
    wrong = client_for({**oidc["web"], "client_secret": "not-the-secret"},
                       token_endpoint_auth_method="client_secret_post")
    with signed_in(oidc, ad_testbed, "alice") as web:
        url, verifier, _, _ = authorize(oidc, wrong)
        redirect = code_of(web.get(url))
    answer_ = httpx.post(discovery(oidc["node"])["token_endpoint"], timeout=10, data={
        "grant_type": "authorization_code", "code": parse_qs(urlparse(redirect).query)["code"][0],
        "redirect_uri": REDIRECT_URI, "code_verifier": verifier, "client_id": oidc["web"]["client_id"],
        "client_secret": "not-the-secret"})
    assert answer_.status_code == 401 and answer_.json()["error"] == "invalid_client"


def test_advertised_revocation_and_refresh_work(oidc, ad_testbed):
    meta = discovery(oidc["node"])
    client = client_for(oidc["web"])
    with signed_in(oidc, ad_testbed, "bob") as web:
        url, verifier, nonce, _ = authorize(oidc, client)
        token, _ = exchange(oidc, client, code_of(web.get(url)), verifier, nonce)
    refreshed = client.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    assert refreshed["access_token"] != token["access_token"]
    assert client.get(meta["userinfo_endpoint"]).status_code == 200
    revoked = client.revoke_token(meta["revocation_endpoint"], token=refreshed["access_token"],
                                  token_type_hint="access_token")
    assert revoked.status_code == 200
    assert client.get(meta["userinfo_endpoint"]).status_code == 401


# --- prompt=none ---------------------------------------------------------------------------------------------

def test_prompt_none_without_a_session_answers_login_required_to_the_client(oidc):
    client = client_for(oidc["web"])
    url, _, _, state = authorize(oidc, client, prompt="none")
    with browser(oidc) as web:
        params = answer(web.get(url))
    assert params == {"error": "login_required", "state": state, "iss": discovery(oidc["node"])["issuer"]}


def test_prompt_none_with_a_session_issues_a_code_silently(oidc, ad_testbed, spa):
    client = client_for(spa)  # what a single-page application's silent renew does
    with signed_in(oidc, ad_testbed, "bob") as web:
        url, verifier, nonce, state = authorize(oidc, client, prompt="none")
        response = web.get(url)
    params = answer(response)
    assert params["state"] == state and params["iss"] == discovery(oidc["node"])["issuer"] and "error" not in params
    _, claims = exchange(oidc, client, response.headers["location"], verifier, nonce)
    assert claims["upn"] == ad_testbed.user("bob")["upn"].lower()


def test_prompt_none_answers_interaction_required_while_the_second_factor_is_due(oidc, ad_testbed, policy):
    client = client_for(oidc["web"])
    user = ad_testbed.user("judy")
    with signed_in(oidc, ad_testbed, "judy") as web:  # by password alone: the tenant asked no second factor
        assert policy("--mfa", "all")["mfa"] == "all"
        url, _, _, state = authorize(oidc, client, prompt="none")
        assert answer(web.get(url))["error"] == "interaction_required"
        # Interactively, the same session goes through the sign-in pages, and the second factor, again.
        url, verifier, nonce, state = authorize(oidc, client)
        next_url = to_sign_in(web.get(url))
        assert to_sign_in(web.get(next_url)) == next_url  # the way back is no key by itself
        attempt = sign_in(oidc["node"].url, user["upn"], user["password"], next_url=next_url, client=web)
        assert attempt.outcome == "mfa_required"
        page = web.get("/login/mfa/enrol/")
        secret = found(_SECRET, page.text)
        done = web.post("/login/mfa/enrol/", data={"otp": totp_code(secret),
                                                   "csrfmiddlewaretoken": found(_CSRF, page.text)})
        assert found(_OUTCOME, done.text) == "success"
        exchange(oidc, client, code_of(web.get(next_url)), verifier, nonce)
        # The session has verified the factor now: silent renew works.
        url, verifier, nonce, _ = authorize(oidc, client, prompt="none")
        exchange(oidc, client, code_of(web.get(url)), verifier, nonce)


# --- re-authentication: max_age, prompt=login, auth_time -----------------------------------------------------

def test_max_age_sends_an_older_sign_in_through_the_pages_again(oidc, ad_testbed):
    client = client_for(oidc["web"])
    user = ad_testbed.user("alice")
    with signed_in(oidc, ad_testbed, "alice") as web:
        time.sleep(1.1)
        url, verifier, nonce, _ = authorize(oidc, client, max_age="0")
        next_url = to_sign_in(web.get(url))
        assert "max_age" not in next_url and to_sign_in(web.get(next_url)) == next_url  # no code on the way back
        before = time.time()
        assert sign_in(oidc["node"].url, user["upn"], user["password"], next_url=next_url,
                       client=web).outcome == "success"
        _, claims = exchange(oidc, client, code_of(web.get(next_url)), verifier, nonce)
        assert claims["auth_time"] >= int(before)
        # Silently, an older sign-in is login_required; a recent enough one gets its code.
        url, verifier, nonce, _ = authorize(oidc, client, prompt="none", max_age="60")
        exchange(oidc, client, code_of(web.get(url)), verifier, nonce)
        time.sleep(1.5)
        url, _, _, _ = authorize(oidc, client, prompt="none", max_age="1")
        assert answer(web.get(url))["error"] == "login_required"
    with browser(oidc) as web:  # a malformed max_age is the client's error
        url, _, _, _ = authorize(oidc, client, max_age="soon")
        sign_in(oidc["node"].url, user["upn"], user["password"], client=web)
        assert answer(web.get(url))["error"] == "invalid_request"


def test_prompt_login_is_not_skipped_by_loading_the_way_back(oidc, ad_testbed):
    client = client_for(oidc["web"])
    user = ad_testbed.user("bob")
    with signed_in(oidc, ad_testbed, "bob") as web:
        url, verifier, nonce, _ = authorize(oidc, client, prompt="login")
        next_url = to_sign_in(web.get(url))
        assert "prompt" not in next_url
        assert to_sign_in(web.get(next_url)) == next_url  # no code without signing in again
        before = time.time()
        assert sign_in(oidc["node"].url, user["upn"], user["password"], next_url=next_url,
                       client=web).outcome == "success"
        _, claims = exchange(oidc, client, code_of(web.get(next_url)), verifier, nonce)
        assert claims["auth_time"] >= int(before)
        # Signed in again: the next request needs no new sign-in.
        url, verifier, nonce, _ = authorize(oidc, client)
        exchange(oidc, client, code_of(web.get(url)), verifier, nonce)


def test_an_abandoned_prompt_login_holds_up_only_its_own_authorization_request(oidc, ad_testbed, spa):
    """Second review, 5e: a prompt=login left at the sign-in page does not send the browser's next authorization
    (another application's, or a new one of the same application) through the sign-in pages."""
    client = client_for(oidc["web"])
    with signed_in(oidc, ad_testbed, "judy") as web:
        url, _, _, _ = authorize(oidc, client, prompt="login")
        abandoned = to_sign_in(web.get(url))
        other = client_for(spa)
        url, verifier, nonce, _ = authorize(oidc, other)
        exchange(oidc, other, code_of(web.get(url)), verifier, nonce)
        url, verifier, nonce, _ = authorize(oidc, client)
        exchange(oidc, client, code_of(web.get(url)), verifier, nonce)
        assert to_sign_in(web.get(abandoned)) == abandoned  # the abandoned request itself still needs the sign-in


def test_prompt_none_with_a_hint_for_another_user_answers_login_required(oidc, ad_testbed):
    """Second review, 5e: the client names the user it means with id_token_hint; a session of someone else is no
    silent answer for it."""
    client = client_for(oidc["web"])
    with signed_in(oidc, ad_testbed, "alice") as web:
        url, verifier, nonce, _ = authorize(oidc, client)
        alices, _ = exchange(oidc, client, code_of(web.get(url)), verifier, nonce)
    with signed_in(oidc, ad_testbed, "bob") as web:
        url, _, _, state = authorize(oidc, client, prompt="none", id_token_hint=alices["id_token"])
        params = answer(web.get(url))
        assert params["error"] == "login_required" and params["state"] == state and "code" not in params
        url, _, _, _ = authorize(oidc, client, prompt="none", id_token_hint="not-an-id-token")
        assert answer(web.get(url))["error"] == "invalid_request"
        url, verifier, nonce, _ = authorize(oidc, client)
        bobs, _ = exchange(oidc, client, code_of(web.get(url)), verifier, nonce)
        url, verifier, nonce, _ = authorize(oidc, client, prompt="none", id_token_hint=bobs["id_token"])
        _, claims = exchange(oidc, client, code_of(web.get(url)), verifier, nonce)  # their own hint: silently
        assert claims["upn"] == ad_testbed.user("bob")["upn"].lower()


def consent_post(web: httpx.Client, url: str, **extra: str) -> httpx.Response:
    """The consent form's answer, allow, as DOT's page posts it (to the authorize URL it was shown at), with the
    authorization request's parameters as its fields; the CSRF token from any portal form."""
    fields = {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}
    token = found(_CSRF, web.get("/login/").text)
    return web.post(f"/authorize/?{urlparse(url).query}", data={**fields, **extra, "allow": "Authorize",
                                                                 "csrfmiddlewaretoken": token})


def test_the_consent_post_gets_no_code_where_the_authorize_request_would_not(oidc, ad_testbed, policy):
    """Second review, finding 2: a session signed in before the tenant turned MFA on, refused a code by GET (the
    second factor is due), POSTs the same parameters with allow."""
    portal = oidc["portal"]
    consent = kv(portal.manage("app_register", "--tenant", oidc["tenant"], "--name", "Asks consent",
                               "--redirect-uri", REDIRECT_URI).stdout)
    portal.sql("UPDATE applications_application SET skip_authorization = false WHERE client_id = %s",
               (consent["client_id"],))
    web_client, consent_client = client_for(oidc["web"]), client_for(consent)
    with signed_in(oidc, ad_testbed, "ivan") as web:  # by password alone: the tenant asked no second factor
        # The control: an application that asks consent shows its page, and its POST gets a code.
        url, verifier, nonce, _ = authorize(oidc, consent_client)
        page = web.get(url)
        assert page.status_code == 200 and 'id="authorizationForm"' in page.text
        exchange(oidc, consent_client, code_of(consent_post(web, url)), verifier, nonce)

        assert policy("--mfa", "all")["mfa"] == "all"
        # The POST alone (the attacker never loads the GET, which would send the session to sign in again).
        # This application never shows a consent page: its POST is refused outright, with a page.
        url, _, _, _ = authorize(oidc, web_client)
        refused = consent_post(web, url)
        assert refused.status_code == 400 and "location" not in refused.headers, refused.text[:300]
        to_sign_in(web.get(url))
        # One that does: its POST, like its GET, sends the session to sign in again (and the second factor).
        url, _, _, _ = authorize(oidc, consent_client)
        to_sign_in(consent_post(web, url))
        to_sign_in(web.get(url))
        policy("--mfa", "off")
        # max_age older than the session's sign-in, in the authorize URL the page posts to: no code either.
        time.sleep(1.1)
        url, _, _, _ = authorize(oidc, consent_client, max_age="0")
        to_sign_in(consent_post(web, url))


def test_auth_time_and_amr_are_this_sessions_sign_in_also_after_a_refresh(oidc, ad_testbed):
    client = client_for(oidc["web"])
    started = time.time()
    with signed_in(oidc, ad_testbed, "ivan") as first:
        signed_first = time.time()
        time.sleep(2.1)
        with signed_in(oidc, ad_testbed, "ivan"):  # another browser: the user's last_login moves on
            pass
        url, verifier, nonce, _ = authorize(oidc, client)
        token, claims = exchange(oidc, client, code_of(first.get(url)), verifier, nonce)
    assert int(started) <= claims["auth_time"] <= signed_first
    refreshed = client.refresh_token(discovery(oidc["node"])["token_endpoint"], refresh_token=token["refresh_token"])
    jwks = JsonWebKey.import_key_set(httpx.get(discovery(oidc["node"])["jwks_uri"], timeout=10).json())
    again = jwt.decode(refreshed["id_token"], jwks)
    assert again["auth_time"] == claims["auth_time"]
    assert again["amr"] == claims["amr"] == ["pwd"]  # how that sign-in was made, too (a password alone here)


# --- claims --------------------------------------------------------------------------------------------------

def claims_for(oidc, web: httpx.Client, scope: str = "openid profile email") -> tuple[dict, dict]:
    """The claims of the ID token and of /userinfo/ for ``scope``, through the code flow in ``web``."""
    client = client_for(oidc["web"], scope=scope)
    url, verifier, nonce, _ = authorize(oidc, client)
    _, id_claims = exchange(oidc, client, code_of(web.get(url)), verifier, nonce)
    return dict(id_claims), client.get(discovery(oidc["node"])["userinfo_endpoint"]).json()


def test_claims_follow_the_granted_scopes_in_the_id_token_and_userinfo(oidc, ad_testbed):
    user = ad_testbed.user("alice")
    portal = oidc["portal"]
    with signed_in(oidc, ad_testbed, "alice") as web:
        for scope, present, absent in [
            ("openid", {"sub", "tid", "upn"}, {"name", "preferred_username", "email", "email_verified"}),
            ("openid profile", {"name", "preferred_username"}, {"email", "email_verified"}),
            ("openid email", {"email", "email_verified"}, {"name", "preferred_username"}),
        ]:
            for claims in claims_for(oidc, web, scope):
                assert present <= set(claims) and not absent & set(claims), (scope, claims)
                assert claims.get("email_verified", False) is False  # the mail's domain is no verified one
        # No mail: no email claim at all (not "").
        mail = portal.sql("SELECT email FROM tenant_user WHERE upn = %s", (user["upn"].lower(),))[0][0]
        portal.sql("UPDATE tenant_user SET email = '' WHERE upn = %s", (user["upn"].lower(),))
        try:
            for claims in claims_for(oidc, web):
                assert "email" not in claims and "email_verified" not in claims and claims["name"], claims
        finally:
            portal.sql("UPDATE tenant_user SET email = %s WHERE upn = %s", (mail, user["upn"].lower()))


def test_email_verified_only_for_a_mail_in_a_domain_the_answering_agent_serves(oidc, ad_testbed):
    """Second review, finding 4. The mail's domain is one of the tenant's verified domains, as another forest's
    would be, but the agent that answers for the user does not serve it: AD's mail attribute is no proof of that
    address. Once that agent serves the domain (one forest), its answer vouches for the address."""
    user = ad_testbed.user("ivan")
    portal, tenant = oidc["portal"], oidc["tenant"]
    domain = user["mail"].rpartition("@")[2]
    assert domain != ad_testbed.upn_suffix.lower()
    portal.manage("shell", "-c", "from tenant.models import Tenant; from tenant.services import domain_add; "
                  f"domain_add(tenant=Tenant.objects.get(slug='{tenant}'), name='{domain}', verified=True)")
    with signed_in(oidc, ad_testbed, "ivan") as web:
        for claims in claims_for(oidc, web):
            assert claims["email"].lower() == user["mail"].lower() and claims["email_verified"] is False, claims
    serve = ("from agents.models import Agent; from tenant.models import Domain; "
             f"agent = Agent.objects.get(tenant__slug='{tenant}', revoked_at__isnull=True); "
             f"agent.domains.{{}}(Domain.objects.get(name='{domain}'))")
    portal.manage("shell", "-c", serve.format("add"))
    try:
        def vouched() -> bool:  # the node re-reads the agent's domains within a second (embedded profile)
            with signed_in(oidc, ad_testbed, "ivan") as web:
                return all(claims["email_verified"] is True for claims in claims_for(oidc, web))

        wait_for(vouched, timeout=20, message="the agent's answer to vouch for the mail")
    finally:
        portal.manage("shell", "-c", serve.format("remove"))


# --- response modes and RFC 9207 -----------------------------------------------------------------------------

def test_form_post_answers_with_a_form_to_the_redirect_uri(oidc, ad_testbed):
    client = client_for(oidc["web"])
    issuer = discovery(oidc["node"])["issuer"]
    with browser(oidc) as web:  # without a session, prompt=none's error comes the same way
        url, _, _, state = authorize(oidc, client, prompt="none", response_mode="form_post")
        page = web.get(url)
        assert page.status_code == 200 and html.unescape(found(_ACTION, page.text)) == REDIRECT_URI
        assert dict(_HIDDEN.findall(page.text)) == {"error": "login_required", "state": state, "iss": issuer}
    with signed_in(oidc, ad_testbed, "judy") as web:
        url, verifier, nonce, state = authorize(oidc, client, response_mode="form_post")
        page = web.get(url)
        assert page.status_code == 200 and "no-store" in page.headers["cache-control"]
        assert html.unescape(found(_ACTION, page.text)) == REDIRECT_URI
        fields = {name: html.unescape(value) for name, value in _HIDDEN.findall(page.text)}
        assert set(fields) == {"code", "state", "iss"} and fields["state"] == state and fields["iss"] == issuer
        token = client.fetch_token(discovery(oidc["node"])["token_endpoint"], code=fields["code"],
                                   code_verifier=verifier)
        assert verify_id_token(oidc, token["id_token"], client.client_id, nonce)
        # A response mode the provider does not offer is refused, not silently replaced.
        url, _, _, state = authorize(oidc, client, response_mode="fragment")
        params = answer(web.get(url))
        assert params["error"] == "invalid_request" and params["state"] == state and params["iss"] == issuer


def test_every_authorization_answer_names_the_issuer(oidc, ad_testbed):
    issuer = discovery(oidc["node"])["issuer"]
    with signed_in(oidc, ad_testbed, "judy") as web:
        url, _, _, _ = authorize(oidc, client_for(oidc["web"]))
        assert answer(web.get(url))["iss"] == issuer  # a code
        url, _, _, _ = authorize(oidc, client_for(oidc["foreign"]))
        params = answer(web.get(url))  # another tenant's application: an error
        assert params["error"] == "access_denied" and params["iss"] == issuer
        url, _, _, _ = authorize(oidc, client_for(oidc["web"], scope="openid unknown-scope"))
        params = answer(web.get(url))
        assert params["error"] == "invalid_scope" and params["iss"] == issuer


# --- the password grant: what the client may do, before anything about the username -------------------------

def test_password_grant_answers_alike_whatever_the_domain_when_the_tenant_does_not_allow_it(oidc, ad_testbed):
    before = events(oidc)
    for username in (ad_testbed.user("alice")["upn"], "someone@not-a-tenant.example.test",
                     "someone@fabrikam.example.test"):
        refused = password_grant(oidc, username, "whatever-it-is")
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "unauthorized_client" and refused.json()["outcome"] is None, username
    assert events(oidc) == before


def test_password_grant_refuses_a_public_client_before_any_agent(oidc, ad_testbed, policy):
    policy("--password-grant", "on")
    portal = oidc["portal"]
    app = kv(portal.manage("app_register", "--tenant", oidc["tenant"], "--name", "Old public mail client",
                           "--grant", "password").stdout)
    # As a public client registered before they were refused would be (app_register refuses one now).
    portal.sql("UPDATE applications_application SET client_type = 'public', client_secret = '' "
               "WHERE client_id = %s", (app["client_id"],))
    user = ad_testbed.user("alice")
    before, agent_log = events(oidc), len(oidc["agent"].log())
    refused = httpx.post(discovery(oidc["node"])["token_endpoint"], timeout=30, data={
        "grant_type": "password", "username": user["upn"], "password": user["password"], "scope": "openid",
        "client_id": app["client_id"]})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "unauthorized_client" and "outcome" in refused.json()
    assert events(oidc) == before and len(oidc["agent"].log()) == agent_log
