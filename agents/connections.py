"""The agents connected to THIS process, and the task that keeps their presence and last_seen current.

Two things live here rather than in the consumer because they are per process, not per connection:

- ``local_agents``: agent id → live ``AgentConsumer``; the hand-off gives a request to a local agent in
  process (no channel layer on that path).
- ``PresenceKeeper``: one task per event loop that republishes every local agent's presence each
  ``PTA_PRESENCE_FLUSH_SECONDS`` in one Redis call, writes ``last_seen`` at most every
  ``PTA_LAST_SEEN_SECONDS`` in one UPDATE, closes connections of agents revoked, deleted or expired meanwhile
  and gives the others their current domains (a safety net for a broadcast lost while Redis was away).
  Heartbeats themselves touch neither Redis nor the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING

import pta_protocol as protocol
from django.conf import settings

if TYPE_CHECKING:
    from agents.consumers import AgentConsumer

logger = logging.getLogger(__name__)


_background: set[asyncio.Task] = set()


def in_background(coroutine) -> asyncio.Task:
    """Start a task nobody awaits, referenced until it ends (the event loop keeps only weak references to tasks,
    so an unreferenced one may be collected before it runs to the end)."""
    task = asyncio.ensure_future(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


def node_id() -> str:
    """Names this process in presence records: PTA_NODE_ID, or hostname:pid."""
    return getattr(settings, "PTA_NODE_ID", "") or f"{socket.gethostname()}:{os.getpid()}"


def agent_group(agent_id: str | uuid.UUID) -> str:
    """The channel-layer group an agent's live connection joins, wherever it is: revocation reaches it."""
    return f"agent.{uuid.UUID(str(agent_id)).hex}"


class LocalAgents:
    """Agent id → the live consumer in this process. The newest connection of an agent wins."""

    def __init__(self) -> None:
        self._consumers: dict[str, AgentConsumer] = {}

    def add(self, consumer: AgentConsumer) -> None:
        self._consumers[consumer.agent_id] = consumer
        keeper_ensure_running()

    def discard(self, consumer: AgentConsumer) -> None:
        if self._consumers.get(consumer.agent_id) is consumer:
            del self._consumers[consumer.agent_id]

    def get(self, agent_id: str) -> AgentConsumer | None:
        return self._consumers.get(str(agent_id))

    def all(self) -> list[AgentConsumer]:
        return list(self._consumers.values())

    def __len__(self) -> int:
        return len(self._consumers)


local_agents = LocalAgents()


class PresenceKeeper:
    """Runs while this loop has local agents; exits when the last one leaves (a new one restarts it)."""

    def __init__(self) -> None:
        self.last_seen_written = 0.0
        self.last_refusal_check = 0.0

    async def run(self) -> None:
        from agents.presence import presence_registry

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

    async def touch_last_seen(self, consumers: list[AgentConsumer], *, write: bool = True) -> None:
        from channels.db import database_sync_to_async

        from agents.services.lifecycle import agent_last_seen_touch, agents_current

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


_keepers: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}


def keeper_ensure_running() -> None:
    loop = asyncio.get_running_loop()
    for other in [lp for lp in _keepers if lp.is_closed()]:
        del _keepers[other]
    task = _keepers.get(loop)
    if task is None or task.done():
        _keepers[loop] = loop.create_task(PresenceKeeper().run(), name="pta-presence-keeper")
