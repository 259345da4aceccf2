"""The portal end of an agent's WebSocket (protocol.WEBSOCKET_PATH).

A connection goes: challenge → hello (certificate, nonce signed with the agent's key) → welcome, or a close
code after accept(). Then heartbeats, requests with their ack and result, and renewal. The handshake and
renewal are the only steps that touch the database; heartbeats, acks and results stay in memory.

Bad frames are answered with an ``error`` frame and the connection stays up. Before the hello has been
accepted, MAX_BAD_FRAMES_BEFORE_HELLO of them close the connection with PROTOCOL_ERROR: an unauthenticated
peer gets no unbounded conversation.

This is transport only. For the sign-in hand-off (agents/handoff/) it sends requests and settles them with
what the agent answers:

    pending = await consumer.send_request(request)     # raises AgentUnavailable / AgentBusy / ValueError
    result = await pending.wait(ack_timeout=1.0, result_timeout=10.0)   # agents/handoff/pending.py

Channel-layer messages (agents/handoff/messages.py) reach it by their type: ``agent.request`` (a request from
another node's hand-off: agents.handoff.relay.serve_relayed sends it and answers that node), ``agent.close``
and ``agent.refresh``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import pta_protocol as protocol
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from agents.connections import (
    handshakes,
    in_background,
    keeper_ensure_running,
    local_agents,
    node_id,
    opening_of,
)
from agents.handoff import AgentBusy, AgentDisconnected, AgentRequestError
from agents.handoff.messages import NODE_PROTOCOL, CloseConnection, NodeMessageError, RefreshRights, agent_group
from agents.handoff.pending import PendingRequest
from agents.handoff.relay import answer_unknown, serve_relayed
from agents.presence import PresenceRecord, presence_registry
from agents.queue import slot_queues
from agents.services.lifecycle import (
    AgentIdentity,
    ConnectionRefused,
    RenewalRefused,
    agent_authenticate,
    agent_renew,
    agents_current,
)

logger = logging.getLogger(__name__)
CloseCode = protocol.CloseCode

MAX_BAD_FRAMES_BEFORE_HELLO = 3
DEFAULT_CAPACITY = 64
MAX_CAPACITY = 1000
# What an agent may announce in its hello; anything else (a newer agent's) is ignored.
KNOWN_CAPABILITIES = frozenset({protocol.CAPABILITY_PASSWORD_CHANGE, protocol.CAPABILITY_GROUPS})
# Request kinds only an agent that announced the capability is sent.
KIND_CAPABILITIES = {protocol.REQUEST_PASSWORD_CHANGE: protocol.CAPABILITY_PASSWORD_CHANGE}


class AgentConsumer(AsyncWebsocketConsumer):
    # --- the connection ------------------------------------------------------------------------------

    async def connect(self) -> None:
        self.identity: AgentIdentity | None = None
        self.nonce = protocol.new_nonce()
        self.bad_frames = 0
        self.closing = False
        self.close_started = False
        self.pending: dict[str, PendingRequest] = {}
        self.capacity = DEFAULT_CAPACITY
        self.version = ""
        self.protocol = 1  # the agent's protocol version (its hello)
        self.capabilities: tuple[str, ...] = ()
        self.dc_reachable = True
        self.connected_at = time.time()
        self.last_beat = self.connected_at
        self.last_seen_written = self.connected_at  # the handshake writes last_seen
        self.presence_published = False
        self.publishing = False
        self.joined_group = ""
        self.opening = opening_of(self.scope)
        if self.opening is not None:  # closed if it stays silent while others want its place
            self.opening.on_evict = lambda: in_background(self._close_silent())
        await self.accept()  # refusals are close codes after accept: a 403 would tell the agent nothing
        if self.opening is not None and self.opening.evicted:  # its place went while its channel was being made
            await self._close_silent()
            return
        await self.send_frame(protocol.Challenge(nonce=self.nonce))
        self.handshake_deadline = asyncio.get_running_loop().call_later(
            settings.PTA_AGENT_HANDSHAKE_SECONDS, self._handshake_timed_out)

    async def dispatch(self, message: dict) -> None:
        # Channels runs close_old_connections() in a thread before every message (about 1 ms): the hot
        # path has no database access, and the handshake and renewal use database_sync_to_async.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:  # a newer node's kind: answered, never by closing the agent's connection
            answer_unknown(message)
            return
        await handler(message)

    async def disconnect(self, code: int) -> None:
        self.closing = True
        if hasattr(self, "handshake_deadline"):
            self.handshake_deadline.cancel()
        for pending in list(self.pending.values()):
            pending.fail(AgentDisconnected("the agent disconnected"))
        self.pending.clear()
        if self.identity is None:
            return
        local_agents.discard(self)
        if self.joined_group:
            await self.channel_layer.group_discard(self.joined_group, self.channel_name)
        await self._withdraw_presence(self.identity)
        logger.info("agent %s disconnected (code %s)", self.agent_id, code)

    async def close_for(self, code: CloseCode, reason: str, *, drain_seconds: float = 0.0) -> None:
        """Close with ``code``; with ``drain_seconds``, first let the requests in flight finish (no new ones)."""
        if self.close_started:
            return
        self.close_started = True
        self.stop_taking_requests()
        logger.info("closing agent connection %s: %s (%s)", getattr(self, "agent_id", "?"), code.name, reason)
        if self.identity is not None:
            await self._withdraw_presence(self.identity)
        deadline = time.monotonic() + drain_seconds
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.close(code=int(code))

    def stop_taking_requests(self) -> None:
        # Not present from now on: the hand-off must not choose a connection that is closing.
        self.closing = True
        local_agents.discard(self)

    async def _withdraw_presence(self, identity: AgentIdentity) -> None:
        try:
            await presence_registry().withdraw(agent_id=identity.agent_id, tenant_id=identity.tenant_id,
                                               channel_name=self.channel_name)
        except Exception as exc:  # Redis away: the record expires by itself
            logger.warning("could not withdraw presence of agent %s: %s", self.agent_id, exc)

    async def _close_silent(self) -> None:
        """Its opening's place was given to another connection: it sent no hello while others waited."""
        await self.close_for(CloseCode.HANDSHAKE_TIMEOUT, "no hello while others wait")

    def _handshake_timed_out(self) -> None:
        if self.identity is None and not self.closing:
            in_background(self.close_for(CloseCode.HANDSHAKE_TIMEOUT, "no hello in time"))

    @property
    def agent_id(self) -> str:
        return self.identity.agent_id if self.identity else ""

    # --- frames from the agent -----------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing and not self.pending:  # a closing connection still takes the answers it awaits
            return
        try:
            frame = protocol.decode(text_data if text_data is not None else bytes_data or b"")
            if self.identity is None:
                if not isinstance(frame, protocol.Hello):
                    raise protocol.ProtocolError("out_of_order", "Send hello first.")
                if self.opening is not None:
                    self.opening.heard()
                await self.on_hello(frame)
                return
            match frame:
                case protocol.Heartbeat():
                    await self.on_heartbeat(frame)
                case protocol.Ack():
                    await self.on_ack(frame)
                case protocol.Result():
                    await self.on_result(frame)
                case protocol.Error():
                    await self.on_error(frame)
                case protocol.Renewal():
                    await self.on_renewal(frame)
                case protocol.Hello():
                    raise protocol.ProtocolError("out_of_order", "Already authenticated.")
                case _:
                    raise protocol.ProtocolError("out_of_order", f"A {frame.type} frame is not expected now.")
        except protocol.ProtocolError as exc:
            await self.refuse_frame(exc)

    async def refuse_frame(self, exc: protocol.ProtocolError) -> None:
        await self.send_frame(protocol.Error(code=exc.code, message=exc.message, request_id=exc.request_id))
        if self.identity is None:
            self.bad_frames += 1
            if self.bad_frames >= MAX_BAD_FRAMES_BEFORE_HELLO:
                await self.close_for(CloseCode.PROTOCOL_ERROR, "repeated bad frames before hello")

    async def on_hello(self, hello: protocol.Hello) -> None:
        started = time.perf_counter()
        # What a handshake costs the node is this proof (the certificate, the signature, the database, in a worker
        # thread): at most PTA_AGENT_HANDSHAKES_MAX at once. Beyond it a hello waits for a place while the node's
        # measured pace says it gets one within PTA_AGENT_HANDSHAKE_WAIT_SECONDS (agents.connections.
        # HandshakeAdmission); otherwise the agent is told at once to come back after its jittered backoff, rather
        # than queue behind a reconnect storm until its handshake times out. Only the proof counts: connections
        # that never say hello hold no place.
        if not await handshakes.admit():
            if handshakes.refused % 100 == 1:
                logger.warning("agent handshakes: %d at once and %d waiting, %.1f ms apart, the most this node takes; "
                               "%d told to try later so far", handshakes.in_progress, handshakes.waiting,
                               handshakes.interval * 1000, handshakes.refused)
            await self.close_for(CloseCode.TRY_LATER, "too many handshakes at once")
            return
        if self.closing:  # the handshake deadline passed, or the node began to stop, while it waited
            handshakes.done(worked=False)
            return
        try:
            identity = await database_sync_to_async(agent_authenticate)(
                certificate_pem=hello.certificate, nonce=self.nonce, signature=hello.signature,
                hostname=hello.hostname, version=hello.version)
        except ConnectionRefused as refused:
            logger.info("agent connection refused: %s", refused.reason)
            await self.close_for(refused.code, refused.reason)
            return
        finally:
            handshakes.done()
        if self.closing:  # the handshake deadline passed meanwhile
            return
        self.handshake_deadline.cancel()
        if self.opening is not None:
            self.opening.end()  # verified: its place goes to the next opening
        self.identity = identity
        self.version = hello.version
        self.protocol = hello.protocol
        self.capabilities = tuple(sorted(set(hello.capabilities) & KNOWN_CAPABILITIES))
        self.capacity = self._bounded_capacity(hello.capacity)
        self.last_beat = time.time()
        await self.send_frame(protocol.Welcome(agent_id=identity.agent_id,
                                               heartbeat_seconds=settings.PTA_AGENT_HEARTBEAT_SECONDS,
                                               renew=identity.renewal_due))
        self.joined_group = agent_group(identity.agent_id)
        await self.channel_layer.group_add(self.joined_group, self.channel_name)
        local_agents.add(self)
        keeper_ensure_running()
        await presence_registry().publish([self.presence_record()])
        self.presence_published = True
        logger.info("agent %s connected (%s, node %s) in %.1f ms", identity.agent_id, identity.name, node_id(),
                    (time.perf_counter() - started) * 1000)
        if identity.renewal_due:
            await self.send_frame(protocol.Renew())

    async def on_heartbeat(self, beat: protocol.Heartbeat) -> None:
        # In memory only: the presence keeper publishes it, and writes last_seen, off this path.
        self.last_beat = time.time()
        self.capacity = self._bounded_capacity(beat.capacity) if beat.capacity else self.capacity
        self.version = beat.version or self.version
        self.dc_reachable = beat.dc_reachable

    async def on_ack(self, ack: protocol.Ack) -> None:
        pending = self.pending.get(ack.request_id)
        if pending is not None:  # else late or unknown: the request was already given up
            pending.ack()

    async def on_result(self, result: protocol.Result) -> None:
        pending = self.pending.get(result.request_id)
        if pending is not None:
            self._release(result.request_id)
            pending.resolve(result)

    async def on_error(self, error: protocol.Error) -> None:
        pending = self.pending.get(error.request_id) if error.request_id else None
        logger.info("agent %s reported %s: %s", self.agent_id, error.code, error.message[:200])
        if pending is not None:
            self._release(error.request_id)
            pending.fail(AgentRequestError(error.code, error.message))

    async def on_renewal(self, renewal: protocol.Renewal) -> None:
        def renew() -> str:
            from agents.models import Agent

            return agent_renew(agent=Agent(pk=self.agent_id), csr_pem=renewal.csr,
                               signature=renewal.signature).certificate_pem

        try:
            certificate = await database_sync_to_async(renew)()
        except RenewalRefused as refused:
            raise protocol.ProtocolError(refused.code, refused.message) from None
        self.stop_taking_requests()
        await self.send_frame(protocol.Renewed(certificate=certificate))
        # The old key is no longer the agent's: it reconnects with the new one, once the sign-ins already
        # handed to this connection have their results (the agent drains too; either side may close first).
        in_background(self.close_for(CloseCode.RENEWED, "renewed",
                                             drain_seconds=settings.PTA_SIGNIN_DEADLINE_SECONDS))

    # --- requests to the agent -----------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self.pending)

    async def send_request(self, request: protocol.Request) -> PendingRequest:
        """Send a signed, sealed request to this agent; what it answers settles the returned pending request."""
        if self.identity is None or self.closing:
            raise AgentDisconnected("not connected")  # closing: the agent comes back on another connection
        if request.tenant != self.identity.tenant_id or request.domain not in self.identity.domains:
            raise ValueError("This agent does not serve that tenant and domain.")  # never sent, whatever the caller
        if request.key_id != self.identity.key_fingerprint:
            raise ValueError("The request was sealed for another key.")
        if (needed := KIND_CAPABILITIES.get(request.kind)) and needed not in self.capabilities:
            raise ValueError(f"This agent did not announce {needed}.")
        if request.groups and protocol.CAPABILITY_GROUPS not in self.capabilities:
            raise ValueError("This agent did not announce groups: it would refuse the request.")
        if self.in_flight >= self.capacity:
            raise AgentBusy(f"{self.in_flight} requests in flight")
        if request.request_id in self.pending:
            raise ValueError("Duplicate request id.")
        pending = PendingRequest.start(request.request_id)
        # A caller that gives up (cancels or times out) frees the slot.
        pending.result.add_done_callback(lambda _: self._release(request.request_id))
        self.pending[request.request_id] = pending
        if self.in_flight == self.capacity:
            self._publish_soon()  # full: other nodes stop sending here at once, not at the next flush
        try:
            await self.send_frame(request)
        except Exception:
            pending.fail(AgentDisconnected("could not send"))
            raise AgentDisconnected("could not send") from None
        return pending

    def _release(self, request_id: str) -> None:
        if self.pending.pop(request_id, None) is None:
            return
        if self.identity is not None:
            slot_queues.slot_freed(self.identity.tenant_id)  # the first sign-in in line here may take the slot
        if self.in_flight == self.capacity - 1:
            self._publish_soon()  # no longer full: other nodes' sign-ins in line may come

    def _publish_soon(self) -> None:
        if self.identity is None or self.closing or self.publishing:
            return
        self.publishing = True

        async def publish() -> None:
            try:
                await presence_registry().publish([self.presence_record()])
            except Exception as exc:  # Redis away: the keeper republishes on its next tick
                logger.debug("could not publish the load of agent %s: %s", self.agent_id, exc)
            finally:
                self.publishing = False

        in_background(publish())

    # --- the channel layer (agents/handoff/messages.py) -----------------------------------------------

    async def agent_close(self, message: dict) -> None:
        """Revocation (or another portal decision), sent to the agent's group from any node."""
        try:
            order = CloseConnection.from_message(message)
            code = CloseCode(order.code)
        except ValueError as exc:  # not a close order (NodeMessageError), or no close code of ours
            logger.warning("agent %s: ignored a close order: %s", self.agent_id, exc)
            return
        await self.close_for(code, "closed by the portal")

    async def agent_refresh(self, message: dict) -> None:
        """The agent's rights changed (domains edited, a domain deleted or unverified, the agent deleted), sent to
        its group from any node: re-read them now rather than at the next connection."""
        try:
            RefreshRights.from_message(message)
        except NodeMessageError as exc:
            logger.warning("agent %s: ignored a refresh order: %s", self.agent_id, exc)
            return
        if self.identity is None or self.close_started:
            return
        current = await database_sync_to_async(agents_current)(agent_ids=[self.agent_id])
        await self.apply_current(current[self.agent_id])

    async def apply_current(self, current: CloseCode | tuple[str, ...]) -> None:
        """What the database says of this agent now: a close code, or the domains it may be sent."""
        if isinstance(current, CloseCode):
            in_background(self.close_for(current, "refused"))
            return
        if self.identity is None or self.closing or tuple(current) == self.identity.domains:
            return
        logger.info("agent %s now serves %s (was %s)", self.agent_id, ", ".join(current) or "no domain",
                    ", ".join(self.identity.domains) or "no domain")
        self.identity = dataclasses.replace(self.identity, domains=tuple(current))
        await presence_registry().publish([self.presence_record()])

    async def agent_request(self, message: dict) -> None:
        """A request from another node's hand-off: the hand-off sends it here and answers that node."""
        await serve_relayed(self, message)

    # --- helpers -------------------------------------------------------------------------------------

    async def send_frame(self, frame: protocol.Frame) -> None:
        await self.send(text_data=protocol.encode(frame))

    def presence_record(self) -> PresenceRecord:
        assert self.identity is not None
        return PresenceRecord(
            agent_id=self.identity.agent_id, tenant_id=self.identity.tenant_id, domains=self.identity.domains,
            node_id=node_id(), channel_name=self.channel_name, key_id=self.identity.key_fingerprint,
            in_flight=self.in_flight, capacity=self.capacity,
            version=self.version, dc_reachable=self.dc_reachable, connected_at=self.connected_at,
            last_beat=self.last_beat, capabilities=self.capabilities, protocol=self.protocol,
            node_protocol=NODE_PROTOCOL,
        )

    @staticmethod
    def _bounded_capacity(capacity: int) -> int:
        return max(1, min(capacity, MAX_CAPACITY)) if capacity > 0 else DEFAULT_CAPACITY
