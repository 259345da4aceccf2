"""The agent consumer's logic, over channels' in-memory test transport (no Daphne, embedded profile)."""

import asyncio
import dataclasses
import datetime
import time
import uuid

import pta_protocol as protocol
import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.db import connections
from django.utils import timezone

from agents.connections import OPENING_SCOPE_KEY, LocalConnection, OpeningAdmission, handshakes, local_agents, openings
from agents.consumers import AgentConsumer
from agents.handoff import AgentBusy, AgentDisconnected, AgentRequestError, AgentTimeout, AgentUnavailable, relay
from agents.handoff.messages import (
    NODE_PROTOCOL,
    RelayedAck,
    RelayedFailure,
    RelayedRequest,
    RelayedResult,
    reply_from_message,
)
from agents.handoff.relay import hand_over
from agents.models import Agent
from agents.presence import presence_close, presence_registry
from agents.routing import agent_websocket_application
from agents.selectors import agent_presence, agents_connected
from agents.services.authority import certificate_issue
from agents.services.lifecycle import agent_revoke
from config.proxy import scope_client_address

pytestmark = pytest.mark.django_db(transaction=True)
CloseCode = protocol.CloseCode
agent_socket = agent_websocket_application(address=scope_client_address)  # as config/asgi.py serves it


def pem(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


async def published(agent_id: str):
    """The agent's presence record once the consumer has published it: the welcome frame goes first, so a fast
    agent (this fake) can read its welcome before the record reaches Redis."""
    for _ in range(100):
        if (present := await agent_presence(agent_id=agent_id)) is not None:
            return present
        await asyncio.sleep(0.05)
    return None


def connection_of(agent_id: str) -> LocalConnection:
    """This process's connection of an agent the test has seen welcomed."""
    connection = local_agents.get(agent_id)
    assert connection is not None, f"agent {agent_id} has no connection in this process"
    return connection


class FakeAgent:
    """The agent's side of the protocol, over a WebsocketCommunicator."""

    def __init__(self, certificate_pem: str, key, *, client: str = "") -> None:
        """``client``: open through the node's door (config/asgi.py's agent socket) from that address; by default
        the consumer alone."""
        self.certificate_pem = certificate_pem
        self.key = key
        application = agent_socket if client else AgentConsumer.as_asgi()
        self.ws = WebsocketCommunicator(application, protocol.WEBSOCKET_PATH)
        if client:  # read by the application when it first runs, at connect()
            self.ws.scope["client"] = (client, 40000)

    async def open(self) -> str:
        connected, _ = await self.ws.connect(timeout=5)  # the connect hook reads the database: slow under load
        assert connected
        challenge = await self.frame()
        assert isinstance(challenge, protocol.Challenge)
        return challenge.nonce

    async def hello(self, *, nonce: str | None = None, signature: str | None = None, capacity: int = 10):
        nonce = nonce if nonce is not None else await self.open()
        await self.send(protocol.Hello(certificate=self.certificate_pem,
                                       signature=signature or protocol.sign_challenge(self.key, nonce),
                                       version="t", hostname="h", capacity=capacity))

    async def send(self, frame) -> None:
        await self.ws.send_to(text_data=protocol.encode(frame))

    async def output(self, timeout: float = 3) -> dict:
        return await self.ws.receive_output(timeout)

    async def frame(self, timeout: float = 3):
        message = await self.output(timeout)
        assert message["type"] == "websocket.send", message
        return protocol.decode(message["text"])

    async def expect_close(self, code: int, timeout: float = 3) -> None:
        message = await self.output(timeout)
        while message["type"] == "websocket.send":
            message = await self.output(timeout)
        assert message == {"type": "websocket.close", "code": code}

    async def welcomed(self) -> protocol.Welcome:
        await self.hello()
        welcome = await self.frame()
        assert isinstance(welcome, protocol.Welcome), welcome
        return welcome

    async def close(self) -> None:
        await self.ws.disconnect()


@pytest.fixture
def agent(tenant_a, agent_factory):
    agent, key = agent_factory(tenant_a)
    return agent, key


@pytest.fixture
def fake(agent):
    return FakeAgent(agent[0].certificate_pem, agent[1])


@pytest.fixture(autouse=True)
def fast_keeper(settings):
    settings.PTA_PRESENCE_FLUSH_SECONDS = 0.05
    settings.PTA_AGENT_HANDSHAKE_SECONDS = 10


@pytest.fixture(autouse=True)
async def release_connections():
    """Close what this test's loop opened: the database connection of the sync thread, the Redis client."""
    yield
    await database_sync_to_async(connections.close_all)()
    await presence_close()


def test_heartbeats_fit_inside_presence_expiry(settings):
    assert protocol.HEARTBEAT_SECONDS * 3 < protocol.PRESENCE_TTL_SECONDS
    assert settings.PTA_AGENT_HEARTBEAT_SECONDS * 3 < protocol.PRESENCE_TTL_SECONDS


async def test_handshake_welcomes_and_publishes_presence(agent, fake, tenant_a):
    welcome = await fake.welcomed()
    assert welcome.agent_id == str(agent[0].pk) and welcome.renew is False
    present = await published(welcome.agent_id)
    assert present is not None and present.tenant_id == str(tenant_a.pk)
    connected = await agents_connected(tenant_id=str(tenant_a.pk), domain="alpha.example.test")
    assert [c.agent_id for c in connected] == [welcome.agent_id] and connected[0].local
    assert await agents_connected(tenant_id=str(tenant_a.pk), domain="other.example.test") == []
    await fake.close()
    assert await agent_presence(agent_id=welcome.agent_id) is None
    assert local_agents.get(welcome.agent_id) is None


async def test_unknown_certificate_is_refused(tenant_a):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self-made")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    fake = FakeAgent(pem(cert), key)
    await fake.hello()
    await fake.expect_close(CloseCode.UNKNOWN_CERTIFICATE)


async def test_unreadable_certificate_is_refused(agent):
    fake = FakeAgent("not a certificate", agent[1])
    await fake.hello()
    await fake.expect_close(CloseCode.UNKNOWN_CERTIFICATE)


async def test_certificate_from_another_tenants_ca_is_refused(agent, tenant_b):
    registered, key = agent
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])).sign(key, hashes.SHA256()))
    foreign = await database_sync_to_async(certificate_issue)(tenant=tenant_b, agent_id=registered.pk,
                                                                agent_name="x", csr=csr)
    # Same key, same serial as the registered certificate: only the issuing CA differs.
    await database_sync_to_async(Agent.objects.filter(pk=registered.pk).update)(
        certificate_serial=format(foreign.serial_number, "x"))
    fake = FakeAgent(pem(foreign), key)
    await fake.hello()
    await fake.expect_close(CloseCode.UNKNOWN_CERTIFICATE)


async def test_bad_signature_is_refused(fake):
    nonce = await fake.open()
    await fake.hello(nonce=nonce, signature=protocol.sign_challenge(fake.key, nonce + "x"))
    await fake.expect_close(CloseCode.BAD_SIGNATURE)


async def test_signature_by_another_key_is_refused(fake):
    nonce = await fake.open()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    await fake.hello(nonce=nonce, signature=protocol.sign_challenge(other, nonce))
    await fake.expect_close(CloseCode.BAD_SIGNATURE)


async def test_revoked_agent_is_refused(agent, fake):
    await database_sync_to_async(Agent.objects.filter(pk=agent[0].pk).update)(revoked_at=timezone.now())
    await fake.hello()
    await fake.expect_close(CloseCode.REVOKED)


async def test_expired_certificate_is_refused(agent, fake):
    await database_sync_to_async(Agent.objects.filter(pk=agent[0].pk).update)(
        certificate_not_after=timezone.now() - datetime.timedelta(seconds=1))
    await fake.hello()
    await fake.expect_close(CloseCode.CERTIFICATE_EXPIRED)


async def test_no_hello_in_time_closes(fake, settings):
    settings.PTA_AGENT_HANDSHAKE_SECONDS = 0.2
    await fake.open()
    await fake.expect_close(CloseCode.HANDSHAKE_TIMEOUT)


async def test_a_burst_of_hellos_beyond_the_limit_is_told_to_try_later_at_once_and_all_connect_in_the_end(
        tenant_a, agent_factory, settings):
    """A reconnect storm as the agents make it: many hellos at once, on a node that lets none wait (the fixed limit:
    PTA_AGENT_HANDSHAKE_WAIT_SECONDS 0). The node verifies PTA_AGENT_HANDSHAKES_MAX of them at a time and closes the
    others at once with TRY_LATER (no challenge wait, no database), long before the handshake deadline; each
    refused agent comes back and is welcomed."""
    settings.PTA_AGENT_HANDSHAKES_MAX = 2
    settings.PTA_AGENT_HANDSHAKE_WAIT_SECONDS = 0
    settings.PTA_AGENT_HANDSHAKE_SECONDS = 30  # a refusal by the deadline would take this long, not 3 s
    registered = [await database_sync_to_async(agent_factory)(tenant_a, name=f"storm-{n}") for n in range(5)]
    fakes = [FakeAgent(agent.certificate_pem, key) for agent, key in registered]
    nonces = [await fake.open() for fake in fakes]
    for fake, nonce in zip(fakes, nonces, strict=True):  # every hello sent before the node answers any
        await fake.send(protocol.Hello(certificate=fake.certificate_pem, signature=protocol.sign_challenge(
            fake.key, nonce), version="t", hostname="h", capacity=10))
    waiting, welcomed, told_later = fakes, [], 0
    for _ in range(10):  # rounds of retries, bounded
        retry = []
        for fake in waiting:
            message = await fake.output(timeout=3)
            if message["type"] == "websocket.close":
                assert message["code"] == CloseCode.TRY_LATER
                told_later += 1
                retry.append(FakeAgent(fake.certificate_pem, fake.key))
            else:
                assert isinstance(protocol.decode(message["text"]), protocol.Welcome)
                welcomed.append(fake)
        waiting = retry
        if not waiting:
            break
        for fake in waiting:  # the agent's backoff, here one at a time
            await fake.hello()
    assert told_later >= 1  # without the limit every hello of the burst is verified at once
    assert len(welcomed) == 5 and handshakes.in_progress == 0
    for fake in welcomed:
        await fake.close()


async def test_a_burst_of_hellos_beyond_the_limit_waits_for_places_on_a_node_that_keeps_up(
        tenant_a, agent_factory, settings):
    """The same burst on a node whose measured pace lets the hellos beyond the limit wait for a place (a handshake
    here takes milliseconds, the wait allows seconds): every agent is welcomed on its first hello, in turn, and
    none is told to try later; the line is empty afterwards."""
    settings.PTA_AGENT_HANDSHAKES_MAX = 2
    settings.PTA_AGENT_HANDSHAKE_WAIT_SECONDS = 5
    settings.PTA_AGENT_HANDSHAKE_SECONDS = 30
    registered = [await database_sync_to_async(agent_factory)(tenant_a, name=f"wave-{n}") for n in range(5)]
    fakes = [FakeAgent(agent.certificate_pem, key) for agent, key in registered]
    nonces = [await fake.open() for fake in fakes]
    refused_before, waited_before = handshakes.refused, handshakes.waited
    handshakes.interval = 0.05  # the pace of a fresh node, not of the tests before this one
    for fake, nonce in zip(fakes, nonces, strict=True):  # every hello sent before the node answers any
        await fake.send(protocol.Hello(certificate=fake.certificate_pem, signature=protocol.sign_challenge(
            fake.key, nonce), version="t", hostname="h", capacity=10))
    for fake in fakes:
        assert isinstance(await fake.frame(timeout=10), protocol.Welcome)
    assert handshakes.refused == refused_before and handshakes.waited - waited_before >= 1
    assert handshakes.in_progress == 0 and handshakes.waiting == 0
    for fake in fakes:
        await fake.close()


async def test_openings_beyond_the_nodes_limit_are_told_to_try_later_before_anything_is_made(
        tenant_a, agent_factory, settings):
    """A reconnect storm before any hello: the node holds PTA_AGENT_OPENINGS_MAX connections that are opening (no
    hello verified yet); the next one is closed with TRY_LATER at once, with no challenge (no consumer, no channel);
    a welcome gives its place to the next opening."""
    settings.PTA_AGENT_OPENINGS_MAX = 2
    settings.PTA_AGENT_SILENT_SECONDS = 60  # no silent connection is closed to make room here
    registered = [await database_sync_to_async(agent_factory)(tenant_a, name=f"door-{n}") for n in range(3)]
    first, second, third = (FakeAgent(agent.certificate_pem, key, client=f"192.0.2.{n}")
                            for n, (agent, key) in enumerate(registered, start=1))
    refused_before = openings.refused
    nonces = [await first.open(), await second.open()]
    assert openings.in_progress == 2
    connected, code = await third.ws.connect(timeout=3)
    assert connected  # accepted, then closed: the agent reads TRY_LATER, not an HTTP refusal
    assert await third.output() == {"type": "websocket.close", "code": CloseCode.TRY_LATER}
    assert openings.refused == refused_before + 1
    await first.hello(nonce=nonces[0])
    assert isinstance(await first.frame(), protocol.Welcome)
    assert openings.in_progress == 1  # the welcomed connection holds no place
    third = FakeAgent(registered[2][0].certificate_pem, registered[2][1], client="192.0.2.3")
    assert isinstance(await third.welcomed(), protocol.Welcome)
    await second.close()
    await first.close()
    await third.close()
    assert openings.in_progress == 0


async def test_one_address_holds_at_most_its_share_and_silent_connections_make_room(
        tenant_a, agent_factory, settings):
    """A peer that opens connections and never says hello: beyond PTA_AGENT_OPENINGS_PER_ADDRESS its openings are
    told to try later (an IPv6 address counts as its /64) while an agent from another address still connects; and
    once its connections have been silent for PTA_AGENT_SILENT_SECONDS, an agent from that same network takes the
    oldest one's place (closed with HANDSHAKE_TIMEOUT) instead of being refused."""
    settings.PTA_AGENT_OPENINGS_PER_ADDRESS = 2
    settings.PTA_AGENT_SILENT_SECONDS = 60
    registered = [await database_sync_to_async(agent_factory)(tenant_a, name=f"neighbour-{n}") for n in range(2)]
    squatters = [FakeAgent("", None, client=address) for address in ("2001:db8:1:2::7", "2001:db8:1:2::8")]
    for squatter in squatters:
        await squatter.open()
    for address in ("2001:db8:1:2:ffff::1", "2001:db8:1:2::7"):
        late = FakeAgent("", None, client=address)
        assert (await late.ws.connect(timeout=3))[0]
        assert await late.output() == {"type": "websocket.close", "code": CloseCode.TRY_LATER}
    bystander = FakeAgent(registered[0][0].certificate_pem, registered[0][1], client="2001:db8:1:3::7")
    assert isinstance(await bystander.welcomed(), protocol.Welcome)
    settings.PTA_AGENT_SILENT_SECONDS = 0  # the squatters' connections are now silent too long
    evicted_before = openings.evicted
    neighbour = FakeAgent(registered[1][0].certificate_pem, registered[1][1], client="2001:db8:1:2::9")
    assert isinstance(await neighbour.welcomed(), protocol.Welcome)
    await squatters[0].expect_close(CloseCode.HANDSHAKE_TIMEOUT)
    assert openings.evicted == evicted_before + 1
    for connection in (*squatters, bystander, neighbour):
        await connection.close()
    assert openings.in_progress == 0


async def test_a_connection_whose_place_went_before_its_consumer_started_is_closed_at_once():
    """Found in review: a silent opening evicted while its consumer was still making its channel was never closed
    (nothing to call yet) and no longer counted. The consumer now closes it as it starts, with no challenge."""
    door = OpeningAdmission()
    opening = door.begin("192.0.2.1")
    assert opening is not None
    opening.evict()
    ws = WebsocketCommunicator(AgentConsumer.as_asgi(), protocol.WEBSOCKET_PATH)
    ws.scope[OPENING_SCOPE_KEY] = opening  # type: ignore[literal-required]  # the door's key, as agents.routing
    assert (await ws.connect(timeout=3))[0]
    assert await ws.receive_output(3) == {"type": "websocket.close", "code": CloseCode.HANDSHAKE_TIMEOUT}


async def test_frames_before_hello_get_errors_then_repeated_garbage_closes(fake):
    nonce = await fake.open()
    await fake.send(protocol.Heartbeat())
    error = await fake.frame()
    assert isinstance(error, protocol.Error) and error.code == "out_of_order"
    await fake.ws.send_to(text_data="{not json")
    assert (await fake.frame()).code == "malformed"
    # Still up: a good hello after two bad frames is welcomed.
    await fake.hello(nonce=nonce)
    assert isinstance(await fake.frame(), protocol.Welcome)
    await fake.close()


async def test_three_bad_frames_before_hello_close_with_protocol_error(fake):
    await fake.open()
    for _ in range(3):
        await fake.ws.send_to(text_data="garbage")
    for _ in range(3):
        assert (await fake.frame()).code == "malformed"
    await fake.expect_close(CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("payload, code", [
    ("garbage", "malformed"),
    ('{"type": "teleport"}', "unknown_type"),
    ('{"type": "heartbeat", "in_flight": "many"}', "malformed"),
    ('{"type": "welcome", "agent_id": "x"}', "out_of_order"),
    ("x" * (protocol.MAX_FRAME_BYTES + 1), "too_large"),
], ids=["garbage", "unknown-type", "wrong-field-type", "portal-frame", "over-max-frame"])
async def test_bad_frames_after_hello_get_errors_and_the_connection_stays(fake, payload, code):
    await fake.welcomed()
    for _ in range(5):
        await fake.ws.send_to(text_data=payload)
        error = await fake.frame()
        assert isinstance(error, protocol.Error) and error.code == code
    await fake.send(protocol.Heartbeat(in_flight=0, capacity=5))
    assert await fake.ws.receive_nothing(0.1)
    await fake.close()


async def test_a_mistyped_field_is_named_in_the_error_frame(fake):
    await fake.welcomed()
    await fake.ws.send_to(text_data='{"type": "heartbeat", "capacity": "32"}')
    error = await fake.frame()
    assert error.code == "malformed" and "`$.capacity`" in error.message
    await fake.send(protocol.Heartbeat(in_flight=0, capacity=32))
    assert await fake.ws.receive_nothing(0.1)
    await fake.close()


async def test_binary_frame_and_second_hello_get_errors(fake):
    await fake.welcomed()
    await fake.ws.send_to(bytes_data=b"\x00\x01")
    assert (await fake.frame()).code == "malformed"
    await fake.send(protocol.Hello(certificate=fake.certificate_pem, signature="x"))
    assert (await fake.frame()).code == "out_of_order"
    await fake.close()


async def test_heartbeat_updates_presence_and_last_seen(agent, fake, settings, tenant_a):
    settings.PTA_LAST_SEEN_SECONDS = 0
    welcome = await fake.welcomed()
    await database_sync_to_async(Agent.objects.filter(pk=agent[0].pk).update)(last_seen=None)
    before = time.time()
    await fake.send(protocol.Heartbeat(version="2.0", in_flight=0, capacity=7, dc_reachable=False))
    for _ in range(100):
        present = await agent_presence(agent_id=welcome.agent_id)
        seen = await database_sync_to_async(lambda: Agent.objects.get(pk=agent[0].pk).last_seen)()
        if present is not None and present.last_beat >= before and seen is not None:
            break
        await asyncio.sleep(0.05)
    assert present is not None
    assert present.last_beat >= before and present.capacity == 7 and present.version == "2.0"
    assert present.dc_reachable is False
    assert seen is not None
    await fake.close()


async def test_revocation_closes_the_live_connection_within_a_second(agent, fake):
    welcome = await fake.welcomed()
    await database_sync_to_async(agent_revoke)(agent=agent[0])
    await fake.expect_close(CloseCode.REVOKED, timeout=1)  # at once, not at the keeper's next check
    assert await agent_presence(agent_id=welcome.agent_id) is None
    again = FakeAgent(fake.certificate_pem, fake.key)
    await again.hello()
    await again.expect_close(CloseCode.REVOKED)


async def test_keeper_closes_an_agent_revoked_behind_its_back(agent, fake, settings):
    settings.PTA_LAST_SEEN_SECONDS = 0
    await fake.welcomed()
    # As if the revocation broadcast was lost: only the database knows.
    await database_sync_to_async(Agent.objects.filter(pk=agent[0].pk).update)(revoked_at=timezone.now())
    await fake.expect_close(CloseCode.REVOKED, timeout=2)


def new_csr(key) -> str:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "renewed")])).sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


async def test_renewal_in_the_window_issues_a_new_certificate_and_refuses_the_old_key(agent, fake):
    # Into the renewal window by moving not_after in the database (the certificate itself is still valid).
    await database_sync_to_async(Agent.objects.filter(pk=agent[0].pk).update)(
        certificate_not_after=timezone.now() + datetime.timedelta(days=10))
    welcome = await fake.welcomed()
    assert welcome.renew is True
    assert isinstance(await fake.frame(), protocol.Renew)
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = new_csr(new_key)
    await fake.send(protocol.Renewal(csr=csr, signature=protocol.sign_renewal(fake.key, csr)))
    renewed = await fake.frame()
    assert isinstance(renewed, protocol.Renewed)
    certified_key = x509.load_pem_x509_certificate(renewed.certificate.encode()).public_key()
    assert isinstance(certified_key, rsa.RSAPublicKey)
    assert protocol.key_fingerprint(certified_key) == protocol.key_fingerprint(new_key.public_key())
    await fake.expect_close(CloseCode.RENEWED)

    old = FakeAgent(fake.certificate_pem, fake.key)
    await old.hello()
    await old.expect_close(CloseCode.UNKNOWN_CERTIFICATE)
    new = FakeAgent(renewed.certificate, new_key)
    assert (await new.welcomed()).renew is False
    await new.close()


async def test_renewal_lets_the_sign_ins_in_flight_finish_before_closing(agent, fake):
    welcome = await fake.welcomed()
    consumer = connection_of(welcome.agent_id)
    pending = await consumer.send_request(make_request(agent[0]))
    sent = await fake.frame()
    await fake.send(protocol.Ack(request_id=sent.request_id))
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = new_csr(new_key)
    await fake.send(protocol.Renewal(csr=csr, signature=protocol.sign_renewal(fake.key, csr)))
    assert isinstance(await fake.frame(), protocol.Renewed)
    with pytest.raises(AgentUnavailable):  # no new request on a connection whose key was replaced
        await consumer.send_request(make_request(agent[0]))
    assert await fake.ws.receive_nothing(0.2)  # not closed yet: one sign-in is still in flight
    await fake.send(protocol.Result(request_id=sent.request_id, outcome="success"))
    assert (await asyncio.wait_for(pending.result, 1)).outcome == "success"
    await fake.expect_close(CloseCode.RENEWED)


async def test_renewal_signed_with_another_key_is_refused_and_the_connection_stays(fake):
    await fake.welcomed()
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = new_csr(new_key)
    await fake.send(protocol.Renewal(csr=csr, signature=protocol.sign_renewal(new_key, csr)))
    error = await fake.frame()
    assert isinstance(error, protocol.Error) and error.code == "bad_signature"
    await fake.send(protocol.Renewal(csr="nonsense", signature=protocol.sign_renewal(fake.key, "nonsense")))
    assert (await fake.frame()).code == "bad_csr"
    assert await fake.ws.receive_nothing(0.1)
    await fake.close()


def make_request(agent: Agent, *, domain: str = "alpha.example.test", request_id: str | None = None):
    return protocol.Request(request_id=request_id or uuid.uuid4().hex, tenant=str(agent.tenant_id), domain=domain,
                            username=f"user@{domain}", key_id=agent.key_fingerprint, expires_at=time.time() + 30,
                            sealed={}, signature="s")


async def ask(consumer, request, *, ack_timeout: float = 1.0, result_timeout: float = 10.0):
    """The hand-off's local path to this consumer."""
    return await hand_over(request, agent_id=consumer.agent_id, channel_name=consumer.channel_name, local=True,
                           ack_timeout=ack_timeout, result_timeout=result_timeout)


async def test_request_resolves_on_ack_and_result(agent, fake):
    welcome = await fake.welcomed()
    consumer = connection_of(welcome.agent_id)
    pending = await consumer.send_request(make_request(agent[0]))
    sent = await fake.frame()
    assert isinstance(sent, protocol.Request) and sent.request_id == pending.request_id
    assert consumer.in_flight == 1
    await fake.send(protocol.Ack(request_id=sent.request_id))
    await asyncio.wait_for(pending.acked, 1)
    await fake.send(protocol.Result(request_id=sent.request_id, outcome="success"))
    result = await asyncio.wait_for(pending.result, 1)
    assert result.outcome == "success" and consumer.in_flight == 0
    await fake.close()


async def test_relay_deadlines_errors_and_disconnect(agent, fake):
    welcome = await fake.welcomed()
    consumer = connection_of(welcome.agent_id)

    task = asyncio.create_task(ask(consumer, make_request(agent[0]), ack_timeout=1, result_timeout=0.3))
    sent = await fake.frame()
    await fake.send(protocol.Ack(request_id=sent.request_id))
    with pytest.raises(AgentTimeout):
        await task
    assert consumer.in_flight == 0

    task = asyncio.create_task(ask(consumer, make_request(agent[0])))
    sent = await fake.frame()
    await fake.send(protocol.Error(code="cannot_decrypt", message="no", request_id=sent.request_id))
    with pytest.raises(AgentRequestError):
        await task

    task = asyncio.create_task(ask(consumer, make_request(agent[0])))
    await fake.frame()
    await fake.close()
    with pytest.raises(AgentDisconnected):  # before the ack: safe to try another agent
        await task


async def test_a_disconnect_after_the_ack_is_never_tried_elsewhere(agent, fake):
    welcome = await fake.welcomed()
    consumer = connection_of(welcome.agent_id)
    task = asyncio.create_task(ask(consumer, make_request(agent[0])))
    sent = await fake.frame()
    await fake.send(protocol.Ack(request_id=sent.request_id))
    await asyncio.sleep(0.05)
    await fake.close()
    with pytest.raises(AgentTimeout):  # the bind may have happened: a second one would count twice in AD
        await task


async def test_requests_outside_the_agents_tenant_or_domain_or_capacity_are_not_sent(agent, fake):
    welcome = await fake.welcomed()
    consumer = connection_of(welcome.agent_id)
    with pytest.raises(ValueError):
        await consumer.send_request(make_request(agent[0], domain="beta.example.test"))
    with pytest.raises(ValueError):
        await consumer.send_request(protocol.Request(**{**make_request(agent[0]).__dict__, "tenant": "other"}))
    for _ in range(consumer.capacity):
        await consumer.send_request(make_request(agent[0]))
    with pytest.raises(AgentBusy):
        await consumer.send_request(make_request(agent[0]))
    await fake.close()


async def another_nodes_reply_channel(fake):
    """The welcomed agent's consumer, the channel layer, and a reply channel as another node's would be."""
    welcome = await fake.welcomed()
    layer = get_channel_layer()
    assert layer is not None
    return connection_of(welcome.agent_id), layer, await layer.new_channel()


async def test_request_from_another_node_is_answered_on_its_reply_channel(agent, fake):
    consumer, layer, reply_to = await another_nodes_reply_channel(fake)
    request = make_request(agent[0])
    await layer.send(consumer.channel_name, RelayedRequest.of(request, reply_to=reply_to).to_message())
    sent = await fake.frame()
    assert sent == request
    await fake.send(protocol.Ack(request_id=sent.request_id))
    # Answered in the asker's version (RelayedRequest.of speaks this node's own).
    assert reply_from_message(await asyncio.wait_for(layer.receive(reply_to), 1)) == RelayedAck(
        request_id=request.request_id, version=NODE_PROTOCOL)
    await fake.send(protocol.Result(request_id=sent.request_id, outcome="invalid_credentials", ad_subcode="52e"))
    reply = reply_from_message(await asyncio.wait_for(layer.receive(reply_to), 1))
    assert isinstance(reply, RelayedResult) and reply.frame().outcome == "invalid_credentials"
    await fake.close()


async def test_a_relayed_result_that_follows_its_ack_at_once_carries_the_ack(agent, fake, settings, monkeypatch):
    # One message through the layer instead of two (a result implies its ack); the ack alone comes only when the
    # result is later than the hold (the test above). A long hold here: a loaded machine must not fail it.
    settings.PTA_AGENT_ACK_SECONDS = 10
    monkeypatch.setattr(relay, "ACK_HOLD_SECONDS", 2.0)
    consumer, layer, reply_to = await another_nodes_reply_channel(fake)
    request = make_request(agent[0])
    await layer.send(consumer.channel_name, RelayedRequest.of(request, reply_to=reply_to).to_message())
    sent = await fake.frame()
    await fake.send(protocol.Ack(request_id=sent.request_id))
    await fake.send(protocol.Result(request_id=sent.request_id, outcome="invalid_credentials", ad_subcode="52e"))
    reply = reply_from_message(await asyncio.wait_for(layer.receive(reply_to), 1))
    assert isinstance(reply, RelayedResult) and reply.frame().outcome == "invalid_credentials"
    with pytest.raises(TimeoutError):  # and nothing after it: no ack of its own
        await asyncio.wait_for(layer.receive(reply_to), 0.2)
    await fake.close()


async def test_presence_prefers_the_newest_connection_of_an_agent(agent):
    first, second = FakeAgent(agent[0].certificate_pem, agent[1]), FakeAgent(agent[0].certificate_pem, agent[1])
    await first.welcomed()
    await second.welcomed()
    newest = connection_of(str(agent[0].pk))
    await first.close()  # the older connection leaving must not withdraw the newer one's presence
    present = await presence_registry().for_agent(agent_id=str(agent[0].pk))
    assert present is not None and present.channel_name == newest.channel_name
    await second.close()


async def test_a_password_change_goes_only_to_an_agent_that_announced_it(agent, fake, tenant_a):
    # An agent that announced nothing (an older one, or one without a service account) is never sent a change.
    welcome = await fake.welcomed()
    consumer = connection_of(welcome.agent_id)
    present = await published(welcome.agent_id)
    assert present is not None and present.capabilities == ()
    assert await agents_connected(tenant_id=str(tenant_a.pk), domain="alpha.example.test",
                                  capability=protocol.CAPABILITY_PASSWORD_CHANGE) == []
    change = dataclasses.replace(make_request(agent[0]), kind=protocol.REQUEST_PASSWORD_CHANGE)
    with pytest.raises(ValueError):
        await consumer.send_request(change)
    await fake.close()

    able = FakeAgent(agent[0].certificate_pem, agent[1])
    nonce = await able.open()
    await able.send(protocol.Hello(certificate=able.certificate_pem, signature=protocol.sign_challenge(able.key, nonce),
                                   version="t", hostname="h", capacity=4,
                                   capabilities=[protocol.CAPABILITY_PASSWORD_CHANGE, "from-the-future"]))
    assert isinstance(await able.frame(), protocol.Welcome)
    for _ in range(100):  # published just after the welcome; the closed connection's record may linger a moment
        present = await agent_presence(agent_id=welcome.agent_id)
        if present is not None and present.capabilities:
            break
        await asyncio.sleep(0.02)
    assert present is not None and present.capabilities == (protocol.CAPABILITY_PASSWORD_CHANGE,)
    found = await agents_connected(tenant_id=str(tenant_a.pk), domain="alpha.example.test",
                                   capability=protocol.CAPABILITY_PASSWORD_CHANGE)
    assert [a.agent_id for a in found] == [welcome.agent_id]
    consumer = connection_of(welcome.agent_id)
    await consumer.send_request(change)
    assert (await able.frame()).kind == protocol.REQUEST_PASSWORD_CHANGE
    await able.close()


async def test_groups_are_asked_only_of_an_agent_that_announced_them(agent, fake, tenant_a):
    # An older agent refuses unknown fields: a request asking for groups never reaches one that did not announce them.
    welcome = await fake.welcomed()
    asking = dataclasses.replace(make_request(agent[0]), groups=True)
    with pytest.raises(ValueError):
        await connection_of(welcome.agent_id).send_request(asking)
    await fake.close()

    able = FakeAgent(agent[0].certificate_pem, agent[1])
    nonce = await able.open()
    await able.send(protocol.Hello(certificate=able.certificate_pem, signature=protocol.sign_challenge(able.key, nonce),
                                   version="t", hostname="h", capacity=4, capabilities=[protocol.CAPABILITY_GROUPS]))
    assert isinstance(await able.frame(), protocol.Welcome)
    consumer = connection_of(welcome.agent_id)
    await consumer.send_request(asking)
    assert (await able.frame()).groups is True
    await able.close()


async def test_a_message_of_a_kind_this_node_does_not_know_is_answered_and_the_connection_stays(agent, fake):
    """A newer node's message kind (nodes N and N+1 during an upgrade): the asker hears ``unsupported`` and turns
    to another agent; the agent's connection, which any unknown type used to end, goes on serving."""
    consumer, layer, reply_to = await another_nodes_reply_channel(fake)
    await layer.send(consumer.channel_name, {"type": "agent.handover", "request_id": "r-9", "reply_to": reply_to,
                                             "version": NODE_PROTOCOL + 1, "to": "node-3"})
    reply = reply_from_message(await asyncio.wait_for(layer.receive(reply_to), 1))
    assert isinstance(reply, RelayedFailure) and (reply.request_id, reply.code) == ("r-9", "unsupported")
    request = make_request(agent[0])
    await layer.send(consumer.channel_name, RelayedRequest.of(request, reply_to=reply_to).to_message())
    assert await fake.frame() == request
    await fake.close()
