"""The agent connection with real processes on the production profile: Daphne nodes, PostgreSQL, Redis, and
the agent as a hand-driven WebSocket client (RawAgent) and as the real `pta-agent` program.

Getting into the renewal window: registration issues a 180-day certificate, so the test moves
``agents_agent.certificate_not_after`` into the last 30 days in the database (Portal.sql); the portal decides
renewal from that column, and the certificate itself stays valid for the handshake.
"""

import datetime
import json
import time
from typing import Any

import httpx
import pta_protocol as protocol
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.fixtures.portal import RawAgent, make_portal, wait_for

pytestmark = pytest.mark.integration
CloseCode = protocol.CloseCode
DOMAIN = "corp.example.test"


@pytest.fixture(scope="module")
def module_portal():
    """One production portal for the module's tests (its database, tenant "Corp" and node "a"): each test registers
    agents of its own, so they need no portal of their own, only what they start stopped after them."""
    portal: Any = make_portal("production")  # with the module's tenant and node as attributes
    try:
        portal.tenant = portal.tenant_create("Corp", DOMAIN)
        portal.node = portal.start_node("a")
        yield portal
    finally:
        portal.close()


@pytest.fixture
def portal(module_portal):
    portal = module_portal
    nodes, agents = len(portal.nodes), len(portal.agents)
    if not portal.node.running:  # a test killed it and failed before its restart
        portal.node.start()
    yield portal
    for agent in portal.agents[agents:]:  # what this test started, stopped before the next test
        agent.stop(kill=True)
    for node in portal.nodes[nodes:]:
        node.stop(kill=True)
    del portal.agents[agents:], portal.nodes[nodes:]


def raw_agent(portal, name: str = "raw") -> RawAgent:
    return RawAgent.register(portal.node, portal.agent_token(portal.tenant), name=name)


def last_seen(portal, agent_id: str):
    return portal.sql("SELECT last_seen FROM agents_agent WHERE id = %s", (portal.db_uuid(agent_id),))[0][0]


def closed(agent: RawAgent, timeout: float = 5) -> int | None:
    """Read until the portal closes; the close code."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = agent.next(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(answer, int) or answer is None:
            return answer
    return None


# --- the handshake and presence, with a raw client ------------------------------------------------------


def test_raw_agent_connects_and_is_present(portal):
    agent = raw_agent(portal)
    started = time.monotonic()
    welcome = agent.connect(portal.node)
    handshake = time.monotonic() - started
    assert isinstance(welcome, protocol.Welcome) and welcome.agent_id == agent.agent_id
    assert welcome.heartbeat_seconds == 1 and welcome.renew is False
    record = wait_for(lambda: portal.presence(agent.agent_id), timeout=2, message="presence")
    assert record["node_id"] == "a" and record["domains"] == [DOMAIN]
    print(f"handshake over loopback: {handshake * 1000:.1f} ms")
    agent.close()
    wait_for(lambda: portal.presence(agent.agent_id) is None, timeout=2, message="presence withdrawn")


def test_heartbeats_refresh_presence_and_last_seen(portal):
    agent = raw_agent(portal)
    agent.connect(portal.node)
    portal.sql("UPDATE agents_agent SET last_seen = NULL WHERE id = %s", (agent.agent_id,))
    first = wait_for(lambda: portal.presence(agent.agent_id), timeout=2, message="presence")
    for n in range(4):
        agent.send(protocol.Heartbeat(version="raw", in_flight=0, capacity=4, dc_reachable=n % 2 == 0))
        time.sleep(0.5)
    record = wait_for(lambda: (r := portal.presence(agent.agent_id)) and r["last_beat"] > first["last_beat"] and r,
                      timeout=2, message="a newer beat in presence")
    assert record["capacity"] == 4
    wait_for(lambda: last_seen(portal, agent.agent_id), timeout=3, message="last_seen written")
    agent.close()


def test_an_agent_on_node_a_is_seen_from_node_b(portal):
    node_b = portal.start_node("b")
    agent = raw_agent(portal)
    agent.connect(portal.node)
    code = (
        "import asyncio, json\n"
        "from agents.selectors import agents_connected\n"
        f"found = asyncio.run(agents_connected(tenant_id={tenant_id(portal)!r}, domain={DOMAIN!r}))\n"
        "print(json.dumps([[a.agent_id, a.node_id, a.local] for a in found]))\n"
    )
    # A process of its own (a "node c" with the same settings) asks the presence registry.
    found = json.loads(portal.manage("shell", "-c", code).stdout.strip().splitlines()[-1])
    assert [agent.agent_id, "a", False] in found  # the module's other tests may have agents of their own
    # And node B itself, through the same Redis: its own registry reads the record node A wrote.
    assert node_b.running
    agent.close()


def tenant_id(portal) -> str:
    return str(portal.sql("SELECT id FROM tenant_tenant WHERE slug = %s", (portal.tenant,))[0][0])


def test_expired_revoked_forged_and_foreign_certificates_are_refused(portal):
    agent = raw_agent(portal)
    # A forged signature: the nonce signed by another key.
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert agent.connect(portal.node, signature=protocol.sign_challenge(other_key, "x" * 44)) == CloseCode.BAD_SIGNATURE

    # A certificate from another tenant's CA, for this agent's own key.
    other_tenant = portal.tenant_create("Other", "other.example.test")
    other = RawAgent.register(portal.node, portal.agent_token(other_tenant), name="other")
    assert other.connect(portal.node, certificate_pem=agent.certificate_pem) == CloseCode.BAD_SIGNATURE
    assert agent.connect(portal.node, certificate_pem=other.certificate_pem) == CloseCode.BAD_SIGNATURE
    foreign, serial = foreign_certificate(portal, other_tenant, agent)
    assert agent.connect(portal.node, certificate_pem=foreign) == CloseCode.UNKNOWN_CERTIFICATE
    portal.sql("UPDATE agents_agent SET certificate_serial = %s WHERE id = %s", (serial, agent.agent_id))

    # Expired: the portal's record of the certificate says so.
    portal.sql("UPDATE agents_agent SET certificate_not_after = %s WHERE id = %s",
               (datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1), agent.agent_id))
    assert agent.connect(portal.node) == CloseCode.CERTIFICATE_EXPIRED
    portal.sql("UPDATE agents_agent SET certificate_not_after = %s WHERE id = %s",
               (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=100), agent.agent_id))
    assert isinstance(agent.connect(portal.node), protocol.Welcome)
    agent.close()

    # Revoked.
    portal.agent_revoke(agent.agent_id)
    assert agent.connect(portal.node) == CloseCode.REVOKED


def foreign_certificate(portal, other_tenant: str, agent: RawAgent) -> tuple[str, str]:
    """A certificate for the agent's key, signed by another tenant's CA with the agent's serial (portal code),
    and the serial the agent had registered."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "foreign")]))
           .sign(agent.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    serial = portal.sql("SELECT certificate_serial FROM agents_agent WHERE id = %s", (agent.agent_id,))[0][0]
    code = (
        "import sys, uuid\n"
        "from cryptography import x509\n"
        "from cryptography.hazmat.primitives import serialization\n"
        "from agents.services import authority\n"
        "from tenant.models import Tenant\n"
        "csr = x509.load_pem_x509_csr(sys.stdin.read().encode())\n"
        f"tenant = Tenant.objects.get(slug={other_tenant!r})\n"
        "cert = authority.certificate_issue(tenant=tenant, agent_id=uuid.uuid4(), agent_name='foreign', csr=csr)\n"
        "print(cert.public_bytes(serialization.Encoding.PEM).decode())\n"
    )
    import subprocess
    import sys

    from tests.fixtures.portal import REPO_ROOT

    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], input=csr, cwd=REPO_ROOT,
                            env=portal.env, capture_output=True, text=True, timeout=60, check=True)
    pem = result.stdout[result.stdout.index("-----BEGIN CERTIFICATE-----"):]
    # Give the foreign certificate the registered serial so only the issuing CA differs.
    cert = x509.load_pem_x509_certificate(pem.encode())
    portal.sql("UPDATE agents_agent SET certificate_serial = %s WHERE id = %s",
               (format(cert.serial_number, "x"), agent.agent_id))
    return pem, serial


def test_reused_token_is_refused(portal):
    token = portal.agent_token(portal.tenant)
    RawAgent.register(portal.node, token, name="first")
    with pytest.raises(httpx.HTTPStatusError) as refused:
        RawAgent.register(portal.node, token, name="second")
    assert refused.value.response.status_code == 403


def test_revocation_closes_the_connection_on_another_node_within_a_second(portal):
    node_b = portal.start_node("b")
    agent = raw_agent(portal)
    assert isinstance(agent.connect(node_b), protocol.Welcome)
    started = time.monotonic()
    portal.agent_revoke(agent.agent_id)  # a separate process: reaches node B through Redis pub/sub
    revoked_at = time.monotonic()
    assert closed(agent, timeout=1.5) == CloseCode.REVOKED
    assert time.monotonic() - revoked_at < 1, "closed more than a second after the command returned"
    print(f"revocation command + close: {time.monotonic() - started:.2f} s")
    assert portal.presence(agent.agent_id) is None
    assert agent.connect(portal.node) == CloseCode.REVOKED


def test_renewal_gives_a_new_certificate_and_the_old_key_is_refused(portal):
    agent = raw_agent(portal)
    portal.sql("UPDATE agents_agent SET certificate_not_after = %s WHERE id = %s",
               (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=10), agent.agent_id))
    welcome = agent.connect(portal.node)
    assert welcome.renew is True and isinstance(agent.next(), protocol.Renew)
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "renewed")]))
           .sign(new_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    agent.send(protocol.Renewal(csr=csr, signature=protocol.sign_renewal(agent.key, csr)))
    renewed = agent.next()
    assert isinstance(renewed, protocol.Renewed)
    assert closed(agent) == CloseCode.RENEWED
    assert agent.connect(portal.node) == CloseCode.UNKNOWN_CERTIFICATE  # the old key and certificate
    agent.key, agent.certificate_pem = new_key, renewed.certificate
    welcome = agent.connect(portal.node)
    assert isinstance(welcome, protocol.Welcome) and welcome.renew is False
    agent.close()


BAD_FRAMES = {
    "garbage": ("garbage", "malformed"),
    "unknown-type": ('{"type": "nope"}', "unknown_type"),
    "second-hello": ('{"type": "hello", "certificate": "", "signature": ""}', "out_of_order"),
    "portal-frame": ('{"type": "renewed", "certificate": ""}', "out_of_order"),
    "over-max-frame": ("x" * (protocol.MAX_FRAME_BYTES + 1), "too_large"),
    "just-under-1-mib": ("x" * (1024 * 1024 - 100), "too_large"),
}


@pytest.mark.parametrize("kind", list(BAD_FRAMES))
def test_bad_frames_get_error_frames_and_the_connection_stays(portal, kind):
    payload, code = BAD_FRAMES[kind]
    agent = raw_agent(portal)
    agent.connect(portal.node)
    for _ in range(3):
        agent.connection.send(payload)
        error = agent.next()
        assert isinstance(error, protocol.Error) and error.code == code
    agent.send(protocol.Heartbeat())
    agent.connection.ping().wait(2)
    assert portal.presence(agent.agent_id) is not None
    agent.close()


def test_frame_over_one_mebibyte_ends_that_connection_only(portal):
    # Daphne 4.2.3 hands autobahn maxMessagePayloadSize=1 MiB; autobahn fails the connection with 1009 but,
    # with its default failByDrop=True, by dropping TCP: the client sees 1006, never a 1009 close frame.
    bystander = raw_agent(portal, "bystander")
    assert isinstance(bystander.connect(portal.node), protocol.Welcome)
    agent = raw_agent(portal)
    agent.connect(portal.node)
    agent.connection.send("x" * (1024 * 1024 + 1))
    assert closed(agent) in (1006, 1009)
    wait_for(lambda: portal.presence(agent.agent_id) is None, timeout=2, message="presence withdrawn")
    assert isinstance(agent.connect(portal.node), protocol.Welcome)  # the agent may come straight back
    bystander.send(protocol.Heartbeat())
    bystander.connection.ping().wait(2)
    assert portal.presence(bystander.agent_id) is not None
    agent.close()
    bystander.close()


def test_out_of_order_before_hello_then_hello_works(portal):
    agent = raw_agent(portal)
    agent.connect(portal.node, hello=False)
    agent.send(protocol.Heartbeat())
    assert agent.next().code == "out_of_order"
    agent.send(protocol.Ack(request_id="x"))
    assert agent.next().code == "out_of_order"
    agent.send(protocol.Hello(certificate=agent.certificate_pem,
                              signature=protocol.sign_challenge(agent.key, agent.nonce)))
    assert isinstance(agent.next(), protocol.Welcome)
    agent.close()


def test_silence_before_hello_closes_with_handshake_timeout(production_portal):
    node = production_portal.start_node("t", env={"PTA_AGENT_HANDSHAKE_SECONDS": "0.5"})
    production_portal.tenant = production_portal.tenant_create("Corp", DOMAIN)
    agent = RawAgent.register(node, production_portal.agent_token(production_portal.tenant))
    agent.connect(node, hello=False)
    assert closed(agent, timeout=3) == CloseCode.HANDSHAKE_TIMEOUT


def test_a_peer_that_opens_connections_and_never_says_hello_is_held_to_its_share(portal):
    """Through a real Daphne node: the openings one address may hold are bounded (PTA_AGENT_OPENINGS_PER_ADDRESS);
    beyond them the node closes the connection with TRY_LATER before its challenge, and once the peer's silent
    connections go an agent from the same address is welcomed. (A silent connection making room for an agent:
    tests/agents/test_consumer.py.)"""
    node = portal.start_node("door", env={"PTA_AGENT_OPENINGS_PER_ADDRESS": "2", "PTA_AGENT_SILENT_SECONDS": "30"})
    silent = [connect(node.ws_url, open_timeout=10, close_timeout=2) for _ in range(2)]
    for ws in silent:
        assert isinstance(protocol.decode(ws.recv(timeout=5)), protocol.Challenge)
    late = RawAgent("", None, "")  # type: ignore[arg-type]
    late.ws = connect(node.ws_url, open_timeout=10, close_timeout=2)
    assert late.next(timeout=5) == CloseCode.TRY_LATER
    for ws in silent:
        ws.close()
    agent = RawAgent.register(node, portal.agent_token(portal.tenant), name="after-the-squatter")

    def welcomed():
        try:
            return agent.connect(node)
        except (AssertionError, ConnectionClosed):  # the node has not yet seen the silent connections go
            return None

    assert isinstance(wait_for(welcomed, timeout=10, interval=0.2, message="a welcome"), protocol.Welcome)
    agent.close()


# --- the real agent program (pta-agent register / run) ----------------------------------------------------


def registered_agent(portal, node=None, *, name: str = "agent"):
    node = node or portal.node
    config, result = portal.agent_register(node, portal.agent_token(portal.tenant), name=name)
    assert result.returncode == 0, result.stderr
    return config


def test_pta_agent_registers_runs_and_is_present_within_two_seconds(portal):
    config = registered_agent(portal)
    started = time.monotonic()
    agent = portal.agent_run(config)
    record = wait_for(lambda: portal.presence(agent.agent_id), timeout=2, message=lambda: f"presence\n{agent.log()}")
    print(f"pta-agent start to present: {time.monotonic() - started:.2f} s")
    assert record["node_id"] == "a" and record["domains"] == [DOMAIN]
    portal.sql("UPDATE agents_agent SET last_seen = NULL WHERE id = %s", (agent.agent_id,))
    first = record["last_beat"]
    wait_for(lambda: (r := portal.presence(agent.agent_id)) and r["last_beat"] > first, timeout=3,
             message="a heartbeat in presence")
    wait_for(lambda: last_seen(portal, agent.agent_id), timeout=3, message="last_seen written")
    assert agent.stop() == 0  # SIGTERM: clean exit
    wait_for(lambda: portal.presence(agent.agent_id) is None, timeout=2, message="presence withdrawn")


def test_pta_agent_with_a_reused_token_is_refused(portal):
    token = portal.agent_token(portal.tenant)
    _, first = portal.agent_register(portal.node, token, name="first")
    assert first.returncode == 0, first.stderr
    _, second = portal.agent_register(portal.node, token, name="second")
    assert second.returncode != 0


def test_pta_agent_reconnects_after_daphne_is_killed_and_restarted(portal):
    agent = portal.agent_run(registered_agent(portal))
    wait_for(lambda: portal.presence(agent.agent_id), timeout=2, message="presence")
    portal.node.stop(kill=True)
    with portal.redis() as client:  # as after a crash: the dead node's record would linger until its TTL
        client.delete(f"{portal.redis_prefix}:presence:agent:{agent.agent_id}")
    time.sleep(2)
    portal.node.start()
    restarted = time.monotonic()
    wait_for(lambda: portal.presence(agent.agent_id), timeout=10, message=lambda: f"reconnect\n{agent.log()}")
    print(f"reconnected {time.monotonic() - restarted:.2f} s after the restart")
    assert agent.running


def test_pta_agent_is_present_again_after_a_redis_restart(portal_factory, redis_server):
    portal = portal_factory("production", redis_url=redis_server.url)
    portal.tenant = portal.tenant_create("Corp", DOMAIN)
    portal.node = portal.start_node("a")
    agent = portal.agent_run(registered_agent(portal))
    wait_for(lambda: portal.presence(agent.agent_id), timeout=2, message="presence")
    redis_server.restart()  # an empty Redis: every presence record and subscription is gone
    restarted = time.monotonic()
    wait_for(lambda: portal.presence(agent.agent_id), timeout=10,
             message=lambda: f"presence again\n{portal.node.log()}")
    print(f"present again {time.monotonic() - restarted:.2f} s after the Redis restart")
    # The revocation group subscription came back too: revoking still closes the connection at once.
    portal.agent_revoke(agent.agent_id)
    assert agent.wait(timeout=3) == 3
    assert agent.running is False


@pytest.mark.parametrize("how", ["command", "admin-service"])
def test_revoked_pta_agent_is_disconnected_within_a_second_and_exits_3(portal, how):
    node_b = portal.start_node("b")
    agent = portal.agent_run(registered_agent(portal, node_b))
    wait_for(lambda: portal.presence(agent.agent_id), timeout=2, message="presence")
    if how == "command":
        portal.agent_revoke(agent.agent_id)
    else:  # what the admin action calls, with the acting user, from a process that is not node B
        code = ("from agents.models import Agent\n"
                "from agents.services.lifecycle import agent_revoke\n"
                "from tenant.models import User\n"
                "admin = User.objects.create_superuser('root@corp.example.test', 'x')\n"
                f"agent_revoke(agent=Agent.objects.get(pk={agent.agent_id!r}), by=admin)\n")
        portal.manage("shell", "-c", code)
    revoked = time.monotonic()
    wait_for(lambda: "revoked" in agent.log(), timeout=1, message="the agent told it is revoked")
    assert time.monotonic() - revoked < 1
    assert agent.wait(timeout=5) == 3
    assert portal.presence(agent.agent_id) is None
    again = portal.agent_run(agent.config_path)
    assert again.wait(timeout=10) == 3  # refused on reconnect: REVOKED is final


def test_pta_agent_renews_in_the_window_and_the_old_key_is_refused(portal):
    config = registered_agent(portal)
    directory = config.parent
    old_files = {p.name: p.read_bytes() for p in directory.iterdir() if p.suffix in (".pem", ".key", ".crt")}
    agent_id = portal.agent_run(config).agent_id
    portal.agents[-1].stop()
    portal.sql("UPDATE agents_agent SET certificate_not_after = %s WHERE id = %s",
               (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=10), agent_id))
    old_fingerprint = portal.sql("SELECT key_fingerprint FROM agents_agent WHERE id = %s", (agent_id,))[0][0]
    agent = portal.agent_run(config)
    wait_for(lambda: portal.sql("SELECT key_fingerprint FROM agents_agent WHERE id = %s", (agent_id,))[0][0]
             != old_fingerprint, timeout=10, message=lambda: f"renewal\n{agent.log()}")
    wait_for(lambda: portal.presence(agent_id), timeout=5, message="reconnected with the new key")
    new_files = {p.name: p.read_bytes() for p in directory.iterdir() if p.name in old_files}
    assert any(new_files[name] != content for name, content in old_files.items()), "key files unchanged"
    not_after = portal.sql("SELECT certificate_not_after FROM agents_agent WHERE id = %s", (agent_id,))[0][0]
    assert not_after > datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=170)
    agent.stop()
    # The old key and certificate, as a copy of the old files would present them.
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key_file = next(n for n in old_files if b"PRIVATE KEY" in old_files[n])
    cert_file = next(n for n in old_files if b"BEGIN CERTIFICATE" in old_files[n]
                     and x509.load_pem_x509_certificate(old_files[n]).issuer != x509.load_pem_x509_certificate(
                         old_files[n]).subject)
    old_key = load_pem_private_key(old_files[key_file], None)
    assert isinstance(old_key, rsa.RSAPrivateKey)
    old = RawAgent(agent_id, old_key, old_files[cert_file].decode())
    assert old.connect(portal.node) == CloseCode.UNKNOWN_CERTIFICATE


def test_pta_agent_keeps_one_steady_connection(portal):
    """Beats on one connection: the presence record keeps its channel (no reconnect churn)."""
    agent = portal.agent_run(registered_agent(portal))
    first = wait_for(lambda: portal.presence(agent.agent_id), timeout=2, message="presence")
    time.sleep(2.5)
    again = portal.presence(agent.agent_id)
    assert again["channel_name"] == first["channel_name"] and agent.running


def test_embedded_profile_connects_and_a_revocation_from_another_process_still_ends_the_agent(embedded_portal):
    """Embedded: in-memory channel layer, so `manage.py agent_revoke` (another process) cannot reach the Daphne
    process; the node's presence keeper sees the revocation in the database within PTA_LAST_SEEN_SECONDS
    (30 s by default, 1 s here) and closes with REVOKED."""
    portal = embedded_portal
    portal.tenant = portal.tenant_create("Corp", DOMAIN)
    portal.node = portal.start_node("solo")
    agent = portal.agent_run(registered_agent(portal))
    wait_for(lambda: "connected to" in agent.log(), timeout=5, message=lambda: f"connected\n{agent.log()}")
    wait_for(lambda: last_seen(portal, agent.agent_id), timeout=3, message="last_seen written")
    portal.agent_revoke(agent.agent_id)
    assert agent.wait(timeout=5) == 3
