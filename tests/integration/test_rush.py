"""The Monday-morning rush (agents/queue.py): many people submit their password at the same moment and one agent
serves them all. Sign-ins that find the agent busy wait for a slot, first come first served, within their
deadline: none is refused while the agent is connected. Real Daphne, pta-agent and Samba DC; the people are
directory accounts this test creates."""

from __future__ import annotations

import concurrent.futures
import secrets
import ssl
import threading
import time

import httpx
import ldap3
import pytest

from tests.fixtures.http import _attempt, _csrf
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


@pytest.fixture(scope="module")
def site(ad_testbed, people):
    portal = make_portal("embedded")
    try:
        node = portal.start_node("web")
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        agent = start_agent(portal, node, tenant, ad_testbed)
        wait_for(lambda: local_agents(node) == 1, timeout=10, message="the agent to connect")
        yield portal, node, agent
    finally:
        portal.close()


def walk_to_password_page(node_url: str, username: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=node_url, follow_redirects=False, timeout=30)
    page = client.get("/login/")
    assert client.post("/login/", data={"username": username, "csrfmiddlewaretoken": _csrf(page)}).status_code == 302
    return client, _csrf(client.get("/login/password/"))


def fresh_connection(session: tuple[httpx.Client, str]) -> tuple[httpx.Client, str]:
    walked, _ = session
    client = httpx.Client(base_url=str(walked.base_url), cookies=walked.cookies, follow_redirects=False, timeout=30)
    walked.close()
    return client, _csrf(client.get("/login/password/"))


@pytest.mark.parametrize("submissions", [100, 500])
def test_a_rush_of_good_passwords_is_queued_and_all_signed_in(site, people, submissions):
    portal, node, _ = site
    # Walked in parallel, then each session on a fresh connection loads its password page: a connection idle
    # for a minute is closed by Daphne (Twisted's HTTP idle timeout), and the rush is about the password step.
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        walked = list(pool.map(lambda i: walk_to_password_page(node.url, people[i % PEOPLE]), range(submissions)))
        sessions = list(pool.map(fresh_connection, walked))
    start, answers, took = threading.Barrier(submissions), [None] * submissions, [0.0] * submissions

    def submit(i: int) -> None:
        client, token = sessions[i]
        start.wait()
        began = time.monotonic()
        answers[i] = _attempt(client.post("/login/password/", data={"password": PASSWORD,
                                                                    "csrfmiddlewaretoken": token}))
        took[i] = time.monotonic() - began

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(submissions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for client, _ in sessions:
        client.close()

    outcomes = {}
    for answer in answers:
        outcomes[answer.outcome] = outcomes.get(answer.outcome, 0) + 1
    assert outcomes == {"success": submissions}, outcomes
    assert max(took) < 10 + 2, f"slowest answer {max(took):.1f} s"  # the sign-in deadline, plus HTTP
    waited = portal.sql("SELECT count(*), max(queued_ms) FROM signin_signinevent WHERE queued_ms > 0")[0]
    assert waited[0] > 0, "the agent was never full: the rush did not test the queue"
