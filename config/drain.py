"""A node that gets SIGTERM drains before it exits, so a rolling restart loses no sign-in.

    SIGTERM ─▶ stop listening (nginx's new connections are refused and go to another node, even a POST's:
               nothing was sent yet)
            ─▶ requests in flight answered, each with ``Connection: close`` (nginx stops reusing its connections);
               the agents connected here still serve them, and every other node's sign-ins too
            ─▶ until the clients have closed their idle keep-alive connections (nginx's upstream
               keepalive_timeout, 2 s in deploy/nginx/pta-portal.conf), at most PTA_DRAIN_LINGER_SECONDS: a
               request written on one just as the node closed it would be lost (a POST is not retried); one that
               still comes is served, with this node's agents, and Connection: close
            ─▶ each agent connected here: no new request, presence withdrawn, its requests answered, then closed
               with NODE_LEAVING (it reconnects at once, through nginx, to another node; sign-ins that looked for
               it meanwhile wait for its new presence: agents/services/dispatch.py)
            ─▶ the reactor stops: Daphne's own shutdown (what is left is cancelled), exit 0
    a second SIGTERM, or PTA_DRAIN_SECONDS passed ─▶ the reactor stops at once

Daphne has no drain of its own: Twisted's SIGTERM handler stops the reactor, whose shutdown cancels every
request in flight (nginx then answers 502, and rightly never retries a POST). So once the reactor runs (its own
handlers installed), ``drain_install`` puts this module's handler in their place. It touches Twisted through
its public interfaces only (``callWhenRunning``, ``callFromThread``, ``getReaders``, ``IListeningPort``), and
does nothing under any other server (the tests' ASGI communicators).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pta_protocol as protocol
from django.conf import settings

from agents.connections import close_at_opening, local_agents, local_agents_leave

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class NodeState:
    """This process: HTTP requests in flight, and whether it is draining."""

    def __init__(self) -> None:
        self.http_in_flight = 0
        self.draining = False
        self.started: float | None = None
        self.last_request_at = 0.0  # time.monotonic() of the newest HTTP request's start


node_state = NodeState()


class DrainAware:
    """ASGI wrapper: counts HTTP requests in flight; while draining, answers each with ``Connection: close``, and
    sends an agent that connects anyway (nginx reuses its idle keep-alive connections to this node for the
    WebSocket upgrade too) on at once with NODE_LEAVING."""

    def __init__(self, app: ASGIApp, state: NodeState = node_state) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        if scope["type"] == "websocket" and state.draining:
            await close_at_opening(receive, send, protocol.CloseCode.NODE_LEAVING)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: dict) -> None:
            if state.draining and message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        state.http_in_flight += 1
        state.last_request_at = time.monotonic()
        try:
            await self.app(scope, receive, send_closing)
        finally:
            state.http_in_flight -= 1


def drain_install() -> None:
    """Under Daphne: SIGTERM drains this node (the module docstring) instead of stopping it at once."""
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None or "daphne.server" not in sys.modules:
        return
    # After startup: Twisted installs its signal handlers while starting, so this one replaces them.
    reactor.callWhenRunning(_take_sigterm, reactor)


def _take_sigterm(reactor: Any) -> None:
    def on_sigterm(signum: int, frame: object) -> None:
        reactor.callFromThread(_on_sigterm, reactor)

    signal.signal(signal.SIGTERM, on_sigterm)


def _on_sigterm(reactor: Any) -> None:
    if node_state.draining:  # the second one: stop now
        logger.warning("second SIGTERM while draining: stopping now")
        reactor.stop()
        return
    node_state.draining = True
    node_state.started = time.monotonic()
    task = asyncio.get_event_loop().create_task(_drain_then_stop(reactor), name="pta-drain")
    _tasks.add(task)


_tasks: set[asyncio.Task[None]] = set()


async def _drain_then_stop(reactor: Any) -> None:
    try:
        await drain(stop_listening=lambda: _stop_listening(reactor),
                    open_connections=lambda: _open_connections(reactor))
    except Exception:
        logger.exception("draining failed; stopping")
    if reactor.running:
        reactor.stop()


QUIET_SECONDS = 0.5  # with no new request for this long, the clients are taken to have stopped


async def drain(*, stop_listening: Callable[[], int], open_connections: Callable[[], int] = lambda: 0,
                state: NodeState = node_state, seconds: float | None = None) -> bool:
    """Stop taking connections, let the requests in flight finish and the clients close their connections, then
    let the agents move; True when everything finished within ``seconds`` (PTA_DRAIN_SECONDS)."""
    seconds = settings.PTA_DRAIN_SECONDS if seconds is None else seconds
    deadline = time.monotonic() + seconds
    state.draining = True
    ports = stop_listening()
    logger.info("draining: stopped listening on %d port(s); %d request(s) in flight", ports, state.http_in_flight)
    await _answered(state, deadline)
    # The clients' idle keep-alive connections next (every reader but the agents' own sockets), while the agents
    # are still here: a request written on one now is served with this node's agents (a node alone has no other
    # to send it to), then answered with Connection: close.
    # Connections are counted where Twisted lets them be; a request that started less than QUIET_SECONDS ago
    # says a client is still at work on one, counted or not.
    linger = min(deadline, time.monotonic() + settings.PTA_DRAIN_LINGER_SECONDS)
    while ((open_connections() > len(local_agents) or state.http_in_flight
            or time.monotonic() - state.last_request_at < QUIET_SECONDS) and time.monotonic() < linger):
        await asyncio.sleep(0.05)
    leaving = local_agents_leave(drain_seconds=max(0.0, deadline - time.monotonic()))
    logger.info("draining: requests answered; %d agent(s) told to move", len(leaving))
    if leaving:
        await asyncio.wait(leaving, timeout=max(0.0, deadline - time.monotonic()))
    await _answered(state, deadline)  # one that came meanwhile
    finished = not state.http_in_flight and all(task.done() for task in leaving)
    logger.info("drained in %.1f s%s", seconds - max(0.0, deadline - time.monotonic()),
                "" if finished else f"; {state.http_in_flight} request(s) still in flight are cut")
    return finished


async def _answered(state: NodeState, deadline: float) -> None:
    """Until no HTTP request is in flight, or the drain's deadline."""
    while state.http_in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def _open_connections(reactor: Any) -> int:
    from twisted.internet.tcp import Server

    return sum(isinstance(reader, Server) for reader in reactor.getReaders())


def _stop_listening(reactor: Any) -> int:
    from twisted.internet.interfaces import IListeningPort
    from twisted.internet.main import CONNECTION_DONE
    from twisted.python.failure import Failure

    ports = [reader for reader in reactor.getReaders() if IListeningPort.providedBy(reader)]
    for port in ports:
        # First accept what the kernel already accepted for us (its backlog): closing the socket would reset those
        # connections, on which a client (nginx) may have written its request already, a POST it would not retry.
        # Then close it at once: stopListening() closes it a turn of the loop later, and a connection the kernel
        # completed in between was reset (a client saw its request dropped).
        port.stopReading()
        port.doRead()
        port.connectionLost(Failure(CONNECTION_DONE))
    return len(ports)
