"""OpenID Connect identities follow AD (docs/oidc.md, "Subjects and token lifetimes"): against the Samba DC, with
a real pta-agent that has a service account, and Authlib as the relying party.

- A leaver's UPN given to a new hire is a new person: another `sub`, and the leaver's tokens stop working.
- A user disabled in AD loses their tokens at their next sign-in attempt, or at once where the tenant asks the
  directory on every refresh.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import time
from urllib.parse import parse_qs, urlparse

import httpx
import ldap3
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client

from tests.fixtures.http import sign_in
from tests.fixtures.portal import free_port, local_agents, make_portal, wait_for

pytestmark = pytest.mark.integration

REDIRECT_URI = "http://127.0.0.1:9/callback"  # nothing listens: the test reads the redirect itself


def kv(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


class Directory:
    """The test bed's AD as its administrator: people join, leave and are disabled."""

    def __init__(self, ad) -> None:
        self.ad = ad
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ad.ca_file)
        server = ldap3.Server(ad.ldaps_url, use_ssl=True, tls=tls, get_info=ldap3.NONE)
        self.conn = ldap3.Connection(server, user=ad.admin_upn, password=ad.admin_password, auto_bind=True)

    def dn(self, sam: str) -> str:
        return f"CN={sam},CN=Users,{self.ad.base_dn}"

    def hire(self, sam: str, password: str) -> str:
        upn = f"{sam}@{self.ad.upn_suffix}"
        assert self.conn.add(self.dn(sam), ["top", "person", "organizationalPerson", "user"], {
            "sAMAccountName": sam, "userPrincipalName": upn, "displayName": sam.title(),
            "unicodePwd": f'"{password}"'.encode("utf-16-le"), "userAccountControl": "512"}), self.conn.result
        return upn

    def leave(self, sam: str) -> None:
        assert self.conn.delete(self.dn(sam)), self.conn.result

    def disable(self, sam: str) -> None:
        assert self.conn.modify(self.dn(sam), {"userAccountControl": [(ldap3.MODIFY_REPLACE, ["514"])]})

    def close(self) -> None:
        self.conn.unbind()


@pytest.fixture(scope="module")
def site(ad_testbed):
    portal = make_portal("embedded")
    directory = Directory(ad_testbed)
    try:
        port = free_port()
        node = portal.start_node("web", port=port, env={"PTA_PUBLIC_URL": f"http://127.0.0.1:{port}"})
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        config, result = portal.agent_register(
            node, portal.agent_token(tenant), ldap_urls=(ad_testbed.ldaps_url,),
            extra=portal.directory_options(ad_testbed, service_account=True))
        assert result.returncode == 0, result.stderr
        portal.agent_run(config)
        wait_for(lambda: local_agents(node) == 1, timeout=10, message="the agent to connect")
        app = kv(portal.manage("app_register", "--tenant", tenant, "--name", "Web app",
                               "--redirect-uri", REDIRECT_URI).stdout)
        yield {"portal": portal, "node": node, "tenant": tenant, "app": app, "directory": directory}
    finally:
        directory.close()
        portal.close()


def tokens_for(site, upn: str, password: str, *, scope: str = "openid profile") -> dict:
    """The code flow with PKCE as a browser and a server-side application would run it."""
    node, app = site["node"], site["app"]
    meta = httpx.get(f"{node.url}/.well-known/openid-configuration", timeout=10).json()
    client = OAuth2Client(app["client_id"], app["client_secret"], redirect_uri=REDIRECT_URI, scope=scope,
                          code_challenge_method="S256", timeout=20)
    verifier = generate_token(48)
    url, _ = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier,
                                             nonce=generate_token(20))
    with httpx.Client(base_url=node.url, follow_redirects=False, timeout=20) as browser:
        login = urlparse(browser.get(url).headers["location"])
        next_url = parse_qs(login.query)["next"][0]
        attempt = sign_in(node.url, upn, password, next_url=next_url, client=browser)
        assert attempt.outcome == "success", attempt.text[:300]
        location = browser.get(next_url).headers["location"]
    assert location.startswith(REDIRECT_URI + "?code="), location
    return client.fetch_token(meta["token_endpoint"], authorization_response=location, code_verifier=verifier)


def id_token_claims(token: dict) -> dict:
    """The ID token's payload, as the application that received it reads it (its signature is the client's to check:
    authlib's conformance tests do)."""
    payload = token["id_token"].split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def subject(token: dict) -> str:
    return id_token_claims(token)["sub"]


def userinfo(site, token: dict) -> httpx.Response:
    return httpx.get(f"{site['node'].url}/userinfo/", timeout=10,
                     headers={"Authorization": f"Bearer {token['access_token']}"})


def refresh(site, token: dict) -> httpx.Response:
    app = site["app"]
    return httpx.post(f"{site['node'].url}/token/", timeout=20, auth=(app["client_id"], app["client_secret"]),
                      data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})


def test_a_new_hire_with_a_leavers_upn_is_another_subject_and_the_leavers_tokens_die(site):
    directory, sam = site["directory"], f"ivy{secrets.token_hex(3)}"
    upn = directory.hire(sam, "Leaver!Pa55-word")
    leaver = tokens_for(site, upn, "Leaver!Pa55-word")
    assert userinfo(site, leaver).json()["sub"] == subject(leaver)
    directory.leave(sam)
    directory.hire(sam, "NewHire!Pa55-word")
    hire = tokens_for(site, upn, "NewHire!Pa55-word")
    assert subject(hire) != subject(leaver)
    assert userinfo(site, hire).json()["sub"] == subject(hire)
    # The leaver's access token and refresh token are refused: nothing of theirs reaches the new person.
    assert userinfo(site, leaver).status_code == 401
    answer = refresh(site, leaver)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    # The subject is opaque: neither the database id nor anything derived from the UPN.
    assert upn.split("@")[0] not in subject(hire) and not subject(hire).isdigit()


def test_a_user_disabled_in_ad_loses_their_tokens_at_their_next_sign_in_attempt(site):
    directory, sam = site["directory"], f"dan{secrets.token_hex(3)}"
    upn = directory.hire(sam, "Quitter!Pa55-word")
    token = tokens_for(site, upn, "Quitter!Pa55-word")
    renewed = refresh(site, token)
    assert renewed.status_code == 200, renewed.text
    token = renewed.json()
    directory.disable(sam)
    assert sign_in(site["node"].url, upn, "Quitter!Pa55-word").outcome == "account_disabled"
    assert userinfo(site, token).status_code == 401
    assert refresh(site, token).status_code == 400


def test_where_the_tenant_asks_the_directory_a_refresh_is_refused_at_once(site):
    portal, directory, sam = site["portal"], site["directory"], f"ray{secrets.token_hex(3)}"
    portal.manage("tenant_policy", site["tenant"], "--refresh-check", "on")
    try:
        upn = directory.hire(sam, "Refresh!Pa55-word")
        token = tokens_for(site, upn, "Refresh!Pa55-word")
        started = time.monotonic()
        renewed = refresh(site, token)
        elapsed = time.monotonic() - started
        assert renewed.status_code == 200, renewed.text
        assert elapsed < 5, "the check answers within the sign-in deadline"
        directory.disable(sam)  # no sign-in attempt: the refresh itself asks
        answer = refresh(site, renewed.json())
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
        assert userinfo(site, renewed.json()).status_code == 401  # the user is inactive now
    finally:
        portal.manage("tenant_policy", site["tenant"], "--refresh-check", "off")
