"""Smart lockout under a burst (docs/SECURITY.md, finding 4): production profile, two Daphne nodes, a real
pta-agent on the Samba DC. Fifty simultaneous wrong guesses for one user, spread over both nodes: at most the
tenant's threshold reach AD, and AD's own account stays unlocked."""

from __future__ import annotations

import ssl

import ldap3
import pytest

from tests.fixtures.http import password_page, submit_at_once
from tests.fixtures.portal import local_agents, make_portal, node_metric, start_agent, wait_for

pytestmark = pytest.mark.integration

GUESSES = 50


def directory_connection(ad, user: str, password: str) -> ldap3.Connection:
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ad.ca_file)
    server = ldap3.Server(ad.ldaps_url, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=5)
    # Bytes, as the agent sends them (ldap3 takes both; types-ldap3 says str only).
    return ldap3.Connection(server, user=user, password=password.encode(), raise_exceptions=False)  # type: ignore[arg-type]


def bad_password_count(ad, dn: str) -> int:
    """AD's own count of wrong passwords for the account (read as the domain administrator)."""
    with directory_connection(ad, ad.admin_upn, ad.admin_password) as conn:
        conn.search(dn, "(objectClass=user)", search_scope=ldap3.BASE, attributes=["badPwdCount"])
        return int(conn.entries[0].badPwdCount.value or 0)


@pytest.fixture
def two_nodes(ad_testbed):
    # The lockout record alone, as after an upgrade's period (during it, the previous release's keys too: the same
    # test passed so, and tests/signin/test_lockout_upgrade.py plays the two releases against each other).
    portal = make_portal("production", timings={"PTA_LOCKOUT_UPGRADE_SECONDS": "0"})
    try:
        first, second = portal.start_node("node1"), portal.start_node("node2")
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        start_agent(portal, first, tenant, ad_testbed)
        wait_for(lambda: local_agents(first) == 1, timeout=15, message="the agent to connect to node1")
        yield portal, first, second
    finally:
        portal.close()


def test_a_burst_of_wrong_guesses_cannot_lock_the_ad_account(two_nodes, ad_testbed, own_ad_user):
    portal, first, second = two_nodes
    victim = own_ad_user
    # A right password first: AD's count starts at zero, and the agent's connection to the DC is warm.
    with directory_connection(ad_testbed, victim["upn"], victim["password"]) as conn:
        assert conn.bound
    assert bad_password_count(ad_testbed, victim["dn"]) == 0
    threshold = 5  # the tenant's default

    pages = [password_page((first if i % 2 else second).url, victim["upn"]) for i in range(GUESSES)]
    answers = [answer for answer, _ in submit_at_once(pages, [f"Wrong-guess-{i}" for i in range(GUESSES)])]

    outcomes = [a.outcome for a in answers]
    assert all(a.status == 200 for a in answers), [a.status for a in answers]
    assert set(outcomes) <= {"invalid_credentials", "cloud_locked"}, outcomes
    reached_ad = portal.sql("SELECT count(*) FROM signin_signinevent WHERE username = %s AND ad_subcode <> ''",
                            (victim["upn"],))[0][0]
    assert 1 <= reached_ad <= threshold, outcomes
    assert outcomes.count("invalid_credentials") == reached_ad
    assert outcomes.count("cloud_locked") == GUESSES - reached_ad
    # Both nodes took guesses; whichever node a guess reached, the one count held.
    assert node_metric(second, 'pta_signin_total{channel="web",outcome="cloud_locked"}') > 0
    assert node_metric(first, 'pta_signin_total{channel="web",outcome="cloud_locked"}') > 0
    # AD saw only those guesses, and its account is not locked: the right password binds.
    assert bad_password_count(ad_testbed, victim["dn"]) == reached_ad < ad_testbed.lockout_threshold
    with directory_connection(ad_testbed, victim["upn"], victim["password"]) as conn:
        assert conn.bound, conn.result
