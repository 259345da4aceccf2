"""Directory groups end to end (docs/oidc.md, "Groups"): the Samba DC, a real pta-agent (with a service account),
a live Daphne and Authlib as the relying party.

- Nested groups count (A holds B holds the user: both), and a user taken out of B loses both at the next sign-in,
  and at the next refresh where the tenant asks the directory on each one.
- The `groups` claim comes with the scope `groups` only, in the ID token and at /userinfo/.
- A user in 200 groups: the ID token's size, and the overage marker past the application's limit.
- An agent that does not read groups (as an older one) still signs in; the user's groups are then absent, and the
  stored state says why (the console shows it: tests/tenant/test_directory_groups.py).
"""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.directory_admin import DirectoryAdmin
from tests.fixtures.portal import free_port, local_agents, make_portal, wait_for
from tests.integration.test_oidc_identity import REDIRECT_URI, id_token_claims
from tests.integration.test_oidc_identity import tokens_for as code_flow_tokens

pytestmark = pytest.mark.integration

PASSWORD = "Gr0ups!Pa55-word"


def kv(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def register_agent(portal, node, tenant, ad, *, groups: bool = True):
    config, result = portal.agent_register(node, portal.agent_token(tenant), ldap_urls=(ad.ldaps_url,),
                                           extra=portal.directory_options(ad, service_account=True))
    assert result.returncode == 0, result.stderr
    if not groups:  # as an agent of before groups: it announces no "groups" capability
        text = config.read_text()
        assert "\ngroups = true\n" in text  # `pta-agent register` writes the default out
        config.write_text(text.replace("\ngroups = true\n", "\ngroups = false\n", 1))
    return portal.agent_run(config)


@pytest.fixture(scope="module")
def site(ad_testbed):
    portal = make_portal("embedded")
    directory = DirectoryAdmin(ad_testbed)
    try:
        port = free_port()
        node = portal.start_node("web", port=port, env={"PTA_PUBLIC_URL": f"http://127.0.0.1:{port}"})
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        agent = register_agent(portal, node, tenant, ad_testbed)
        wait_for(lambda: local_agents(node) == 1, timeout=10, message="the agent to connect")
        app = kv(portal.manage("app_register", "--tenant", tenant, "--name", "Web app",
                               "--redirect-uri", REDIRECT_URI).stdout)
        yield {"portal": portal, "node": node, "tenant": tenant, "app": app, "directory": directory, "agent": agent,
               "ad": ad_testbed}
    finally:
        directory.close()
        portal.close()


def tokens_for(site, upn: str, *, scope: str = "openid groups") -> dict:
    return code_flow_tokens(site, upn, PASSWORD, scope=scope)


def userinfo(site, token: dict) -> dict:
    answer = httpx.get(f"{site['node'].url}/userinfo/", timeout=10,
                       headers={"Authorization": f"Bearer {token['access_token']}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def groups_state(site, upn: str) -> str:
    return site["portal"].sql("SELECT groups_state FROM tenant_user WHERE upn = %s", (upn,))[0][0]


@pytest.fixture
def nested(site):
    """A holds B holds the user."""
    directory = site["directory"]
    user, inner, outer = directory.unique("gu"), directory.unique("gB"), directory.unique("gA")
    upn = directory.add_user(user, PASSWORD)
    directory.add_group(inner, user)
    directory.add_group(outer, inner)
    return {"user": user, "upn": upn, "inner": inner, "outer": outer}


def test_nested_groups_reach_the_token_and_a_removal_drops_both_at_the_next_sign_in(site, nested):
    token = tokens_for(site, nested["upn"])
    assert {nested["inner"], nested["outer"], "Domain Users"} <= set(id_token_claims(token)["groups"])
    assert set(userinfo(site, token)["groups"]) == set(id_token_claims(token)["groups"])
    assert groups_state(site, nested["upn"]) == "current"
    site["directory"].remove_member(nested["inner"], nested["user"])
    again = id_token_claims(tokens_for(site, nested["upn"]))
    assert not {nested["inner"], nested["outer"]} & set(again["groups"]) and "Domain Users" in again["groups"]


def test_the_claim_comes_with_the_scope_only_and_discovery_lists_both(site, nested):
    token = tokens_for(site, nested["upn"], scope="openid profile")
    assert "groups" not in id_token_claims(token) and "groups" not in userinfo(site, token)
    meta = httpx.get(f"{site['node'].url}/.well-known/openid-configuration", timeout=10).json()
    assert "groups" in meta["scopes_supported"]
    assert {"groups", "groups_overage"} <= set(meta["claims_supported"])


def test_a_refresh_with_the_directory_check_carries_the_current_groups(site, nested):
    portal = site["portal"]
    portal.manage("tenant_policy", site["tenant"], "--refresh-check", "on")
    try:
        token = tokens_for(site, nested["upn"])
        assert nested["outer"] in id_token_claims(token)["groups"]
        site["directory"].remove_member(nested["inner"], nested["user"])
        answer = httpx.post(f"{site['node'].url}/token/", timeout=20,
                            auth=(site["app"]["client_id"], site["app"]["client_secret"]),
                            data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
        assert answer.status_code == 200, answer.text
        refreshed = answer.json()
        assert not {nested["inner"], nested["outer"]} & set(id_token_claims(refreshed)["groups"])
        assert not {nested["inner"], nested["outer"]} & set(userinfo(site, refreshed)["groups"])
    finally:
        portal.manage("tenant_policy", site["tenant"], "--refresh-check", "off")


def test_two_hundred_groups_fit_a_header_and_past_the_limit_the_overage_marker_stands_in(site, record_property):
    directory, portal = site["directory"], site["portal"]
    user = directory.unique("gm")
    upn = directory.add_user(user, PASSWORD)
    for i in range(198):  # and Domain Users, and the builtin Users: 200
        directory.add_group(directory.unique(f"Team-{i:03d}-"), user)
    token = tokens_for(site, upn)
    assert len(id_token_claims(token)["groups"]) == 200
    size = len(token["id_token"])
    record_property("id_token_bytes_200_groups", size)
    print(f"ID token with 200 groups (names of 17 characters): {size} bytes")
    assert size < 8 * 1024, "an ID token with 200 group names must fit an 8 KB header and a 4 KB cookie pair"
    portal.sql("UPDATE applications_application SET groups_claim_limit = 150 WHERE client_id = %s",
               (site["app"]["client_id"],))
    try:
        over = tokens_for(site, upn)
        assert id_token_claims(over)["groups_overage"] is True and "groups" not in id_token_claims(over)
        assert userinfo(site, over)["groups_overage"] is True
    finally:
        portal.sql("UPDATE applications_application SET groups_claim_limit = 200 WHERE client_id = %s",
                   (site["app"]["client_id"],))


def test_an_agent_that_does_not_read_groups_still_signs_in_and_the_groups_are_absent_with_the_reason(site, nested):
    portal, node = site["portal"], site["node"]
    assert nested["outer"] in id_token_claims(tokens_for(site, nested["upn"]))["groups"]
    site["agent"].stop()
    wait_for(lambda: local_agents(node) == 0, timeout=15, message="the agent to go")
    older = register_agent(portal, node, site["tenant"], site["ad"], groups=False)
    try:
        try:
            wait_for(lambda: local_agents(node) == 1, timeout=10, message="the older agent to connect")
        except AssertionError:
            print(older.log())
            raise
        token = tokens_for(site, nested["upn"])
        assert "groups" not in id_token_claims(token) and "groups_overage" not in id_token_claims(token)
        assert groups_state(site, nested["upn"]) == "unsupported"
        assert portal.sql("SELECT COUNT(*) FROM tenant_directorygroupmembership m JOIN tenant_user u "
                          "ON u.id = m.user_id WHERE u.upn = %s", (nested["upn"],))[0][0] == 0
    finally:
        older.stop()
        wait_for(lambda: local_agents(node) == 0, timeout=15, message="the older agent to go")
        site["agent"] = register_agent(portal, node, site["tenant"], site["ad"])
        wait_for(lambda: local_agents(node) == 1, timeout=10, message="the agent to come back")
