"""The agents connected to THIS process, and the task that keeps their presence and last_seen current.

Two things live here rather than in the consumer because they are per process, not per connection:

- ``local_agents``: agent id → live connection (an ``AgentConsumer``, seen through ``LocalConnection``); the
  hand-off gives a request to a local agent in process (no channel layer on that path).
- ``PresenceKeeper``: one task per event loop that republishes every local agent's presence each
  ``PTA_PRESENCE_FLUSH_SECONDS`` in one Redis call, writes ``last_seen`` at most every
  ``PTA_LAST_SEEN_SECONDS`` in one UPDATE, closes connections of agents revoked, deleted or expired meanwhile
  and gives the others their current domains (a safety net for a broadcast lost while Redis was away).
  Heartbeats themselves touch neither Redis nor the database.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

import pta_protocol as protocol
from channels.db import database_sync_to_async
from django.conf import settings

from agents.handoff.pending import PendingRequest
from agents.presence import PresenceRecord, presence_registry
from agents.services.lifecycle import agent_last_seen_touch, agents_current

logger = logging.getLogger(__name__)


_background: set[asyncio.Task[Any]] = set()


def in_background(coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Start a task nobody awaits, referenced until it ends (the event loop keeps only weak references to tasks,
    so an unreferenced one may be collected before it runs to the end)."""
    task = asyncio.ensure_future(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


def node_id() -> str:
    """Names this process in presence records: PTA_NODE_ID, or hostname:pid."""
    return getattr(settings, "PTA_NODE_ID", "") or f"{socket.gethostname()}:{os.getpid()}"


class LocalConnection(Protocol):
    """What this process asks of an agent's live connection (``agents.consumers.AgentConsumer``): the hand-off
    sends requests through it, the selectors read its load, the keeper keeps its presence current."""

    channel_name: str
    closing: bool
    capacity: int
    last_beat: float
    last_seen_written: float
    presence_published: bool

    @property
    def agent_id(self) -> str: ...

    @property
    def in_flight(self) -> int: ...

    def presence_record(self) -> PresenceRecord: ...

    async def send_request(self, request: protocol.Request) -> PendingRequest: ...

    async def close_for(self, code: protocol.CloseCode, reason: str, *, drain_seconds: float = 0.0) -> None: ...

    async def apply_current(self, current: protocol.CloseCode | tuple[str, ...]) -> None: ...


class LocalAgents:
    """Agent id → the live connection in this process. The newest connection of an agent wins."""

    def __init__(self) -> None:
        self._connections: dict[str, LocalConnection] = {}
        self.added = 0  # connections welcomed since the process started (signin/consumers.py: the heap's freezes)

    def add(self, connection: LocalConnection) -> None:
        self._connections[connection.agent_id] = connection
        self.added += 1

    def discard(self, connection: LocalConnection) -> None:
        if self._connections.get(connection.agent_id) is connection:
            del self._connections[connection.agent_id]

    def get(self, agent_id: str) -> LocalConnection | None:
        return self._connections.get(str(agent_id))

    def all(self) -> list[LocalConnection]:
        return list(self._connections.values())

    def __len__(self) -> int:
        return len(self._connections)


local_agents = LocalAgents()


class HandshakeAdmission:
    """How many agents' hellos this process verifies at once (certificate, signature, database), and who waits.

    At most PTA_AGENT_HANDSHAKES_MAX are verified at once. A hello beyond them waits for a place, first come first
    served, when this node's measured pace says it gets one within PTA_AGENT_HANDSHAKE_WAIT_SECONDS; otherwise, or
    when it has waited that long, the consumer closes it with CloseCode.TRY_LATER and the agent comes back after
    its jittered backoff. The pace (``interval``) is the time between two handshakes finishing while the node is
    busy with handshakes, averaged (EWMA): it is whatever slows the node down (the database, the GIL, the event
    loop's other work), measured where it counts. So a node that keeps up lets a reconnect storm queue and serves
    it in turn, and a loaded node (a long interval) refuses the excess at once, before it reads anything, as the
    fixed limit alone did: no hello waits past its place's expected time, and none is verified for an agent that
    has given up (the wait is well under the handshake deadline). A wait of 0 is the fixed limit alone."""

    INITIAL_INTERVAL = 0.05  # seconds, until the first handshakes are measured: 100 waiting places with a 5 s wait
    WEIGHT = 0.2  # of the newest sample in the average: about the last ten handshakes
    # Hellos refused at once (garbage, no certificate) end in far less than a real verification: without a floor
    # an anonymous flood would measure the pace near 0 and let any number wait ahead of the agents.
    MIN_INTERVAL = 0.002
    WAITING_PER_PLACE = 4  # at most this many waiting hellos per place (PTA_AGENT_HANDSHAKES_MAX), whatever the pace

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.in_progress = 0
        self.refused = 0  # since the process started: for the logs, /metrics and the benchmark
        self.waited = 0  # hellos that waited for a place and got one
        self.interval = self.INITIAL_INTERVAL
        self._clock = clock
        self._busy_since = 0.0  # the last handshake's end, or the moment the node became busy with handshakes
        self._waiting: deque[asyncio.Future[bool]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @staticmethod
    def wait_budget() -> float:
        """How long a hello may wait for a place: the setting, at most half the handshake deadline."""
        return min(settings.PTA_AGENT_HANDSHAKE_WAIT_SECONDS, settings.PTA_AGENT_HANDSHAKE_SECONDS / 2)

    def expected_wait(self, position: int) -> float:
        """The wait of the hello at ``position`` (1: the first) in line: a place frees as each handshake ends."""
        return position * self.interval

    async def admit(self) -> bool:
        """A place to verify a hello (then call done() once), or False: the hello is to be told to try later."""
        if self.in_progress < settings.PTA_AGENT_HANDSHAKES_MAX and not self._waiting:
            if self.in_progress == 0:
                self._busy_since = self._clock()
            self.in_progress += 1
            return True
        budget = self.wait_budget()
        full = len(self._waiting) >= self.WAITING_PER_PLACE * settings.PTA_AGENT_HANDSHAKES_MAX
        if full or self.expected_wait(len(self._waiting) + 1) > budget:
            self.refused += 1
            return False
        loop = asyncio.get_running_loop()
        place: asyncio.Future[bool] = loop.create_future()
        self._waiting.append(place)
        timer = loop.call_later(budget, self._expire, place)
        try:
            granted = await place
        except asyncio.CancelledError:
            if place.done() and not place.cancelled() and place.result():
                self.done(worked=False)  # the place came as the connection went: the next one in line takes it
            elif place in self._waiting:
                self._waiting.remove(place)
            raise
        finally:
            timer.cancel()
        if granted:
            self.waited += 1
        else:
            self.refused += 1
        return granted

    def _expire(self, place: asyncio.Future[bool]) -> None:
        if not place.done():
            self._waiting.remove(place)
            place.set_result(False)

    def done(self, *, worked: bool = True) -> None:
        """A handshake that had a place ended (welcomed or refused): its place goes to the first in line. One
        that did no work (its connection went while it waited) gives its place without being measured."""
        if worked:
            now = self._clock()
            sample = min(max(0.0, now - self._busy_since), settings.PTA_AGENT_HANDSHAKE_SECONDS)
            self.interval = max(self.MIN_INTERVAL, (1 - self.WEIGHT) * self.interval + self.WEIGHT * sample)
            self._busy_since = now
        while self._waiting:
            place = self._waiting.popleft()
            if not place.done():
                place.set_result(True)  # in_progress unchanged: the place passes on
                return
        self.in_progress = max(0, self.in_progress - 1)


handshakes = HandshakeAdmission()


class OpeningAdmission:
    """How many agent connections this process holds before their hello is verified, in all and per address.

    Every opening costs the node an ASGI instance, a consumer, a channel on the layer (a Redis subscription in
    production), the WebSocket's accept and a challenge, before any hello reaches HandshakeAdmission. Under a
    reconnect storm (a node restarted under thousands of agents) those openings alone swamp the event loop: the
    agents' own openings time out and are all retried together. So at most PTA_AGENT_OPENINGS_MAX connections may
    be opening at once (from the upgrade until the hello is verified or the connection ends), and at most
    PTA_AGENT_OPENINGS_PER_ADDRESS of them from one client address (an IPv6 address counts as its /64): an opening
    beyond either is accepted and closed at once with TRY_LATER (agents.routing.AgentOpenings), nothing else made,
    and the agent comes back after its jittered backoff.

    An agent sends its hello as soon as it reads the challenge, so the places a peer holds with connections that
    stay silent are taken back when someone else needs them (the silent connection closed with
    HANDSHAKE_TIMEOUT):
    - when the node is full, an opening from a network (IPv4 /24, IPv6 /48) that holds fewer places than the
      network holding the most, less one, takes the place of that network's oldest silent connection at once:
      a peer that fills the node from a few networks cannot keep anyone else out;
    - otherwise, the oldest connection silent for PTA_AGENT_SILENT_SECONDS (of the same address, when that
      address's share is what is full) gives its place to the new opening.
    What is left to a peer with places in very many networks is the network's own defence (docs/SECURITY.md)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.in_progress = 0
        self.refused = 0  # since the process started: for the logs, /metrics and the benchmark
        self.evicted = 0  # silent connections closed to make room
        self._clock = clock
        self._by_address: dict[str, int] = {}
        self._by_network: dict[str, int] = {}
        self._silent: dict[Opening, None] = {}  # the openings with no hello yet, oldest first

    @staticmethod
    def address_keys(address: str) -> tuple[str, str]:
        """The address's share key (an IPv4 address, an IPv6 /64) and its network (IPv4 /24, IPv6 /48)."""
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return address, address
        if parsed.version == 4:
            return address, str(ipaddress.ip_network(f"{address}/24", strict=False))
        return (str(ipaddress.ip_network(f"{address}/64", strict=False)),
                str(ipaddress.ip_network(f"{address}/48", strict=False)))

    def begin(self, address: str) -> Opening | None:
        """A place for a new connection from ``address`` (end it once), or None: it is to be told to try later."""
        key, network = self.address_keys(address)
        address_full = self._by_address.get(key, 0) >= settings.PTA_AGENT_OPENINGS_PER_ADDRESS
        if address_full or self.in_progress >= settings.PTA_AGENT_OPENINGS_MAX:
            victim = (self._oldest_silent(lambda opening: opening.key == key, aged=True) if address_full
                      else self._fair_victim(network) or self._oldest_silent(lambda opening: True, aged=True))
            if victim is None:
                self.refused += 1
                return None
            self.evicted += 1
            victim.evict()
        opening = Opening(self, key, network, self._clock())
        self.in_progress += 1
        self._by_address[key] = self._by_address.get(key, 0) + 1
        self._by_network[network] = self._by_network.get(network, 0) + 1
        self._silent[opening] = None
        return opening

    def _oldest_silent(self, which: Callable[[Opening], bool], *, aged: bool) -> Opening | None:
        quiet_since = self._clock() - settings.PTA_AGENT_SILENT_SECONDS
        for opening in self._silent:  # oldest first
            if aged and opening.opened_at > quiet_since:
                return None  # the rest are younger
            if which(opening):
                return opening
        return None

    def _fair_victim(self, network: str) -> Opening | None:
        """The oldest silent connection of the network holding the most places, if the newcomer's holds fewer
        (less one, so that two networks never trade one place back and forth)."""
        silent_networks = {opening.network for opening in self._silent}
        if not silent_networks:
            return None
        largest = max(silent_networks, key=lambda name: self._by_network[name])
        if self._by_network.get(network, 0) >= self._by_network[largest] - 1:
            return None
        return self._oldest_silent(lambda opening: opening.network == largest, aged=False)

    def _heard(self, opening: Opening) -> None:
        self._silent.pop(opening, None)

    def _end(self, opening: Opening) -> None:
        self._silent.pop(opening, None)
        self.in_progress -= 1
        for counts, name in ((self._by_address, opening.key), (self._by_network, opening.network)):
            if (left := counts[name] - 1) > 0:
                counts[name] = left
            else:
                del counts[name]


class Opening:
    """One connection's place in OpeningAdmission, given back once: when its hello is verified, when it ends, or
    when it is evicted for its silence (``on_evict``, set by the consumer, then closes it; a consumer that starts
    after its opening was evicted closes at once: ``evicted``)."""

    def __init__(self, admission: OpeningAdmission, key: str, network: str, opened_at: float) -> None:
        self._admission: OpeningAdmission | None = admission
        self.key = key
        self.network = network
        self.opened_at = opened_at
        self.evicted = False
        self.on_evict: Callable[[], object] | None = None

    def heard(self) -> None:
        """Its hello came: it may wait for verification without being taken for a silent connection."""
        if self._admission is not None:
            self._admission._heard(self)

    def evict(self) -> None:
        self.evicted = True
        self.end()
        if self.on_evict is not None:
            self.on_evict()

    def end(self) -> None:
        if self._admission is not None:
            self._admission._end(self)
            self._admission = None


openings = OpeningAdmission()
OPENING_SCOPE_KEY = "pta_opening"  # the connection's Opening in its ASGI scope


async def close_at_opening(receive: Callable, send: Callable, code: protocol.CloseCode) -> None:
    """Answer a WebSocket opening with ``code`` and nothing else (no consumer, no channel). Accepted first: a
    refusal before it is an HTTP 403, which tells the agent nothing."""
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": int(code)})


def opening_of(scope: Mapping[str, Any]) -> Opening | None:
    """The connection's place among the openings (None for a consumer served without agents.routing's door)."""
    return scope.get(OPENING_SCOPE_KEY)


def local_agents_leave(*, drain_seconds: float) -> list[asyncio.Task[Any]]:
    """This node is stopping (config/drain.py): each local agent gets no new request, its presence goes, and once
    its requests here are answered its connection closes with NODE_LEAVING, so it reconnects to another node at
    once. The closing tasks, to wait for."""
    return [in_background(connection.close_for(protocol.CloseCode.NODE_LEAVING, "this node is stopping",
                                               drain_seconds=drain_seconds))
            for connection in local_agents.all()]


class PresenceKeeper:
    """Runs while this loop has local agents; exits when the last one leaves (a new one restarts it)."""

    def __init__(self) -> None:
        self.last_seen_written = 0.0
        self.last_refusal_check = 0.0

    async def run(self) -> None:
        flush = settings.PTA_PRESENCE_FLUSH_SECONDS
        registry_failing = False
        while len(local_agents):
            await asyncio.sleep(flush)
            consumers = local_agents.all()
            now = time.time()
            silent = [c for c in consumers if now - c.last_beat > protocol.PRESENCE_TTL_SECONDS]
            for consumer in silent:  # the agent stopped beating: let it reconnect rather than look present
                in_background(consumer.close_for(protocol.CloseCode.PROTOCOL_ERROR, "heartbeat missed"))
            live = [c for c in consumers if c not in silent and c.presence_published and not c.closing]
            try:
                await presence_registry().publish([c.presence_record() for c in live])
                if registry_failing:
                    logger.warning("presence registry reachable again; %d agent(s) republished", len(live))
                registry_failing = False
            except Exception as exc:  # Redis away: keep serving local agents, retry next tick
                if not registry_failing:
                    logger.warning("presence registry unreachable: %s", exc)
                registry_failing = True
            write_last_seen = now - self.last_seen_written >= settings.PTA_LAST_SEEN_SECONDS
            if write_last_seen or now - self.last_refusal_check >= settings.PTA_REVOCATION_CHECK_SECONDS:
                self.last_refusal_check = now
                if write_last_seen:
                    self.last_seen_written = now
                await self.touch_last_seen(live, write=write_last_seen)

    async def touch_last_seen(self, consumers: list[LocalConnection], *, write: bool = True) -> None:
        beaten = {c.agent_id for c in consumers if c.last_beat > c.last_seen_written} if write else set()
        if not consumers:
            return

        def write_and_check() -> dict[str, protocol.CloseCode | tuple[str, ...]]:
            if beaten:
                agent_last_seen_touch(agent_ids=beaten)
            return agents_current(agent_ids=[c.agent_id for c in consumers])

        try:
            current = await database_sync_to_async(write_and_check)()
        except Exception:
            logger.exception("could not write last_seen")
            return
        now = time.time()
        for consumer in consumers:
            if consumer.agent_id in beaten:
                consumer.last_seen_written = now
            if consumer.agent_id in current:
                await consumer.apply_current(current[consumer.agent_id])


_keepers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


def keeper_ensure_running() -> None:
    """Start this loop's keeper unless it runs (call after adding a local agent)."""
    loop = asyncio.get_running_loop()
    for other in [lp for lp in _keepers if lp.is_closed()]:
        del _keepers[other]
    task = _keepers.get(loop)
    if task is None or task.done():
        _keepers[loop] = loop.create_task(PresenceKeeper().run(), name="pta-presence-keeper")
