"""The Monday-morning rush (agents/queue.py): many people submit their password at the same moment and one agent
serves them all. Sign-ins that find the agent busy wait for a slot, first come first served, within their
deadline: none is refused while the agent is connected. Real Daphne, pta-agent and Samba DC; the people are
directory accounts this test creates."""

from __future__ import annotations

import concurrent.futures
import secrets
import ssl

import ldap3
import pytest

from tests.fixtures.http import PasswordPage, password_page, submit_at_once
from tests.fixtures.portal import local_agents, make_portal, start_agent, wait_for

pytestmark = pytest.mark.integration

PEOPLE = 100
PASSWORD = "Monday!Morning-9"


@pytest.fixture(scope="module")
def people(ad_testbed):
    """PEOPLE directory accounts, removed afterwards."""
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ad_testbed.ca_file)
    server = ldap3.Server(ad_testbed.ldaps_url, use_ssl=True, tls=tls, get_info=ldap3.NONE)
    conn = ldap3.Connection(server, user=ad_testbed.admin_upn, password=ad_testbed.admin_password, auto_bind=True)
    prefix = f"rush{secrets.token_hex(2)}"
    made = []
    try:
        for i in range(PEOPLE):
            sam = f"{prefix}-{i}"
            dn = f"CN={sam},CN=Users,{ad_testbed.base_dn}"
            assert conn.add(dn, ["top", "person", "organizationalPerson", "user"], {
                "sAMAccountName": sam, "userPrincipalName": f"{sam}@{ad_testbed.upn_suffix}",
                "unicodePwd": f'"{PASSWORD}"'.encode("utf-16-le"), "userAccountControl": "512"}), conn.result
            made.append(dn)
        yield [f"{prefix}-{i}@{ad_testbed.upn_suffix}" for i in range(PEOPLE)]
    finally:
        for dn in made:
            conn.delete(dn)
        conn.unbind()


# The sign-in deadline of this portal: long enough for one agent to serve 500 binds on a busy two-core machine
# (the suite's other workers share it), so that what is tested is the queue (none refused, all signed in within
# their deadline), not how fast the machine is.
DEADLINE_SECONDS = 30


@pytest.fixture(scope="module")
def site(ad_testbed, people):
    portal = make_portal("embedded", timings={"PTA_SIGNIN_DEADLINE_SECONDS": str(DEADLINE_SECONDS)})
    try:
        node = portal.start_node("web")
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        agent = start_agent(portal, node, tenant, ad_testbed)
        wait_for(lambda: local_agents(node) == 1, timeout=10, message="the agent to connect")
        yield portal, node, agent
    finally:
        portal.close()


@pytest.mark.parametrize("submissions", [100, 500])
def test_a_rush_of_good_passwords_is_queued_and_all_signed_in(site, people, submissions):
    portal, node, _ = site
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        pages = list(pool.map(lambda i: password_page(node.url, people[i % PEOPLE]), range(submissions)))
        pages = list(pool.map(PasswordPage.reopened, pages))
    answers = submit_at_once(pages, [PASSWORD] * submissions)
    outcomes: dict[str | None, int] = {}
    for answer, _ in answers:
        outcomes[answer.outcome] = outcomes.get(answer.outcome, 0) + 1
    assert outcomes == {"success": submissions}, outcomes
    slowest = max(took for _, took in answers)
    assert slowest < DEADLINE_SECONDS + 2, f"slowest answer {slowest:.1f} s"  # the sign-in deadline, plus HTTP
    waited = portal.sql("SELECT count(*), max(queued_ms) FROM signin_signinevent WHERE queued_ms > 0")[0]
    assert waited[0] > 0, "the agent was never full: the rush did not test the queue"
