"""Who may use which application, end to end (docs/oidc.md, "Who may use an application"): the Samba DC, a real
pta-agent reading the user's groups, a live Daphne, Authlib as the relying party.

- An application assigned to group A (A holds B holds the user) admits a member of B, through the pages and the
  code flow; a user in neither is signed in to the portal but gets a page that names no group, and the
  application gets access_denied with iss on its redirect URI.
- A name typed before any sign-in reported the group is matched at the first sign-in that does.
- The password grant refuses a non-member (access_denied, app_not_assigned).
- A member taken out of B is refused at the next sign-in.
"""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client

from tests.fixtures.directory_admin import DirectoryAdmin
from tests.fixtures.http import sign_in
from tests.fixtures.portal import free_port, local_agents, make_portal, wait_for
from tests.integration.test_groups import PASSWORD, REDIRECT_URI, kv, register_agent

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site(ad_testbed):
    portal = make_portal("embedded")
    directory = DirectoryAdmin(ad_testbed)
    try:
        port = free_port()
        node = portal.start_node("web", port=port, env={"PTA_PUBLIC_URL": f"http://127.0.0.1:{port}"})
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        register_agent(portal, node, tenant, ad_testbed)
        wait_for(lambda: local_agents(node) == 1, timeout=10, message="the agent to connect")
        portal.manage("tenant_policy", tenant, "--password-grant", "on", "--helpdesk-contact", "help@contoso.test")
        yield {"portal": portal, "node": node, "tenant": tenant, "directory": directory}
    finally:
        directory.close()
        portal.close()


@pytest.fixture
def people(site):
    """A holds B holds the member; the outsider is in neither. The application is assigned A by name, before any
    sign-in reported it (pending)."""
    directory, portal = site["directory"], site["portal"]
    member, outsider = directory.unique("am"), directory.unique("ao")
    inner, outer = directory.unique("aB"), directory.unique("aA")
    found = {"member": member, "member_upn": directory.add_user(member, PASSWORD),
             "outsider_upn": directory.add_user(outsider, PASSWORD), "inner": inner, "outer": outer}
    directory.add_group(inner, member)
    directory.add_group(outer, inner)
    found["app"] = kv(portal.manage("app_register", "--tenant", site["tenant"], "--name", "Payroll",
                                    "--redirect-uri", REDIRECT_URI, "--assign-group", outer).stdout)
    return found


def authorize(site, app: dict, upn: str):
    """Authlib's authorization request, the sign-in pages, then the authorize endpoint again: its answer."""
    node = site["node"]
    meta = httpx.get(f"{node.url}/.well-known/openid-configuration", timeout=10).json()
    client = OAuth2Client(app["client_id"], app["client_secret"], redirect_uri=REDIRECT_URI, scope="openid",
                          code_challenge_method="S256", timeout=20)
    verifier = generate_token(48)
    url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier,
                                                 nonce=generate_token(20))
    browser = httpx.Client(base_url=node.url, follow_redirects=False, timeout=20)
    next_url = parse_qs(urlparse(browser.get(url).headers["location"]).query)["next"][0]
    attempt = sign_in(node.url, upn, PASSWORD, next_url=next_url, client=browser)
    assert attempt.outcome == "success", attempt.text[:300]  # the portal's own sign-in succeeds either way
    answer = browser.get(next_url)
    return {"answer": answer, "client": client, "meta": meta, "verifier": verifier, "state": state,
            "browser": browser}


def test_a_nested_member_gets_a_code_and_a_stranger_a_page_and_access_denied_with_iss(site, people):
    portal, app = site["portal"], people["app"]
    assert kv(portal.manage("app_access", app["client_id"]).stdout)["assigned_groups"] == f"{people['outer']} (pending)"
    flow = authorize(site, app, people["member_upn"])
    location = flow["answer"].headers["location"]
    assert location.startswith(REDIRECT_URI + "?code="), location
    token = flow["client"].fetch_token(flow["meta"]["token_endpoint"], authorization_response=location,
                                       code_verifier=flow["verifier"])
    assert token["id_token"]
    # The member's sign-in reported A (through B): the pending name is that group now.
    assert kv(portal.manage("app_access", app["client_id"]).stdout)["assigned_groups"] == people["outer"]

    refused = authorize(site, app, people["outsider_upn"])
    page = refused["answer"]
    assert page.status_code == 403 and page.headers["PTA-Outcome"] == "app_not_assigned"
    assert "access to this application" in page.text and "help@contoso.test" in page.text
    assert people["outer"] not in page.text and people["inner"] not in page.text
    link = re.search(r'id="back-to-application" href="([^"]+)"', page.text)
    assert link, page.text[:500]
    back = html.unescape(link.group(1))
    assert back.startswith(REDIRECT_URI + "?")
    answer = parse_qs(urlparse(back).query)
    assert answer["error"] == ["access_denied"] and "code" not in answer
    assert answer["state"] == [refused["state"]] and answer["iss"] == [refused["meta"]["issuer"]]
    assert refused["browser"].get("/login/done/").status_code == 200  # signed in to the portal all the same
    rows = portal.sql("SELECT outcome, channel FROM signin_signinevent WHERE username = %s ORDER BY id",
                      (people["outsider_upn"],))
    assert rows[-2:] == [("success", "web"), ("app_not_assigned", "web")]


def test_the_password_grant_refuses_a_stranger(site, people):
    portal = site["portal"]
    legacy = kv(portal.manage("app_register", "--tenant", site["tenant"], "--name", "Legacy", "--grant", "password",
                              "--assign-group", people["outer"]).stdout)

    def grant(upn: str):
        return httpx.post(f"{site['node'].url}/token/", timeout=20, auth=(legacy["client_id"],
                                                                          legacy["client_secret"]),
                          data={"grant_type": "password", "username": upn, "password": PASSWORD, "scope": "openid"})

    refused = grant(people["outsider_upn"])
    assert refused.status_code == 403, refused.text
    assert (refused.json()["error"], refused.json()["outcome"]) == ("access_denied", "app_not_assigned")
    assert people["outer"] not in refused.text
    allowed = grant(people["member_upn"])  # its first sign-in: the pending name is matched on the way
    assert allowed.status_code == 200, allowed.text


def test_a_member_taken_out_of_the_group_is_refused_at_the_next_sign_in(site, people):
    app = people["app"]
    assert authorize(site, app, people["member_upn"])["answer"].status_code == 302
    site["directory"].remove_member(people["inner"], people["member"])
    again = authorize(site, app, people["member_upn"])["answer"]
    assert again.status_code == 403 and again.headers["PTA-Outcome"] == "app_not_assigned"
