"""End to end: the sign-in pages on a real Daphne, real pta-agent processes and the Samba AD DC."""

from __future__ import annotations

import re
import ssl
import subprocess
import time

import httpx
import ldap3
import pytest

from signin.outcomes import Outcome
from tests.fixtures.http import sign_in
from tests.fixtures.network import TcpRelay
from tests.fixtures.portal import local_agents, make_portal, node_metric, site_with_agent, start_agent, wait_for

pytestmark = pytest.mark.integration

EXPECTED = {
    "good": Outcome.SUCCESS,
    "disabled": Outcome.ACCOUNT_DISABLED,
    "account_expired": Outcome.ACCOUNT_EXPIRED,
    "must_change_password": Outcome.PASSWORD_MUST_CHANGE,
    "password_expired": Outcome.PASSWORD_EXPIRED,
    "logon_hours": Outcome.LOGON_HOURS,
    "locked_out": Outcome.ACCOUNT_LOCKED,
}


@pytest.fixture(scope="module")
def site(ad_testbed):
    """One embedded portal: tenant corp.example.test with one agent on the real DC."""
    with site_with_agent(ad_testbed) as site:
        yield site


@pytest.mark.parametrize("state", sorted(EXPECTED))
def test_every_directory_state_ends_with_its_outcome(site, ad_testbed, state):
    _, node, _, _ = site
    for name, user in ad_testbed.users_in_state(state).items():
        attempt = sign_in(node.url, user["upn"], user["password"])
        expected = EXPECTED[state]
        assert attempt.outcome == expected.value, f"{name}: {attempt.status} {attempt.text[:300]}"
        if expected is Outcome.SUCCESS:
            assert attempt.status == 302
        else:
            assert attempt.status == 200
            assert expected.message.replace("'", "&#x27;") in attempt.text


def test_wrong_password_is_invalid_credentials_and_recorded(site, ad_testbed):
    portal, node, _, _ = site
    user = ad_testbed.user("bob")
    attempt = sign_in(node.url, user["upn"], "not-" + user["password"])
    assert attempt.outcome == Outcome.INVALID_CREDENTIALS.value
    assert "Your account or password is incorrect." in attempt.text
    rows = portal.sql("SELECT outcome, ad_subcode, agent_id FROM signin_signinevent WHERE username = %s "
                      "ORDER BY id DESC LIMIT 1", (user["upn"],))
    assert rows[0][0] == "invalid_credentials" and rows[0][1] == "52e" and rows[0][2]
    assert sign_in(node.url, user["upn"], user["password"]).outcome == "success"  # resets AD's bad count


def test_success_creates_the_user_just_in_time(site, ad_testbed):
    portal, node, _, _ = site
    user = ad_testbed.user("ivan")
    with httpx.Client(base_url=node.url, follow_redirects=False, timeout=20) as client:
        attempt = sign_in(node.url, user["upn"], user["password"], client=client)
        assert attempt.status == 302 and attempt.location == "/login/done/"
        done = client.get("/login/done/")
        assert 'data-outcome="success"' in done.text and user["display_name"] in done.text
    rows = portal.sql("SELECT display_name, email, immutable_id, source FROM tenant_user WHERE upn = %s",
                      (user["upn"],))
    assert rows[0][0] == user["display_name"] and rows[0][1] == user["mail"]
    assert re.fullmatch(r"[0-9a-f-]{36}", rows[0][2]) and rows[0][3] == "on-premises"


def test_a_domain_no_tenant_verified_is_answered_without_an_agent(site):
    portal, node, _, _ = site
    for username in ("someone@unknown.example", "alice@corp.exаmple.test"):  # the second has a Cyrillic а
        attempt = sign_in(node.url, username, "whatever")
        # As a cloud account's wrong password would be: nothing tells whether such an account exists.
        assert attempt.outcome == Outcome.INVALID_CREDENTIALS.value
        rows = portal.sql("SELECT outcome, agent_id, user_id FROM signin_signinevent WHERE username = %s",
                          (username,))
        assert rows == [("invalid_credentials", None, None)]


def test_next_is_honoured_only_for_local_destinations(site, ad_testbed):
    _, node, _, _ = site
    user = ad_testbed.user("judy")
    assert sign_in(node.url, user["upn"], user["password"], next_url="/admin/").location == "/admin/"
    for evil in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)", "/\\evil.example"):
        attempt = sign_in(node.url, user["upn"], user["password"], next_url=evil)
        assert attempt.location == "/login/done/", evil


HOSTILE_USERNAMES = [
    "*)(userPrincipalName=*", "alice*@corp.example.test", "*@corp.example.test", "alice)(|(a=*@corp.example.test",
    "al\x00ice@corp.example.test", "alice@corp.example.test\r\nX-Injected: 1", "a" * 65536 + "@corp.example.test",
    "\\2a@corp.example.test", "alice@corp.example.test\x00", "ａｌｉｃｅ\u200b@corp.example.test", "@corp.example.test",
    "alice@", "", " ", "<script>@corp.example.test", "alice@corp.example.test.",
]
HOSTILE_PASSWORDS = ["", " ", "*", "\x00", "Wonder!Land-2024\x00", "a" * 65536, "\r\n", "\u202e" + "x" * 10,
                     b"\xff\xfe\xc3(", "' OR '1'='1", "*)(objectClass=*"]


@pytest.mark.parametrize("username", HOSTILE_USERNAMES, ids=range(len(HOSTILE_USERNAMES)))
def test_hostile_usernames_get_a_clear_answer(site, username):
    _, node, _, _ = site
    attempt = sign_in(node.url, username, "Wonder!Land-2024")
    assert attempt.status < 500
    assert attempt.outcome != "success"
    assert attempt.status == 400 or attempt.outcome in {o.value for o in Outcome}


def test_a_full_width_name_is_the_account_it_spells(site, ad_testbed):
    # One spelling per account (signin/services/names.py): AD compares names ignoring width, and the agent is
    # sent the canonical name, so the full-width spelling is alice, in alice's lockout bucket.
    portal, node, _, _ = site
    user = ad_testbed.user("alice")
    typed = "ＡＬＩＣＥ＠corp.example.test"
    assert sign_in(node.url, typed, user["password"]).outcome == Outcome.SUCCESS.value
    rows = portal.sql("SELECT u.upn FROM signin_signinevent e JOIN tenant_user u ON u.id = e.user_id "
                      "WHERE e.username = %s", (typed,))
    assert rows == [(user["upn"].lower(),)]


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS, ids=range(len(HOSTILE_PASSWORDS)))
def test_hostile_passwords_get_a_clear_answer(site, ad_testbed, password):
    _, node, _, _ = site
    attempt = sign_in(node.url, ad_testbed.user("alice")["upn"], password)
    assert attempt.status < 500
    assert attempt.outcome in {Outcome.INVALID_CREDENTIALS.value, Outcome.CLOUD_LOCKED.value}


def direct_bind(ad, upn: str, password: str) -> bool:
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ad.ca_file)
    server = ldap3.Server(ad.ldaps_url, use_ssl=True, tls=tls, get_info=ldap3.NONE)
    # Bytes, as the agent sends them (ldap3 takes both; types-ldap3 says str only).
    connection = ldap3.Connection(server, user=upn, password=password.encode())  # type: ignore[arg-type]
    try:
        return connection.bind()
    finally:
        connection.unbind()


def test_cloud_lockout_comes_before_ad_lockout(site, ad_testbed):
    portal, node, _, _ = site
    user = ad_testbed.user("mallory")
    outcomes = [sign_in(node.url, user["upn"], f"wrong-{i}").outcome for i in range(5)]
    assert outcomes == ["invalid_credentials"] * 5
    # Locked in the cloud: even the right password is refused, and no agent is asked.
    agents_asked = portal.sql("SELECT COUNT(*) FROM signin_signinevent WHERE agent_id IS NOT NULL")[0][0]
    assert sign_in(node.url, user["upn"], user["password"]).outcome == Outcome.CLOUD_LOCKED.value
    assert portal.sql("SELECT COUNT(*) FROM signin_signinevent WHERE agent_id IS NOT NULL")[0][0] == agents_asked
    # AD's own threshold (10) was never reached: the account still binds directly.
    assert direct_bind(ad_testbed, user["upn"], user["password"])


def test_directory_down_is_directory_unavailable_not_a_wrong_password(ad_testbed):
    relay = TcpRelay((ad_testbed.host, 636))
    portal = make_portal("embedded")
    try:
        node = portal.start_node("dc-down")
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        start_agent(portal, node, tenant, ad_testbed, ldap_url=f"ldaps://127.0.0.1:{relay.port}")
        wait_for(lambda: local_agents(node) == 1, timeout=10, message="the agent to connect")
        user = ad_testbed.user("alice")
        assert sign_in(node.url, user["upn"], user["password"]).outcome == "success"
        relay.cut()  # the DC stops answering; the agent's pooled connection dies with it
        for password in (user["password"], "a wrong one"):
            attempt = sign_in(node.url, user["upn"], password)
            assert attempt.outcome == Outcome.DIRECTORY_UNAVAILABLE.value
            assert "can't reach your organisation's directory" in attempt.text.replace("&#x27;", "'")
        relay.restore()
        assert sign_in(node.url, user["upn"], user["password"]).outcome == "success"
    finally:
        portal.close()
        relay.close()


def test_no_agent_connected_answers_at_once(ad_testbed):
    portal = make_portal("embedded")
    try:
        node = portal.start_node("lonely")
        portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        started = time.monotonic()
        attempt = sign_in(node.url, ad_testbed.user("alice")["upn"], ad_testbed.user("alice")["password"])
        assert attempt.outcome == Outcome.NO_AGENT_AVAILABLE.value
        assert time.monotonic() - started < 1.0 + 0.5  # the page walk itself takes a few requests
    finally:
        portal.close()


def test_killing_one_of_two_agents_loses_nothing(ad_testbed):
    portal = make_portal("embedded")
    try:
        node = portal.start_node("pair")
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        first = start_agent(portal, node, tenant, ad_testbed, name="first")
        start_agent(portal, node, tenant, ad_testbed, name="second")
        wait_for(lambda: local_agents(node) == 2, timeout=10, message="both agents to connect")
        user = ad_testbed.user("alice")
        outcomes = []
        for i in range(12):
            if i == 4:
                first.stop(kill=True)
            outcomes.append(sign_in(node.url, user["upn"], user["password"]).outcome)
        assert outcomes == ["success"] * 12
    finally:
        portal.close()


def test_production_two_nodes_hand_off_across_nodes_and_leave_nothing_behind(ad_testbed, portal_factory):
    portal = portal_factory("production")
    node_a, node_b = portal.start_node("a"), portal.start_node("b")
    tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
    agent = start_agent(portal, node_a, tenant, ad_testbed)
    wait_for(lambda: local_agents(node_a) == 1 and portal.presence(agent.agent_id), timeout=10,
             message="the agent on node A")
    assert local_agents(node_b) == 0
    user = ad_testbed.user("bob")
    with portal.redis() as redis:
        def subscriptions() -> int:
            return len(redis.pubsub_channels(f"{portal.redis_prefix}*"))

        assert sign_in(node_b.url, user["upn"], user["password"]).outcome == "success"
        baseline = subscriptions()
        outcomes: dict[str | None, int] = {}
        with httpx.Client(base_url=node_b.url, timeout=20) as client:
            for i in range(200):
                password = user["password"] if i % 4 else "wrong-" + user["password"]
                attempt = sign_in(node_b.url, user["upn"], password, client=client)
                outcomes[attempt.outcome] = outcomes.get(attempt.outcome, 0) + 1
                if i % 4 == 0:  # keep the cloud lockout away: a success resets the failure count
                    sign_in(node_b.url, user["upn"], user["password"], client=client)
        assert set(outcomes) == {"success", "invalid_credentials"}, outcomes
        assert subscriptions() == baseline
    served = portal.sql("SELECT COUNT(*) FROM signin_signinevent WHERE agent_id = %s", (agent.agent_id,))[0][0]
    assert served >= 250
    assert node_metric(node_b, "pta_handoff_reply_waiters") == 0
    assert node_metric(node_a, f'pta_agent_in_flight{{agent="{agent.agent_id}"}}') == 0


def test_passwords_are_nowhere_after_sign_ins(ad_testbed, portal_factory):
    portal = portal_factory("production")
    node = portal.start_node("audit", env={"PTA_LOG_LEVEL": "DEBUG"})
    tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
    agent = start_agent(portal, node, tenant, ad_testbed)
    wait_for(lambda: local_agents(node) == 1, timeout=10, message="the agent")
    user = ad_testbed.user("judy")
    wrong = "Wrong-Pa55word-Marker-7731"
    assert sign_in(node.url, user["upn"], user["password"]).outcome == "success"
    assert sign_in(node.url, user["upn"], wrong).outcome == "invalid_credentials"
    assert sign_in(node.url, user["upn"], user["password"]).outcome == "success"
    secrets = [user["password"], wrong]
    dump = subprocess.run(["pg_dump", "--data-only", portal.env["DATABASE_URL"]], capture_output=True, text=True,
                          timeout=60, check=True).stdout
    assert "signin_signinevent" in dump and user["upn"] in dump  # the dump really holds the records
    import redis

    stored = []
    with redis.Redis.from_url(portal.redis_url, socket_timeout=5) as client:  # raw bytes: cache values are pickles
        for key in client.scan_iter(match="*", count=1000):
            kind = client.type(key)
            if kind == b"string":
                value = client.get(key)
            else:
                value = b"".join(client.zrange(key, 0, -1)) if kind == b"zset" else b""
            stored.append(key + b"=" + (value or b""))
    logs = node.log() + agent.log()
    for secret in secrets:
        for where, text in (("database dump", dump), ("logs", logs)):
            assert secret not in text, f"a password reached the {where}"
        assert not any(secret.encode() in item for item in stored), "a password reached Redis"
        assert not any(secret.encode("utf-16-le") in item for item in stored)


def test_an_agent_never_serves_another_tenants_sign_in(ad_testbed, portal_factory):
    """Tenant A's agent reaches the real DC; tenant B's domain is another one. B's users never reach A's agent."""
    portal = portal_factory("embedded")
    node = portal.start_node("tenants")
    tenant_a = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
    tenant_b = portal.tenant_create("Fabrikam", "fabrikam.example.test")
    agent_a = start_agent(portal, node, tenant_a, ad_testbed, name="agent-a")
    wait_for(lambda: local_agents(node) == 1, timeout=10, message="agent A")
    # B has no agent: its sign-ins must end as no_agent_available, never on A's agent.
    for _ in range(5):
        attempt = sign_in(node.url, "someone@fabrikam.example.test", "Pa55-word!")
        assert attempt.outcome == Outcome.NO_AGENT_AVAILABLE.value
    user = ad_testbed.user("alice")
    assert sign_in(node.url, user["upn"], user["password"]).outcome == "success"
    rows = portal.sql("SELECT t.slug, e.agent_id FROM signin_signinevent e JOIN tenant_tenant t ON t.id = e.tenant_id")
    by_tenant: dict[str, set[str | None]] = {}
    for slug, agent_id in rows:
        by_tenant.setdefault(slug, set()).add(agent_id)
    assert by_tenant[tenant_b] == {None}
    assert {str(a).replace("-", "") for a in by_tenant[tenant_a]} == {agent_a.agent_id.replace("-", "")}
