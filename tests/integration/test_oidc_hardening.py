"""OpenID Connect as client libraries expect it, end to end against a live Daphne, a real pta-agent and the Samba
AD DC: RP-initiated logout (finding 5), no token introspection (6), code replay, PKCE and redirect URIs (9), the
production issuer, CORS and signing-key rotation (10). Flows go through Authlib's OAuth2Client; malformed requests
are sent with plain httpx. Each test fails on the code before its fix."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from authlib.jose import JsonWebKey, jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fixtures.http import sign_in
from tests.fixtures.portal import (
    PORTAL_VARIABLES,
    REPO_ROOT,
    free_port,
    local_agents,
    make_portal,
    oidc_signing_key_pem,
    start_agent,
    wait_for,
)

pytestmark = pytest.mark.integration

REDIRECT_URI = "http://127.0.0.1:9/callback"  # nothing listens: the tests read the redirects themselves
SECOND_REDIRECT_URI = "http://127.0.0.1:9/second/callback"
NATIVE_REDIRECT_URI = "http://127.0.0.1:9/native/callback"
SPA_REDIRECT_URI = "http://127.0.0.1:9/spa/callback"
SPA_ORIGIN = "https://spa.contoso.test"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)"(?: value="([^"]*)")?')


def kv(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def oidc(ad_testbed):
    """An embedded portal whose issuer is its own address; tenant Contoso (the DC's domain) with an agent, two
    confidential applications and a public one on loopback; tenant Fabrikam with one application."""
    portal = make_portal("embedded")
    try:
        port = free_port()
        node = portal.start_node("web", port=port, env={"PTA_PUBLIC_URL": f"http://127.0.0.1:{port}"})
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        start_agent(portal, node, tenant, ad_testbed)
        wait_for(lambda: local_agents(node) == 1, timeout=10, message="the agent to connect")

        def register(*args: str) -> dict[str, str]:
            return kv(portal.manage("app_register", "--tenant", *args).stdout)

        other = portal.tenant_create("Fabrikam", "fabrikam.example.test")
        yield {"portal": portal, "node": node, "tenant": tenant,
               "web": {**register(tenant, "--name", "Web app", "--redirect-uri", REDIRECT_URI),
                       "redirect_uri": REDIRECT_URI},
               "web2": {**register(tenant, "--name", "Second app", "--redirect-uri", SECOND_REDIRECT_URI),
                        "redirect_uri": SECOND_REDIRECT_URI},
               "native": {**register(tenant, "--name", "Native app", "--public", "--redirect-uri",
                                     NATIVE_REDIRECT_URI), "redirect_uri": NATIVE_REDIRECT_URI},
               "foreign": {**register(other, "--name", "Fabrikam app", "--redirect-uri",
                                      "https://app.fabrikam.test/callback"),
                           "redirect_uri": "https://app.fabrikam.test/callback"}}
    finally:
        portal.close()


@pytest.fixture(scope="module")
def spa(oidc):
    """A browser-only (public) client of Contoso allowed to call /token/ and /userinfo/ from SPA_ORIGIN."""
    app = kv(oidc["portal"].manage("app_register", "--tenant", oidc["tenant"], "--name", "SPA", "--public",
                                   "--redirect-uri", SPA_REDIRECT_URI, "--allowed-origin", SPA_ORIGIN).stdout)
    oidc["spa"] = {**app, "redirect_uri": SPA_REDIRECT_URI}
    return oidc["spa"]


# --- a relying party and a browser ------------------------------------------------------------------------

def meta(oidc) -> dict:
    return httpx.get(f"{oidc['node'].url}/.well-known/openid-configuration", timeout=10).json()


def browser(oidc) -> httpx.Client:
    return httpx.Client(base_url=oidc["node"].url, follow_redirects=False, timeout=20)


@contextlib.contextmanager
def signed_in(oidc, ad_testbed, name: str) -> Iterator[httpx.Client]:
    """A browser with a portal session of the AD user ``name``."""
    user = ad_testbed.user(name)
    with browser(oidc) as web:
        attempt = sign_in(oidc["node"].url, user["upn"], user["password"], client=web)
        assert attempt.outcome == "success", attempt
        yield web


def rp(oidc, app: str = "web") -> OAuth2Client:
    registered = oidc[app]
    secret = registered.get("client_secret")
    return OAuth2Client(registered["client_id"], secret, redirect_uri=registered["redirect_uri"],
                        scope="openid profile email", code_challenge_method="S256", timeout=20,
                        token_endpoint_auth_method="client_secret_basic" if secret else "none")


def redirect_with_code(web: httpx.Client, url: str, redirect_uri: str) -> str:
    response = web.get(url)
    assert response.status_code == 302, response.text[:500]
    location = response.headers["location"]
    assert location.startswith(redirect_uri + "?") and "code=" in location, location
    return location


def code_flow(oidc, web: httpx.Client, app: str = "web") -> tuple[OAuth2Client, str, str]:
    """The authorization request of ``app`` in a signed-in browser: (the RP's client, redirect with code,
    verifier)."""
    client, verifier = rp(oidc, app), generate_token(48)
    url, _ = client.create_authorization_url(meta(oidc)["authorization_endpoint"], code_verifier=verifier,
                                             nonce=generate_token(20))
    return client, redirect_with_code(web, url, oidc[app]["redirect_uri"]), verifier


def tokens(oidc, web: httpx.Client, app: str = "web") -> dict:
    client, redirect, verifier = code_flow(oidc, web, app)
    return client.fetch_token(meta(oidc)["token_endpoint"], authorization_response=redirect, code_verifier=verifier)


def userinfo_status(oidc, access_token: str) -> int:
    return httpx.get(meta(oidc)["userinfo_endpoint"], headers={"Authorization": f"Bearer {access_token}"},
                     timeout=10).status_code


def refresh_status(oidc, app: str, refresh_token: str) -> int:
    return httpx.post(meta(oidc)["token_endpoint"], data={"grant_type": "refresh_token",
                                                          "refresh_token": refresh_token},
                      auth=(oidc[app]["client_id"], oidc[app]["client_secret"]), timeout=20).status_code


def code_of(location: str) -> str:
    return parse_qs(urlparse(location).query)["code"][0]


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def exchange(oidc, app: str, code: str, verifier: str) -> httpx.Response:
    """A token request by hand (for the malformed ones)."""
    registered = oidc[app]
    return httpx.post(meta(oidc)["token_endpoint"], data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": registered["redirect_uri"],
        "code_verifier": verifier}, auth=(registered["client_id"], registered["client_secret"]), timeout=20)


def authorize(web: httpx.Client, oidc, app: str = "web", **params: str) -> httpx.Response:
    return web.get("/authorize/", params={"client_id": oidc[app]["client_id"], "response_type": "code",
                                          "scope": "openid", "redirect_uri": oidc[app]["redirect_uri"],
                                          "state": "st", "code_challenge_method": "S256", **params})


# --- finding 5: RP-initiated logout -----------------------------------------------------------------------

def logout_url(**params: str) -> str:
    return "/logout/?" + urlencode(params)


def confirm_logout(web: httpx.Client, url: str) -> httpx.Response:
    """A signed-in user at the end_session_endpoint: the page asks, the user confirms."""
    page = web.get(url)
    assert page.status_code == 200 and "Sign out" in page.text, page.text[:500]
    form = {name: html.unescape(value or "") for name, value in _HIDDEN.findall(page.text)}
    return web.post("/logout/", data=form)


def signed_out_page(response: httpx.Response) -> bool:
    return response.status_code == 200 and 'id="signed-out"' in response.text


def expired_copy(oidc, id_token: str) -> str:
    """The same ID token, expired an hour ago, signed with the portal's key (the embedded profile's state file)."""
    header, payload, _ = id_token.split(".")
    header = json.loads(base64.urlsafe_b64decode(header + "=="))
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims.update(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    pem = (oidc["portal"].directory / "state" / "oidc_rsa_private_key.pem").read_bytes()
    return jwt.encode({"alg": "RS256", "kid": header["kid"]}, claims, pem).decode()


def test_logout_without_a_session_revokes_nothing_and_never_redirects(oidc, ad_testbed):
    """Second review, 5b: with nobody signed in, the end_session_endpoint sent the browser at once to any
    application's registered address (a bounce off the portal for anyone's link). Now the portal's own page."""
    with signed_in(oidc, ad_testbed, "alice") as web:
        token = tokens(oidc, web)
    with browser(oidc) as stranger:  # no session: someone else's browser, or an attacker, holding the ID token
        for params in ({"client_id": oidc["web"]["client_id"], "post_logout_redirect_uri": REDIRECT_URI},
                       {"id_token_hint": token["id_token"], "post_logout_redirect_uri": REDIRECT_URI}):
            response = stranger.get(logout_url(**params, state="s-1"))
            assert signed_out_page(response) and "location" not in response.headers, (params, response.headers)
            assert "could not be verified" not in response.text
    assert userinfo_status(oidc, token["access_token"]) == 200
    assert refresh_status(oidc, "web", token["refresh_token"]) == 200


def test_an_expired_hint_names_the_application_and_revokes_nothing(oidc, ad_testbed):
    with signed_in(oidc, ad_testbed, "bob") as web:
        token = tokens(oidc, web)
    expired = expired_copy(oidc, token["id_token"])
    with browser(oidc) as stranger:
        response = stranger.get(logout_url(id_token_hint=expired, post_logout_redirect_uri=REDIRECT_URI,
                                           state="s-2"))
    assert signed_out_page(response) and "location" not in response.headers
    assert userinfo_status(oidc, token["access_token"]) == 200
    with signed_in(oidc, ad_testbed, "bob") as web:  # bob's own session: the expired hint still names his app
        done = confirm_logout(web, logout_url(id_token_hint=expired, post_logout_redirect_uri=REDIRECT_URI,
                                              state="s-2"))
    assert done.status_code == 302 and done.headers["location"] == f"{REDIRECT_URI}?state=s-2"


def test_logout_returns_only_for_the_signed_in_users_own_hint(oidc, ad_testbed):
    """Second review, 5b: back to the application only when a signed-in session ends with that application's
    id_token_hint for its own user; else (no hint, someone else's) the portal's page, after the sign-out."""
    with signed_in(oidc, ad_testbed, "judy") as web:
        judys = tokens(oidc, web)
    for params in ({"client_id": oidc["web"]["client_id"]}, {"id_token_hint": judys["id_token"]}):
        with signed_in(oidc, ad_testbed, "ivan") as web:
            done = confirm_logout(web, logout_url(**params, post_logout_redirect_uri=REDIRECT_URI, state="s-7"))
            assert signed_out_page(done) and "location" not in done.headers, (params, done.headers)
            assert urlparse(web.get(code_flow_url(oidc)).headers["location"]).path == "/login/"  # signed out


def test_app_register_names_where_the_sign_out_returns(oidc, ad_testbed):
    """app_register --post-logout-redirect-uri (repeatable): those addresses, and then only those."""
    portal = oidc["portal"]
    after = ["http://127.0.0.1:9/signed-out", "http://127.0.0.1:9/goodbye"]
    oidc["web3"] = {**kv(portal.manage("app_register", "--tenant", oidc["tenant"], "--name", "Third app",
                                       "--redirect-uri", "http://127.0.0.1:9/third/callback",
                                       "--post-logout-redirect-uri", after[0],
                                       "--post-logout-redirect-uri", after[1]).stdout),
                    "redirect_uri": "http://127.0.0.1:9/third/callback"}
    for target in after:
        with signed_in(oidc, ad_testbed, "alice") as web:
            token = tokens(oidc, web, "web3")
            done = confirm_logout(web, logout_url(id_token_hint=token["id_token"], post_logout_redirect_uri=target,
                                                  state="s-8"))
        assert done.status_code == 302 and done.headers["location"] == f"{target}?state=s-8"
    with browser(oidc) as stranger:  # the redirect URI is not a post-logout one now
        response = stranger.get(logout_url(client_id=oidc["web3"]["client_id"],
                                           post_logout_redirect_uri=oidc["web3"]["redirect_uri"]))
    assert signed_out_page(response) and "could not be verified" in response.text


def test_logout_revokes_only_the_signed_in_users_tokens_at_the_asking_application(oidc, ad_testbed):
    with signed_in(oidc, ad_testbed, "judy") as other_user:
        others = tokens(oidc, other_user)
    with signed_in(oidc, ad_testbed, "ivan") as web:
        at_web, at_second = tokens(oidc, web), tokens(oidc, web, "web2")
        done = confirm_logout(web, logout_url(client_id=oidc["web"]["client_id"], id_token_hint=at_web["id_token"],
                                              post_logout_redirect_uri=REDIRECT_URI, state="s-3"))
        assert done.status_code == 302 and done.headers["location"] == f"{REDIRECT_URI}?state=s-3"
        # The session is over: authorize sends the browser to sign in again.
        assert urlparse(web.get(code_flow_url(oidc)).headers["location"]).path == "/login/"
    assert userinfo_status(oidc, at_web["access_token"]) in (401, 403)
    assert refresh_status(oidc, "web", at_web["refresh_token"]) == 400
    assert userinfo_status(oidc, at_second["access_token"]) == 200  # another application: untouched
    assert userinfo_status(oidc, others["access_token"]) == 200  # another user: untouched


def code_flow_url(oidc) -> str:
    url, _ = rp(oidc).create_authorization_url(meta(oidc)["authorization_endpoint"],
                                               code_verifier=generate_token(48))
    return url


def test_logout_at_a_second_application_after_the_first_ends_on_the_portals_page(oidc, ad_testbed):
    with signed_in(oidc, ad_testbed, "alice") as web:
        first, second = tokens(oidc, web), tokens(oidc, web, "web2")
        done = confirm_logout(web, logout_url(id_token_hint=first["id_token"], post_logout_redirect_uri=REDIRECT_URI,
                                              state="s-4"))
        assert done.status_code == 302 and done.headers["location"] == f"{REDIRECT_URI}?state=s-4"
        # The second application sends the same browser, now signed out, with its own hint: nothing to end, and
        # no way to tell that browser from anyone's (second review, 5b).
        response = web.get(logout_url(id_token_hint=second["id_token"],
                                      post_logout_redirect_uri=SECOND_REDIRECT_URI, state="s-5"))
    assert signed_out_page(response) and "location" not in response.headers


def test_an_unverifiable_logout_request_ends_on_a_page_never_a_redirect(oidc, ad_testbed):
    foreign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({"alg": "RS256"}, {"iss": oidc["node"].url, "aud": oidc["web"]["client_id"],
                                           "exp": int(time.time()) + 600, "jti": str(uuid.uuid4())},
                        foreign_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption())).decode()
    requests = [
        {"client_id": "no-such-client", "post_logout_redirect_uri": "https://evil.test/", "state": "x"},
        {"id_token_hint": forged, "post_logout_redirect_uri": REDIRECT_URI},
        {"client_id": oidc["web"]["client_id"], "post_logout_redirect_uri": "https://evil.test/"},
        {"client_id": oidc["web"]["client_id"], "post_logout_redirect_uri": "http://127.0.0.1:4444/callback"},
        {"id_token_hint": "garbage"},
    ]
    with browser(oidc) as stranger:
        for params in requests:
            response = stranger.get(logout_url(**params))
            assert signed_out_page(response), (params, response.status_code, response.text[:300])
            assert "could not be verified" in response.text
    with signed_in(oidc, ad_testbed, "judy") as web:
        page = web.get(logout_url(client_id="no-such-client"))
        assert page.status_code == 200 and "could not be verified" in page.text
        form = {name: html.unescape(value or "") for name, value in _HIDDEN.findall(page.text)}
        assert "client_id" not in form  # the portal's own sign-out, without the unverified request
        done = web.post("/logout/", data=form)
        assert done.status_code == 302 and done.headers["location"] == "/login/"


# --- finding 6: no introspection ------------------------------------------------------------------------

def test_introspection_is_not_offered(oidc, ad_testbed):
    with signed_in(oidc, ad_testbed, "bob") as web:
        token = tokens(oidc, web)
    # A client of another tenant asks about a Contoso token.
    answer = httpx.post(f"{oidc['node'].url}/introspect/", data={"token": token["access_token"]},
                        auth=(oidc["foreign"]["client_id"], oidc["foreign"]["client_secret"]), timeout=10)
    assert answer.status_code == 404 and "active" not in answer.text
    for path in ("/device-authorization/", "/device/"):
        assert httpx.get(f"{oidc['node'].url}{path}", timeout=10).status_code == 404
    assert "introspection_endpoint" not in meta(oidc)


# --- finding 9: codes, PKCE and redirect URIs ------------------------------------------------------------

def test_a_replayed_code_revokes_the_tokens_issued_from_it(oidc, ad_testbed):
    with signed_in(oidc, ad_testbed, "ivan") as web:
        client, redirect, verifier = code_flow(oidc, web)
    endpoint = meta(oidc)["token_endpoint"]
    token = client.fetch_token(endpoint, authorization_response=redirect, code_verifier=verifier)
    assert userinfo_status(oidc, token["access_token"]) == 200
    with pytest.raises(OAuthError) as replay:
        rp(oidc).fetch_token(endpoint, authorization_response=redirect, code_verifier=verifier)
    assert replay.value.error == "invalid_grant"
    assert userinfo_status(oidc, token["access_token"]) in (401, 403)
    assert refresh_status(oidc, "web", token["refresh_token"]) == 400


def test_pkce_challenges_outside_rfc7636_get_no_code(oidc, ad_testbed):
    with signed_in(oidc, ad_testbed, "judy") as web:
        for challenge in ("a" * 42, "a" * 129, "a" * 42 + "+", "a" * 41 + "==", "a" * 42 + "%"):
            response = authorize(web, oidc, code_challenge=challenge)
            location = response.headers.get("location", "")
            assert response.status_code == 302 and "error=invalid_request" in location, (challenge, location)
            assert "code=" not in location and "state=st" in location
        assert "code=" in authorize(web, oidc, code_challenge=s256("v" * 43)).headers["location"]  # the control


def test_pkce_verifiers_outside_rfc7636_are_refused(oidc, ad_testbed):
    with signed_in(oidc, ad_testbed, "alice") as web:
        for verifier in ("v" * 42, "v" * 129, "v" * 42 + "!", "v" * 42 + " "):
            location = authorize(web, oidc, code_challenge=s256(verifier)).headers["location"]
            answer = exchange(oidc, "web", code_of(location), verifier)
            assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant", (verifier, answer.text)
            assert "access_token" not in answer.text


def test_a_wrong_verifier_burns_the_code(oidc, ad_testbed):
    with signed_in(oidc, ad_testbed, "bob") as web:
        client, redirect, verifier = code_flow(oidc, web)
    wrong = exchange(oidc, "web", code_of(redirect), generate_token(48))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    with pytest.raises(OAuthError) as second_try:
        client.fetch_token(meta(oidc)["token_endpoint"], authorization_response=redirect, code_verifier=verifier)
    assert second_try.value.error == "invalid_grant"


def test_a_confidential_clients_loopback_redirect_matches_its_port(oidc, ad_testbed):
    with signed_in(oidc, ad_testbed, "judy") as web:
        challenge = s256(generate_token(48))
        for elsewhere in ("http://127.0.0.1:4444/callback", "http://127.0.0.1/callback"):
            response = authorize(web, oidc, redirect_uri=elsewhere, code_challenge=challenge)
            assert response.status_code == 400, (elsewhere, response.headers.get("location"))
            assert "code=" not in response.headers.get("location", "")
        assert "code=" in authorize(web, oidc, code_challenge=challenge).headers["location"]
        # A native app (public client) keeps RFC 8252's any port on a loopback IP.
        native = authorize(web, oidc, "native", redirect_uri="http://127.0.0.1:4444/native/callback",
                           code_challenge=challenge)
        assert native.headers["location"].startswith("http://127.0.0.1:4444/native/callback?code=")


def test_plain_http_redirect_uris_off_loopback_are_refused_at_registration(oidc):
    portal = oidc["portal"]
    refused = portal.manage("app_register", "--tenant", oidc["tenant"], "--name", "Plain wiki",
                            "--redirect-uri", "http://wiki.contoso.test/callback", check=False)
    assert refused.returncode != 0 and "loopback" in refused.stderr
    assert not portal.sql("SELECT id FROM applications_application WHERE name = %s", ("Plain wiki",))
    allowed = portal.manage("app_register", "--tenant", oidc["tenant"], "--name", "Local tool",
                            "--redirect-uri", "http://localhost:8080/callback", check=False)
    assert allowed.returncode == 0, allowed.stderr


# --- finding 10: production issuer, CORS, key rotation ---------------------------------------------------

def test_production_refuses_to_start_without_an_https_public_url(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in PORTAL_VARIABLES and k != "PTA_INSECURE_COOKIES"}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings", "PTA_STATE_DIR": str(tmp_path),
                "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none", "REDIS_URL": "redis://127.0.0.1:1/0",
                "DJANGO_SECRET_KEY": "test-secret", "PTA_CA_ENCRYPTION_KEY": "test-ca-key",
                "PTA_OIDC_RSA_PRIVATE_KEY": oidc_signing_key_pem()})

    def check(**extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO_ROOT, env={**env, **extra},
                              capture_output=True, text=True, timeout=120, check=False)

    missing = check()
    assert missing.returncode != 0 and "PTA_PUBLIC_URL must be set" in missing.stderr
    plain = check(PTA_PUBLIC_URL="http://portal.test.example")
    assert plain.returncode != 0 and "PTA_PUBLIC_URL must be an https:// URL" in plain.stderr
    issuer = check(PTA_PUBLIC_URL="https://portal.test.example", PTA_OIDC_ISSUER="http://portal.test.example")
    assert issuer.returncode != 0 and "PTA_OIDC_ISSUER must be an https:// URL" in issuer.stderr
    loopback = check(PTA_PUBLIC_URL="http://127.0.0.1:8000")
    assert loopback.returncode != 0
    assert check(PTA_PUBLIC_URL="http://127.0.0.1:8000", PTA_INSECURE_COOKIES="1").returncode == 0
    good = check(PTA_PUBLIC_URL="https://portal.test.example")
    assert good.returncode == 0, good.stderr[-2000:]


def spa_code(oidc, web: httpx.Client) -> tuple[str, str]:
    verifier = generate_token(48)
    client = rp(oidc, "spa")
    url, _ = client.create_authorization_url(meta(oidc)["authorization_endpoint"], code_verifier=verifier)
    return code_of(redirect_with_code(web, url, SPA_REDIRECT_URI)), verifier


def spa_exchange(oidc, code: str, verifier: str, origin: str) -> httpx.Response:
    """A browser-only client's token request: client_id in the body, the page's Origin."""
    return httpx.post(meta(oidc)["token_endpoint"], headers={"Origin": origin}, timeout=20, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": SPA_REDIRECT_URI,
        "client_id": oidc["spa"]["client_id"], "code_verifier": verifier})


def test_cors_answers_only_the_exact_registered_origins(oidc, spa, ad_testbed):
    endpoints = meta(oidc)
    with signed_in(oidc, ad_testbed, "alice") as web:
        mine, stranger = spa_code(oidc, web), spa_code(oidc, web)
        web_token = tokens(oidc, web)
    answer = spa_exchange(oidc, *mine, SPA_ORIGIN)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == SPA_ORIGIN and "Origin" in answer.headers["Vary"]
    for origin in ("https://evil.test", "https://spa.contoso.test.evil.test", "http://spa.contoso.test"):
        assert "Access-Control-Allow-Origin" not in spa_exchange(oidc, "used", "v" * 43, origin).headers, origin
    other = spa_exchange(oidc, *stranger, "https://evil.test")
    assert other.status_code == 200 and "Access-Control-Allow-Origin" not in other.headers
    access = answer.json()["access_token"]

    preflight = httpx.options(endpoints["userinfo_endpoint"], timeout=10, headers={
        "Origin": SPA_ORIGIN, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code in (200, 204)
    assert preflight.headers["Access-Control-Allow-Origin"] == SPA_ORIGIN
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    refused = httpx.options(endpoints["userinfo_endpoint"], timeout=10, headers={
        "Origin": "https://evil.test", "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in refused.headers

    def userinfo(token: str, origin: str) -> httpx.Response:
        return httpx.get(endpoints["userinfo_endpoint"], timeout=10,
                         headers={"Authorization": f"Bearer {token}", "Origin": origin})

    info = userinfo(access, SPA_ORIGIN)
    assert info.status_code == 200 and info.headers["Access-Control-Allow-Origin"] == SPA_ORIGIN
    assert "Access-Control-Allow-Origin" not in userinfo(access, "https://evil.test").headers
    # The origin is the SPA's, not the web application's: its token is not readable from there.
    assert "Access-Control-Allow-Origin" not in userinfo(web_token["access_token"], SPA_ORIGIN).headers
    # Discovery and the JWKS are public.
    for url in (f"{oidc['node'].url}/.well-known/openid-configuration", endpoints["jwks_uri"]):
        assert httpx.get(url, headers={"Origin": "https://evil.test"}, timeout=10).headers[
            "Access-Control-Allow-Origin"] == "*"


def _kid(id_token: str) -> str:
    return json.loads(base64.urlsafe_b64decode(id_token.split(".")[0] + "=="))["kid"]


def _verifies(oidc, id_token: str) -> bool:
    jwks = JsonWebKey.import_key_set(httpx.get(meta(oidc)["jwks_uri"], timeout=10).json())
    try:
        jwt.decode(id_token, jwks).validate(leeway=5)
        return True
    except Exception:  # noqa: BLE001 -- any failure to verify
        return False


def test_a_retired_signing_key_stays_in_the_jwks_until_its_tokens_expire(oidc, ad_testbed):
    """Runs last in this module: it restarts the node with a new key, then restores it."""
    node, portal = oidc["node"], oidc["portal"]
    retired: str = Path(portal.directory / "state" / "oidc_rsa_private_key.pem").read_text()
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    with signed_in(oidc, ad_testbed, "bob") as web:
        before = tokens(oidc, web)
    try:
        node.env.update({"PTA_OIDC_RSA_PRIVATE_KEY": new_key, "PTA_OIDC_RSA_PRIVATE_KEYS_INACTIVE": retired})
        node.restart()
        wait_for(lambda: local_agents(node) == 1, timeout=60, message="the agent to reconnect")
        keys = httpx.get(meta(oidc)["jwks_uri"], timeout=10).json()["keys"]
        assert len(keys) == 2 and _kid(before["id_token"]) in {key["kid"] for key in keys}
        assert _verifies(oidc, before["id_token"])  # issued before the rotation, still verifiable
        with signed_in(oidc, ad_testbed, "bob") as web:
            after = tokens(oidc, web)
        assert _kid(after["id_token"]) != _kid(before["id_token"]) and _verifies(oidc, after["id_token"])
        # An ID token signed with the retired key still names its application at logout.
        with signed_in(oidc, ad_testbed, "bob") as web:
            response = confirm_logout(web, logout_url(id_token_hint=before["id_token"],
                                                      post_logout_redirect_uri=REDIRECT_URI, state="s-6"))
        assert response.status_code == 302 and response.headers["location"] == f"{REDIRECT_URI}?state=s-6"
    finally:
        for name in ("PTA_OIDC_RSA_PRIVATE_KEY", "PTA_OIDC_RSA_PRIVATE_KEYS_INACTIVE"):
            node.env.pop(name, None)
        node.restart()
        wait_for(lambda: local_agents(node) == 1, timeout=60, message="the agent to reconnect")
