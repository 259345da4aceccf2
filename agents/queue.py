"""Waiting for an agent slot: a sign-in that finds every agent of its tenant busy waits here instead of being
refused. First come, first served per tenant (in this process), bounded (PTA_SIGNIN_QUEUE_LENGTH), and always
within the sign-in's own deadline.

Only the sign-in at the head of its tenant's line may take a slot; the others wait for their turn without
polling. The head is woken when a local agent frees a slot, and otherwise looks again every POLL_SECONDS (a slot
freed on another node shows in that agent's presence record, republished as soon as it stops being full).

    ticket = slot_queues.join(tenant_id, limit=…)   # raises QueueFull
    await slot_queues.wait(ticket, timeout=…)      # returns when it is worth looking for a slot again
    slot_queues.leave(ticket)                      # took a slot, or gave up: the next in line is the head
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field

POLL_SECONDS = 0.05


class QueueFull(Exception):
    """The line is as long as it may be: the sign-in ends as too_many_signins."""


@dataclass(eq=False)
class Ticket:
    key: str  # the line: a tenant's agents, or (for lockout) an account's guesses
    joined: float = field(default_factory=time.monotonic)
    # Resolved when this ticket reaches the head of its line; made in the running loop (join runs in it).
    turn: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def waited(self) -> float:
        return time.monotonic() - self.joined


class SlotQueues:
    """Lines of waiters by key; only the head of a line looks for a slot."""

    def __init__(self) -> None:
        self._lines: dict[str, collections.deque[Ticket]] = {}
        self._heads: dict[str, asyncio.Event] = {}  # each line's head's wake-up, one wait at a time

    def length(self, key: str) -> int:
        return len(self._lines.get(key, ()))

    def lengths(self) -> dict[str, int]:
        return {tenant: len(line) for tenant, line in self._lines.items() if line}

    def oldest_wait(self, key: str) -> float:
        line = self._lines.get(key)
        return line[0].waited if line else 0.0

    def join(self, key: str, *, limit: int) -> Ticket:
        line = self._lines.setdefault(key, collections.deque())
        if len(line) >= limit:
            raise QueueFull(f"{len(line)} sign-ins already wait in line {key}")
        ticket = Ticket(key)
        line.append(ticket)
        if len(line) == 1:
            ticket.turn.set_result(None)
        return ticket

    def at_head(self, ticket: Ticket) -> bool:
        line = self._lines.get(ticket.key)
        return bool(line and line[0] is ticket)

    async def wait(self, ticket: Ticket, *, timeout: float) -> None:
        """Until it is worth looking for a slot again: this ticket has just become the head, or, already the
        head, a slot was freed here or a poll is due. Bounded by ``timeout``."""
        if timeout <= 0:
            return
        if not ticket.turn.done():
            try:
                await asyncio.wait_for(asyncio.shield(ticket.turn), timeout)
            except TimeoutError:
                pass
            return
        freed = self._heads[ticket.key] = asyncio.Event()
        try:
            await asyncio.wait_for(freed.wait(), min(POLL_SECONDS, timeout))
        except TimeoutError:
            pass
        finally:
            if self._heads.get(ticket.key) is freed:
                del self._heads[ticket.key]

    def leave(self, ticket: Ticket) -> None:
        line = self._lines.get(ticket.key)
        if not line:
            return
        was_head = line[0] is ticket
        try:
            line.remove(ticket)
        except ValueError:
            return
        if not ticket.turn.done():
            ticket.turn.cancel()
        if was_head and line:
            head = line[0]
            if not head.turn.done():
                head.turn.set_result(None)
        if not line:
            del self._lines[ticket.key]

    def slot_freed(self, key: str) -> None:
        """A slot of this line was freed here (a local agent finished a request): its head may take it."""
        event = self._heads.get(key)
        if event is not None:
            event.set()


slot_queues = SlotQueues()
