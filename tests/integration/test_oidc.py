"""OpenID Connect end to end: a real Authlib client through the code flow with PKCE against a live Daphne, a real
pta-agent and the Samba AD DC; the ID token checked with the JWKS; MFA, redirect URIs, tenants and the password
grant."""

from __future__ import annotations

import base64
import re
import time
import uuid
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from authlib.jose import JsonWebKey, jwt
from authlib.jose.errors import BadSignatureError
from django_otp.oath import TOTP

from tests.fixtures.http import found, sign_in
from tests.fixtures.portal import free_port, local_agents, make_portal, start_agent, wait_for

pytestmark = pytest.mark.integration

REDIRECT_URI = "http://127.0.0.1:9/callback"  # nothing listens: the test reads the redirect itself
_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_SECRET = re.compile(r'id="totp-secret">([A-Z2-7]+)<')
_OUTCOME = re.compile(r'data-outcome="([^"]+)"')


def kv(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def oidc(ad_testbed):
    """An embedded portal whose public URL is its own address; tenant Contoso (the DC's domain) with an agent and
    three applications, and tenant Fabrikam with one."""
    portal = make_portal("embedded")
    try:
        port = free_port()
        node = portal.start_node("web", port=port, env={"PTA_PUBLIC_URL": f"http://127.0.0.1:{port}"})
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        agent = start_agent(portal, node, tenant, ad_testbed)
        wait_for(lambda: local_agents(node) == 1, timeout=10, message="the agent to connect")
        web = kv(portal.manage("app_register", "--tenant", tenant, "--name", "Web app",
                               "--redirect-uri", REDIRECT_URI).stdout)
        # The password grant is for confidential clients only (a public one is refused at registration).
        legacy = kv(portal.manage("app_register", "--tenant", tenant, "--name", "Legacy mail client",
                                  "--grant", "password").stdout)
        other = portal.tenant_create("Fabrikam", "fabrikam.example.test")
        foreign = kv(portal.manage("app_register", "--tenant", other, "--name", "Fabrikam app",
                                   "--redirect-uri", REDIRECT_URI).stdout)
        assert set(web) == {"client_id", "client_secret"} and set(legacy) == {"client_id", "client_secret"}
        tenant_id = portal.sql("SELECT id FROM tenant_tenant WHERE slug = %s", (tenant,))[0][0]
        yield {"portal": portal, "node": node, "tenant": tenant, "tenant_id": str(uuid.UUID(str(tenant_id))),
               "agent": agent, "web": web, "legacy": legacy, "foreign": foreign}
    finally:
        portal.close()


@pytest.fixture
def policy(oidc):
    """Set the tenant's policies for one test; back to off afterwards."""
    portal = oidc["portal"]

    def set_policy(*args: str) -> dict[str, str]:
        return kv(portal.manage("tenant_policy", oidc["tenant"], *args).stdout)

    yield set_policy
    set_policy("--mfa", "off", "--password-grant", "off")


def discovery(node) -> dict:
    return httpx.get(f"{node.url}/.well-known/openid-configuration", timeout=10).json()


def rp_client(oidc, app: str = "web") -> OAuth2Client:
    registered = oidc[app]
    return OAuth2Client(registered["client_id"], registered.get("client_secret"), redirect_uri=REDIRECT_URI,
                        scope="openid profile email", code_challenge_method="S256", timeout=20)


def authorize_url(oidc, client: OAuth2Client) -> tuple[str, str, str]:
    verifier, nonce = generate_token(48), generate_token(20)
    url, state = client.create_authorization_url(discovery(oidc["node"])["authorization_endpoint"],
                                                 code_verifier=verifier, nonce=nonce)
    return url, verifier, nonce


def browser(oidc) -> httpx.Client:
    return httpx.Client(base_url=oidc["node"].url, follow_redirects=False, timeout=20)


def to_login(browser_client: httpx.Client, url: str) -> str:
    """The authorize URL without a session: to /login/ with next= the authorize request. Returns next."""
    response = browser_client.get(url)
    assert response.status_code == 302, response.text[:500]
    location = urlparse(response.headers["location"])
    assert location.path == "/login/"
    return parse_qs(location.query)["next"][0]


def code_of(response: httpx.Response) -> str:
    assert response.status_code == 302, response.text[:500]
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    query = parse_qs(urlparse(location).query)
    assert "code" in query, location
    return location


def verify_id_token(oidc, id_token: str, client_id: str, nonce: str) -> dict:
    meta = discovery(oidc["node"])
    jwks = JsonWebKey.import_key_set(httpx.get(meta["jwks_uri"], timeout=10).json())
    header = jwt.decode(id_token, jwks).header
    assert header["alg"] == "RS256"
    claims = jwt.decode(id_token, jwks, claims_options={
        "iss": {"essential": True, "value": meta["issuer"]}, "aud": {"essential": True, "value": client_id},
        "nonce": {"essential": True, "value": nonce}, "exp": {"essential": True}})
    claims.validate()
    return claims


def test_discovery_names_this_issuer_and_s256_only(oidc):
    meta = discovery(oidc["node"])
    assert meta["issuer"] == oidc["node"].url
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert "RS256" in meta["id_token_signing_alg_values_supported"]
    assert {"tid", "upn", "name"} <= set(meta["claims_supported"])
    assert meta["end_session_endpoint"] == f"{oidc['node'].url}/logout/"
    # DOT's application management views are not mounted.
    assert httpx.get(f"{oidc['node'].url}/applications/", timeout=10).status_code == 404


def test_code_flow_with_pkce_gives_a_signed_id_token_with_tenant_upn_and_name(oidc, ad_testbed):
    user = ad_testbed.user("alice")
    client = rp_client(oidc)
    url, verifier, nonce = authorize_url(oidc, client)
    with browser(oidc) as web:
        next_url = to_login(web, url)
        attempt = sign_in(oidc["node"].url, user["upn"], user["password"], next_url=next_url, client=web)
        assert attempt.outcome == "success" and attempt.location == next_url
        redirect = code_of(web.get(next_url))
    meta = discovery(oidc["node"])
    token = client.fetch_token(meta["token_endpoint"], authorization_response=redirect, code_verifier=verifier)
    claims = verify_id_token(oidc, token["id_token"], oidc["web"]["client_id"], nonce)
    assert claims["tid"] == oidc["tenant_id"]
    assert claims["upn"] == user["upn"].lower()
    assert claims["name"] == user["display_name"]
    # A token whose payload was changed does not verify with the JWKS.
    head, payload, signature = token["id_token"].split(".")
    forged = base64.urlsafe_b64encode(base64.urlsafe_b64decode(payload + "==").replace(
        claims["upn"].encode(), b"mallory@" + claims["upn"].split("@")[1].encode())).rstrip(b"=").decode()
    jwks = JsonWebKey.import_key_set(httpx.get(meta["jwks_uri"], timeout=10).json())
    with pytest.raises(BadSignatureError):
        jwt.decode(f"{head}.{forged}.{signature}", jwks)
    # The access token works at the userinfo endpoint.
    info = client.get(meta["userinfo_endpoint"]).json()
    assert info["upn"] == claims["upn"] and info["sub"] == claims["sub"]


def test_code_exchange_without_the_verifier_is_refused(oidc, ad_testbed):
    user = ad_testbed.user("bob")
    client = rp_client(oidc)
    url, verifier, _ = authorize_url(oidc, client)
    with browser(oidc) as web:
        next_url = to_login(web, url)
        sign_in(oidc["node"].url, user["upn"], user["password"], next_url=next_url, client=web)
        redirect = code_of(web.get(next_url))
    code = parse_qs(urlparse(redirect).query)["code"][0]
    answer = httpx.post(discovery(oidc["node"])["token_endpoint"], data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": "x" * 50}, auth=(oidc["web"]["client_id"], oidc["web"]["client_secret"]), timeout=10)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_pkce_is_required_and_plain_is_refused(oidc, ad_testbed):
    user = ad_testbed.user("bob")
    endpoint = discovery(oidc["node"])["authorization_endpoint"]
    base = {"client_id": oidc["web"]["client_id"], "response_type": "code", "scope": "openid",
            "redirect_uri": REDIRECT_URI, "state": "s1"}
    with browser(oidc) as web:
        sign_in(oidc["node"].url, user["upn"], user["password"], client=web)
        for extra in ({}, {"code_challenge": "a" * 43, "code_challenge_method": "plain"}):
            response = web.get(endpoint, params={**base, **extra})
            location = response.headers.get("location", "")
            assert "code=" not in location, extra
            assert response.status_code == 400 or "error=" in location, (extra, response.status_code, location)


def test_unregistered_redirect_uri_is_refused(oidc, ad_testbed):
    user = ad_testbed.user("judy")
    client = OAuth2Client(oidc["web"]["client_id"], redirect_uri="http://127.0.0.1:9/evil",
                          scope="openid", code_challenge_method="S256")
    url, _ = client.create_authorization_url(discovery(oidc["node"])["authorization_endpoint"],
                                             code_verifier=generate_token(48))
    with browser(oidc) as web:
        sign_in(oidc["node"].url, user["upn"], user["password"], client=web)
        response = web.get(url)
    assert response.status_code == 400
    assert "evil" not in response.headers.get("location", "")


def test_another_tenants_application_gets_no_code(oidc, ad_testbed):
    user = ad_testbed.user("judy")
    client = rp_client(oidc, "foreign")
    url, _, _ = authorize_url(oidc, client)
    with browser(oidc) as web:
        sign_in(oidc["node"].url, user["upn"], user["password"], client=web)
        response = web.get(url)
    location = response.headers.get("location", "")
    assert response.status_code == 302 and "error=access_denied" in location and "code=" not in location


def totp_code(secret: str, *, step: int = 0) -> str:
    totp = TOTP(base64.b32decode(secret + "=" * (-len(secret) % 8)))
    totp.time = time.time() + 30 * step
    return f"{totp.token():06d}"


def test_mfa_policy_gates_the_code_until_the_second_factor(oidc, ad_testbed, policy):
    assert policy("--mfa", "all")["mfa"] == "all"
    user = ad_testbed.user("ivan")
    client = rp_client(oidc)
    url, verifier, nonce = authorize_url(oidc, client)
    with browser(oidc) as web:
        next_url = to_login(web, url)
        attempt = sign_in(oidc["node"].url, user["upn"], user["password"], next_url=next_url, client=web)
        assert attempt.outcome == "mfa_required" and attempt.location == "/login/mfa/"
        # No code after the password alone: authorize still sends the browser to sign in.
        again = web.get(next_url)
        assert again.status_code == 302 and urlparse(again.headers["location"]).path == "/login/"
        page = web.get("/login/mfa/enrol/")
        assert 'data-outcome="mfa_required"' in page.text
        secret = found(_SECRET, page.text)
        token = found(_CSRF, page.text)
        wrong = web.post("/login/mfa/enrol/", data={"otp": "123456" if totp_code(secret) != "123456" else "654321",
                                                     "csrfmiddlewaretoken": token})
        assert found(_OUTCOME, wrong.text) == "mfa_failed"
        time.sleep(1.1)  # django-otp's throttle after one wrong code
        done = web.post("/login/mfa/enrol/", data={"otp": totp_code(secret), "csrfmiddlewaretoken": token})
        assert found(_OUTCOME, done.text) == "success"
        redirect = code_of(web.get(next_url))
    token = client.fetch_token(discovery(oidc["node"])["token_endpoint"], authorization_response=redirect,
                               code_verifier=verifier)
    assert verify_id_token(oidc, token["id_token"], oidc["web"]["client_id"], nonce)["upn"] == user["upn"].lower()
    rows = oidc["portal"].sql("SELECT outcome, mfa_decision, mfa_reason, mfa_result FROM signin_signinevent "
                              "WHERE username = %s ORDER BY id DESC LIMIT 1", (user["upn"],))
    assert rows == [("success", "required", "policy_all", "success")]


# --- the password grant ----------------------------------------------------------------------------------

def password_grant(oidc, username: str, password: str, app: str = "legacy") -> httpx.Response:
    data = {"grant_type": "password", "username": username, "password": password, "scope": "openid",
            "client_id": oidc[app]["client_id"]}
    auth = (oidc[app]["client_id"], oidc[app]["client_secret"]) if oidc[app].get("client_secret") else None
    return httpx.post(discovery(oidc["node"])["token_endpoint"], data=data, auth=auth, timeout=30)


def events(oidc) -> int:
    return oidc["portal"].sql("SELECT count(*) FROM signin_signinevent")[0][0]


def test_password_grant_is_refused_before_any_bind_when_not_allowed(oidc, ad_testbed, policy):
    user = ad_testbed.user("mallory")
    before, agent_log = events(oidc), len(oidc["agent"].log())
    # The tenant has not allowed the grant.
    answer = password_grant(oidc, user["upn"], user["password"])
    assert answer.status_code == 400
    assert answer.json()["error"] == "unauthorized_client" and "outcome" in answer.json()
    # Allowed by the tenant, but this client is registered for the authorization code grant.
    policy("--password-grant", "on")
    answer = password_grant(oidc, user["upn"], user["password"], app="web")
    assert answer.status_code == 400 and answer.json()["error"] == "unauthorized_client"
    # Neither reached an agent: no sign-in record, nothing new in the agent's log.
    assert events(oidc) == before
    assert len(oidc["agent"].log()) == agent_log


def test_password_grant_goes_through_pass_through_when_allowed(oidc, ad_testbed, policy):
    policy("--password-grant", "on")
    user = ad_testbed.user("mallory")
    answer = password_grant(oidc, user["upn"], user["password"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["access_token"] and answer.json()["token_type"] == "Bearer"
    rows = oidc["portal"].sql("SELECT outcome, channel, agent_id, sealed_by FROM signin_signinevent "
                              "WHERE username = %s ORDER BY id DESC LIMIT 1", (user["upn"],))
    assert rows[0][0] == "success" and rows[0][1] == "oauth" and rows[0][2]
    assert rows[0][3] == "portal"  # server to server: the portal seals (docs/SECURITY.md, issue 28)
    wrong = password_grant(oidc, user["upn"], "not-" + user["password"])
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant" and wrong.json()["outcome"] == "invalid_credentials"
    assert password_grant(oidc, user["upn"], user["password"]).status_code == 200  # resets AD's bad count


def test_password_grant_refuses_users_who_need_mfa(oidc, ad_testbed, policy):
    policy("--password-grant", "on", "--mfa", "all")
    user = ad_testbed.user("mallory")
    answer = password_grant(oidc, user["upn"], user["password"])
    assert answer.status_code == 400
    assert answer.json()["error"] == "interaction_required" and answer.json()["outcome"] == "mfa_required"
    assert "access_token" not in answer.json()
