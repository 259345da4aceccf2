"""Access by network and per-application MFA end to end: a real Daphne node behind a proxy (the test client
plays it: PTA_TRUSTED_PROXIES=127.0.0.1, so the client is the X-Forwarded-For it sends), a real pta-agent on the
Samba AD DC, a real Authlib client. A blocked location is refused before any agent is asked (the agent's log and
AD's own count of wrong passwords show nothing arrived) and before cloud lockout counts the guess; the
"untrusted" policy asks for the second factor outside the trusted locations; an application that requires MFA
gets no code before it, also with prompt=none (interaction_required)."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client

from tests.fixtures.http import found, sign_in
from tests.fixtures.portal import free_port, local_agents, make_portal, start_agent, wait_for
from tests.integration.test_lockout_burst import bad_password_count
from tests.integration.test_oidc import (
    _CSRF,
    _OUTCOME,
    _SECRET,
    REDIRECT_URI,
    authorize_url,
    code_of,
    kv,
    totp_code,
    verify_id_token,
)

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def site(ad_testbed):
    portal = make_portal("embedded")
    try:
        port = free_port()
        node = portal.start_node("web", port=port, env={"PTA_PUBLIC_URL": f"http://127.0.0.1:{port}",
                                                        "PTA_TRUSTED_PROXIES": "127.0.0.1"})
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        agent = start_agent(portal, node, tenant, ad_testbed)
        wait_for(lambda: local_agents(node) == 1, timeout=10, message="the agent to connect")
        payroll = kv(portal.manage("app_register", "--tenant", tenant, "--name", "Payroll", "--redirect-uri",
                                   REDIRECT_URI, "--require-mfa", "on").stdout)
        wiki = kv(portal.manage("app_register", "--tenant", tenant, "--name", "Wiki", "--redirect-uri",
                                REDIRECT_URI).stdout)
        yield {"portal": portal, "node": node, "tenant": tenant, "agent": agent, "payroll": payroll, "wiki": wiki}
    finally:
        portal.close()


def browser(site, client_address: str) -> httpx.Client:
    """A browser whose every request reaches the portal through its trusted proxy, from ``client_address``."""
    return httpx.Client(base_url=site["node"].url, follow_redirects=False, timeout=20,
                        headers={"X-Forwarded-For": client_address})


def location(site, *args: str) -> str:
    return site["portal"].manage("tenant_location", site["tenant"], *args).stdout


def test_a_blocked_location_is_refused_before_any_agent_and_before_lockout(site, ad_testbed, own_ad_user):
    """The agent logs no line per request (it silences its WebSocket library's frame log on purpose), so the
    witnesses are the sign-in records (no agent, no agent time) and the DC itself: every wrong password an agent
    is given is a failed bind, which AD counts (badPwdCount); the blocked ones leave that count alone."""
    portal, node = site["portal"], site["node"]
    user = own_ad_user
    with browser(site, "192.0.2.10") as web:  # a sign-in the agent serves: the DC's count starts at zero
        assert sign_in(node.url, user["upn"], user["password"], client=web).outcome == "success"
    assert bad_password_count(ad_testbed, user["dn"]) == 0

    assert location(site, "--name", "Guest wifi", "--range", "198.51.100.0/24", "--range", "2001:db8:bad::/48",
                    "--blocked") == "Guest wifi\tblocked\t198.51.100.0/24 2001:db8:bad::/48\n"
    outcomes = []
    for address in ("198.51.100.7", "2001:db8:bad::7"):
        for password in [f"Wrong-{i}" for i in range(6)] + [user["password"]]:
            with browser(site, address) as web:
                attempt = sign_in(node.url, user["upn"], password, client=web)
                outcomes.append(attempt.outcome)
                assert 'data-outcome="location_blocked"' in attempt.text
                assert "network or location" in attempt.text and "198.51.100" not in attempt.text
                assert web.get("/login/done/").status_code == 302  # nobody signed in
    assert outcomes == ["location_blocked"] * 14
    assert bad_password_count(ad_testbed, user["dn"]) == 0  # twelve wrong passwords, none reached AD
    rows = portal.sql("SELECT location, location_kind, agent_id, agent_ms, ip_address FROM signin_signinevent "
                      "WHERE outcome = 'location_blocked'")
    assert len(rows) == 14 and {r[:4] for r in rows} == {("Guest wifi", "blocked", None, None)}
    assert {str(r[4]) for r in rows} == {"198.51.100.7", "2001:db8:bad::7"}
    # What a client writes on the left of the chain is never believed: the hop the proxy saw decides.
    with browser(site, "198.51.100.7, 192.0.2.10") as web:
        assert sign_in(node.url, user["upn"], "Wrong-through-HQ", client=web).outcome == "invalid_credentials"
    assert bad_password_count(ad_testbed, user["dn"]) == 1  # the witness works: that one reached AD

    # Twelve wrong passwords were refused and none counted: with the location gone, three more wrong ones from
    # there (the threshold is five) leave the cloud account open, and the right password signs in.
    assert location(site, "--remove", "Guest wifi") == ""
    for i in range(3):
        with browser(site, "198.51.100.7") as web:
            assert sign_in(node.url, user["upn"], f"Again-{i}", client=web).outcome == "invalid_credentials"
    with browser(site, "198.51.100.7") as web:
        assert sign_in(node.url, user["upn"], user["password"], client=web).outcome == "success"


def test_untrusted_policy_asks_for_the_second_factor_outside_trusted_locations(site, ad_testbed):
    portal, node = site["portal"], site["node"]
    user = ad_testbed.user("bob")
    portal.manage("tenant_policy", site["tenant"], "--mfa", "untrusted")
    location(site, "--name", "HQ", "--range", "192.0.2.0/24", "--range", "2001:db8:a::/48", "--trusted")
    try:
        for address, expected in (("192.0.2.20", "success"), ("2001:db8:a::20", "success"),
                                  ("203.0.113.20", "mfa_required"), ("198.51.100.20, 192.0.2.21", "success")):
            with browser(site, address) as web:
                assert sign_in(node.url, user["upn"], user["password"], client=web).outcome == expected, address
        rows = portal.sql("SELECT location, mfa_reason FROM signin_signinevent WHERE username = %s ORDER BY id",
                          (user["upn"],))
        assert rows == [("HQ", "trusted_location")] * 2 + [("", "untrusted_location"), ("HQ", "trusted_location")]
    finally:
        portal.manage("tenant_policy", site["tenant"], "--mfa", "off")
        location(site, "--remove", "HQ")


def rp_client(app: dict) -> OAuth2Client:
    return OAuth2Client(app["client_id"], app["client_secret"], redirect_uri=REDIRECT_URI, scope="openid profile",
                        code_challenge_method="S256", timeout=20)


def test_an_application_that_requires_mfa_gets_no_code_before_the_second_factor(site, ad_testbed):
    portal, node = site["portal"], site["node"]
    user = ad_testbed.user("judy")
    oidc = {"node": node}
    with browser(site, "192.0.2.30") as web:
        # The tenant's policy is off: the wiki's sign-in is the password alone.
        wiki = rp_client(site["wiki"])
        url, _, _ = authorize_url(oidc, wiki)
        to_login = web.get(url)
        next_url = parse_qs(urlparse(to_login.headers["location"]).query)["next"][0]
        assert sign_in(node.url, user["upn"], user["password"], next_url=next_url, client=web).outcome == "success"
        code_of(web.get(next_url))

        # Payroll requires MFA. Silently (prompt=none): interaction_required, to the application.
        payroll = rp_client(site["payroll"])
        url, verifier, nonce = authorize_url(oidc, payroll)
        silent = web.get(url + "&prompt=none")
        answer = parse_qs(urlparse(silent.headers["location"]).query)
        assert silent.headers["location"].startswith(REDIRECT_URI)
        assert answer["error"] == ["interaction_required"] and "code" not in answer
        # Not silently: through the sign-in pages, which now ask for the second factor, and then a code.
        again = web.get(url)
        assert again.status_code == 302 and urlparse(again.headers["location"]).path == "/login/"
        next_url = parse_qs(urlparse(again.headers["location"]).query)["next"][0]
        attempt = sign_in(node.url, user["upn"], user["password"], next_url=next_url, client=web)
        assert attempt.outcome == "mfa_required"
        assert urlparse(web.get(next_url).headers["location"]).path == "/login/"  # the password alone: no code
        page = web.get("/login/mfa/enrol/")
        done = web.post("/login/mfa/enrol/", data={"otp": totp_code(found(_SECRET, page.text)),
                                                   "csrfmiddlewaretoken": found(_CSRF, page.text)})
        assert found(_OUTCOME, done.text) == "success"
        redirect = code_of(web.get(next_url))
    token = payroll.fetch_token(f"{node.url}/token/", authorization_response=redirect, code_verifier=verifier)
    claims = verify_id_token(oidc, token["id_token"], site["payroll"]["client_id"], nonce)
    assert claims["upn"] == user["upn"].lower()
    payroll_id = portal.sql("SELECT id FROM applications_application WHERE client_id = %s",
                            (site["payroll"]["client_id"],))[0][0]
    rows = portal.sql("SELECT mfa_decision, mfa_reason, mfa_result, application_id FROM signin_signinevent "
                      "WHERE username = %s ORDER BY id", (user["upn"],))
    assert rows[-1] == ("required", "application_requires_mfa", "success", payroll_id)


def test_app_access_turns_the_rule_on_for_the_next_sign_in(site, ad_testbed):
    portal, node = site["portal"], site["node"]
    user = ad_testbed.user("alice")
    client_id = site["wiki"]["client_id"]
    shown = kv(portal.manage("app_access", client_id).stdout)
    assert shown == {"client_id": client_id, "name": "Wiki", "tenant": site["tenant"], "assignment_required": "off",
                     "assigned_groups": "", "assigned_users": "", "require_mfa": "off",
                     "phishing_resistant": "off"}
    assert kv(portal.manage("app_access", client_id, "--require-mfa", "on").stdout)["require_mfa"] == "on"
    try:
        with browser(site, "192.0.2.40") as web:
            url, _, _ = authorize_url({"node": node}, rp_client(site["wiki"]))
            next_url = parse_qs(urlparse(web.get(url).headers["location"]).query)["next"][0]
            assert sign_in(node.url, user["upn"], user["password"], next_url=next_url,
                           client=web).outcome == "mfa_required"
            assert urlparse(web.get(next_url).headers["location"]).path == "/login/"
    finally:
        portal.manage("app_access", client_id, "--require-mfa", "off")
    refused = portal.manage("app_access", str(uuid.uuid4()), check=False)
    assert refused.returncode != 0 and "No application with client_id" in refused.stderr
