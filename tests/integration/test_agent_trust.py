"""An agent answers for the domains it serves, nothing more (docs/SECURITY.md, findings 2, 6 and 7).

A compromised agent is played by a real WebSocket client that registered like any agent (``RawAgent``) and
answers every request with a success naming whom it likes; the sign-ins go through the pages of a real Daphne.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

import httpx
import pta_protocol as protocol
import pytest

from tests.fixtures.http import found, sign_in
from tests.fixtures.portal import RawAgent, local_agents, make_portal, wait_for

pytestmark = pytest.mark.integration

DOMAIN_A, DOMAIN_B = "a.trust.example.test", "b.trust.example.test"
VICTIM_GUID = str(uuid.UUID(int=0x1234))


class ForgingAgent:
    """Acks every request, then answers ``success`` with whatever user ``forge`` returns for it (the agent's
    word), or holds the answer until ``release`` is set. Sends heartbeats like a real agent."""

    def __init__(self, raw: RawAgent) -> None:
        self.raw = raw
        self.forge = lambda request: {"upn": request.username, "object_guid": str(uuid.uuid4())}
        self.requests: list[protocol.Request] = []
        self.hold = threading.Event()
        self.release = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> ForgingAgent:
        self.thread.start()
        return self

    def _serve(self) -> None:
        next_beat = 0.0
        while not self.stopped.is_set():
            if time.monotonic() >= next_beat:
                self.raw.send(protocol.Heartbeat(version="raw", capacity=4))
                next_beat = time.monotonic() + 1
            try:
                frame = self.raw.next(timeout=0.2)
            except TimeoutError:
                continue
            if isinstance(frame, int):
                return  # closed by the portal
            if not isinstance(frame, protocol.Request):
                continue
            self.requests.append(frame)
            self.raw.send(protocol.Ack(request_id=frame.request_id))
            if self.hold.is_set():
                self.release.wait(15)
            self.raw.send(protocol.Result(request_id=frame.request_id, outcome="success", ad_subcode="",
                                          user=self.forge(frame)))

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        with contextlib.suppress(Exception):
            self.raw.close()


@pytest.fixture(scope="module")
def site():
    """An embedded portal: tenant Trust with two operator-verified domains, a cloud-only administrator in A, a
    directory user in B; a forging agent registered for domain A only. The revocation check is slowed so a
    test controls when a deleted agent's connection is noticed."""
    portal = make_portal("embedded", timings={"PTA_REVOCATION_CHECK_SECONDS": "60", "PTA_LAST_SEEN_SECONDS": "60"})
    forging = None
    try:
        node = portal.start_node("web")
        tenant = portal.tenant_create("Trust", DOMAIN_A, DOMAIN_B)
        portal.manage("shell", "-c", (
            "from tenant.models import Tenant, User\n"
            "from tenant.services import tenant_admin_create\n"
            f"t = Tenant.objects.get(slug='{tenant}')\n"
            f"tenant_admin_create(tenant=t, upn='admin@{DOMAIN_A}', password='Cl0ud-Adm1n-pa55')\n"
            f"u = User.objects.create_user('victim@{DOMAIN_B}', tenant=t)\n"
            f"User.objects.filter(pk=u.pk).update(immutable_id='{VICTIM_GUID}')\n"
        ))
        raw = RawAgent.register(node, portal.agent_token(tenant, DOMAIN_A), name="forging")
        assert isinstance(raw.connect(node), protocol.Welcome)
        forging = ForgingAgent(raw).start()
        wait_for(lambda: local_agents(node) == 1, timeout=10, message="the forging agent to be present")
        yield portal, node, tenant, forging
    finally:
        if forging is not None:
            forging.stop()
        portal.close()


@pytest.fixture
def agent(site):
    forging = site[3]
    original = forging.forge
    yield forging
    forging.forge = original


def signed_in(node, attempt_client: httpx.Client) -> bool:
    return attempt_client.get(f"{node.url}/login/done/").status_code == 200


def attack(site, forge, username=f"eve@{DOMAIN_A}"):
    portal, node, _, forging = site
    forging.forge = forge
    with httpx.Client(base_url=node.url, follow_redirects=False, timeout=20) as client:
        attempt = sign_in(node.url, username, "anything-at-all", client=client)
        return attempt, signed_in(node, client)


def test_an_honest_answer_signs_in(site, agent):
    attempt, logged_in = attack(site, agent.forge)
    assert attempt.outcome == "success" and logged_in, attempt.text[:300]
    assert agent.requests[-1].domain == DOMAIN_A


def test_a_user_of_a_domain_the_agent_does_not_serve_is_refused(site, agent):
    attempt, logged_in = attack(site, lambda r: {"upn": f"victim@{DOMAIN_B}", "object_guid": VICTIM_GUID})
    assert attempt.status == 200 and attempt.outcome == "identity_conflict", attempt.text[:300]
    assert not logged_in


def test_a_cloud_only_account_is_never_signed_in_by_a_directory_answer(site, agent):
    attempt, logged_in = attack(site, lambda r: {"upn": f"admin@{DOMAIN_A}", "object_guid": str(uuid.uuid4())})
    assert attempt.outcome == "identity_conflict" and not logged_in


def test_a_guid_never_moves_nor_renames_another_user(site, agent):
    portal = site[0]
    attempt, logged_in = attack(site, lambda r: {"upn": r.username, "object_guid": VICTIM_GUID},
                                username=f"mallet@{DOMAIN_A}")
    assert attempt.outcome == "identity_conflict" and not logged_in
    assert portal.sql("SELECT upn FROM tenant_user WHERE immutable_id = %s", (VICTIM_GUID,)) == [
        (f"victim@{DOMAIN_B}",)]


def test_a_squatted_upn_gets_a_definite_answer(site, agent):
    """A user of another tenant holding this tenant's UPN (data from before UPNs were checked) is a conflict
    the page explains, not a 500."""
    portal = site[0]
    portal.manage("shell", "-c", (
        "from tenant.models import User\n"
        "from tenant.services import tenant_create\n"
        "other = tenant_create(name='Squatter', domains=['squatter.example.test'])\n"
        f"User(upn='squatted@{DOMAIN_A}', tenant=other, source='on-premises').save()\n"
    ))
    attempt, logged_in = attack(site, agent.forge, username=f"squatted@{DOMAIN_A}")
    assert attempt.status == 200 and attempt.outcome == "identity_conflict" and not logged_in


def test_familiar_places_and_mfa_are_those_of_the_account_signed_in(site, agent):
    """Under the "unfamiliar" MFA policy, an address familiar to the name typed does not spare the second factor
    of another account the directory's answer signs in."""
    from tests.signin.test_mfa import totp_code

    portal, node, tenant, _ = site
    portal.manage("tenant_policy", tenant, "--mfa", "unfamiliar")
    try:
        mallet_guid = str(uuid.uuid4())
        agent.forge = lambda r: {"upn": f"mallet@{DOMAIN_A}", "object_guid": mallet_guid}
        with httpx.Client(base_url=node.url, follow_redirects=False, timeout=20) as client:
            assert sign_in(node.url, f"mallet@{DOMAIN_A}", "x", client=client).outcome == "mfa_required"
            page = client.get("/login/mfa/enrol/").text
            secret = found(r'id="totp-secret">([A-Z2-7]+)<', page)
            token = found(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
            done = client.post("/login/mfa/enrol/", data={"otp": totp_code(secret), "csrfmiddlewaretoken": token})
            assert 'data-outcome="success"' in done.text
        # This address is familiar to mallet now: mallet's next sign-in from it needs no second factor...
        attempt, _ = attack(site, agent.forge, username=f"mallet@{DOMAIN_A}")
        assert attempt.outcome == "success"
        # ...but the same typed name, answered as another account, is that account's first sign-in here.
        attempt, logged_in = attack(site, lambda r: {"upn": f"newcomer@{DOMAIN_A}", "object_guid": str(uuid.uuid4())},
                                    username=f"mallet@{DOMAIN_A}")
        assert attempt.outcome == "mfa_required" and not logged_in
    finally:
        portal.manage("tenant_policy", tenant, "--mfa", "off")


def test_a_late_answer_of_a_deleted_agent_is_recorded_without_error(site, agent):
    portal, node, _, forging = site
    forging.hold.set()
    forging.release.clear()
    result: dict = {}

    def sign_in_in_background():
        result["attempt"] = sign_in(node.url, f"late@{DOMAIN_A}", "anything-at-all")

    thread = threading.Thread(target=sign_in_in_background)
    count = len(forging.requests)
    thread.start()
    try:
        wait_for(lambda: len(forging.requests) > count, timeout=10, message="the request to reach the agent")
        # Deleted meanwhile (another node, or a direct change): its answer is already on the way.
        portal.sql("DELETE FROM agents_agent_domains WHERE agent_id = %s", (portal.db_uuid(forging.raw.agent_id),))
        portal.sql("DELETE FROM agents_agent WHERE id = %s", (portal.db_uuid(forging.raw.agent_id),))
    finally:
        forging.hold.clear()
        forging.release.set()
        thread.join(30)
    attempt = result["attempt"]
    assert attempt.status < 500, attempt.text[:500]
    rows = portal.sql("SELECT outcome, agent_id FROM signin_signinevent WHERE username = %s", (f"late@{DOMAIN_A}",))
    assert len(rows) == 1 and rows[0][1] is None


# --- an agent's rights follow the admin console at once, on every node (finding 7) ---------------------------

SPARE = "spare.trust.example.test"


def admin_session(node, upn: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=node.url, follow_redirects=False, timeout=20)
    attempt = sign_in(node.url, upn, password, next_url="/admin/", client=client)
    assert attempt.outcome == "success", attempt.text[:300]
    return client


def admin_post(client: httpx.Client, path: str, data: dict) -> httpx.Response:
    page = client.get(path)
    assert page.status_code == 200, page.text[:300]
    token = found(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    return client.post(path, data={"csrfmiddlewaretoken": token, **data})


def test_domain_removed_or_agent_deleted_reaches_the_live_connection_on_another_node(ad_testbed):
    portal = make_portal("production")
    try:
        holder, console = portal.start_node("node1"), portal.start_node("node2")
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix, SPARE)
        portal.manage("shell", "-c", (
            "from tenant.models import Tenant\nfrom tenant.services import tenant_admin_create\n"
            f"tenant_admin_create(tenant=Tenant.objects.get(slug='{tenant}'), upn='admin@{SPARE}', "
            "password='Cl0ud-Adm1n-pa55')\n"))
        from tests.fixtures.portal import start_agent

        agent = start_agent(portal, holder, tenant, ad_testbed)
        wait_for(lambda: local_agents(holder) == 1, timeout=15, message="the agent to connect to node1")
        alice = ad_testbed.user("alice")
        assert sign_in(console.url, alice["upn"], alice["password"]).outcome == "success"

        # The administrator, on the other node, takes the directory's domain away from the agent.
        admin = admin_session(console, f"admin@{SPARE}", "Cl0ud-Adm1n-pa55")
        spare_id = portal.sql("SELECT id FROM tenant_domain WHERE name = %s", (SPARE,))[0][0]
        path = f"/admin/agents/agent/{agent.agent_id}/change/"
        response = admin_post(admin, path, {"name": "agent", "domains": [str(spare_id)], "_save": "Save"})
        assert response.status_code == 302, response.text[:2000]
        # Within a second or two, not at the 30 s safety-net check: no agent serves the domain any more.
        wait_for(lambda: sign_in(console.url, alice["upn"], alice["password"]).outcome == "no_agent_available",
                 timeout=3, interval=0.2, message="the removed domain to stop reaching the agent")
        assert sign_in(holder.url, alice["upn"], alice["password"]).outcome == "no_agent_available"

        # Deleted: its connection closes as a revoked one's does, and pta-agent exits 3.
        response = admin_post(admin, f"/admin/agents/agent/{agent.agent_id}/delete/", {"post": "yes"})
        assert response.status_code == 302, response.text[:2000]
        assert agent.wait(timeout=5) == 3, agent.log()[-2000:]
        admin.close()
    finally:
        portal.close()
