"""One request handed to an agent, from the moment it is sent until its result, and the one wait for it.

Whoever hears from the agent settles it: the consumer of a local agent (``ack``, ``resolve``, ``fail``), or this
process's reply channel for an agent on another node. The asker only ever calls ``wait``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pta_protocol as protocol

from agents.handoff import AgentAckTimeout, AgentDisconnected, AgentRequestError, AgentTimeout

# While an ack is late, how often ``moved`` is asked whether the agent's connection is still where it was sent.
MOVED_CHECK_SECONDS = 0.25
HEARD_AGAIN_GRACE_SECONDS = 2 * MOVED_CHECK_SECONDS


@dataclass(eq=False)
class PendingRequest:
    request_id: str
    acked: asyncio.Future[None] = field(repr=False)
    result: asyncio.Future[protocol.Result] = field(repr=False)
    sent_at: float = field(default_factory=time.monotonic)

    @classmethod
    def start(cls, request_id: str) -> PendingRequest:
        loop = asyncio.get_running_loop()
        return cls(request_id=request_id, acked=loop.create_future(), result=loop.create_future())

    def ack(self) -> None:
        if not self.acked.done():
            self.acked.set_result(None)

    def resolve(self, result: protocol.Result) -> None:
        self.ack()  # a result implies the ack
        if not self.result.done():
            self.result.set_result(result)

    def fail(self, exc: Exception) -> None:
        """Before the ack, the ack fails too: the asker learns it there, without waiting for a result."""
        for future in (self.acked, self.result):
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved here: nobody may be awaiting an ack that never came

    def give_up(self) -> None:
        """The asker stops waiting: whatever is unsettled is cancelled (a consumer frees the agent's slot then)."""
        for future in (self.acked, self.result):
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # a late failure is not an "exception never retrieved"

    async def wait(self, *, ack_timeout: float, result_timeout: float,
                   moved: Callable[[], Awaitable[bool]] | None = None,
                   deaf: Callable[[], bool] | None = None) -> protocol.Result:
        """The agent's Result. Before the ack: AgentAckTimeout, or how the request failed (AgentUnavailable and
        its kinds, AgentRequestError), or AgentDisconnected as soon as ``moved()`` says the connection it was
        sent to is gone (asked every MOVED_CHECK_SECONDS while the ack is late: a node that left takes its
        requests with it). While ``deaf()`` says this process cannot hear the answer (its reply channel is down:
        Redis restarting), the ack's clock stops: the ack may be on its way and the agent binding, so no other
        agent may be asked; it runs again once the answers can come (the serving node sends them again until the
        request expires), never past ``result_timeout``. ``deaf`` is asked with ``moved``. After the ack:
        AgentTimeout when no result came by ``result_timeout`` or the agent disconnected, AgentRequestError for
        an error frame. Both timeouts count from the send."""
        try:
            await self._wait_ack(ack_timeout, moved, deaf, result_timeout)
            try:
                return await asyncio.wait_for(asyncio.shield(self.result), max(0.0, result_timeout - self._elapsed()))
            except TimeoutError:
                raise AgentTimeout(f"no result within {result_timeout:.2f} s") from None
            except AgentDisconnected:  # acked: the bind may have happened, so no other agent may try it
                raise AgentTimeout("the agent disconnected after its ack") from None
            except AgentRequestError as exc:  # acked: the same, whatever the code
                exc.acked = True
                raise
        finally:
            self.give_up()

    async def _wait_ack(self, ack_timeout: float, moved: Callable[[], Awaitable[bool]] | None,
                        deaf: Callable[[], bool] | None, result_timeout: float) -> None:
        deaf_for = 0.0  # how long, in all, this process could not have heard the ack
        checked = self._elapsed()

        def due() -> float:  # when the ack is due: its timeout, plus the time unheard, up to the result's
            # Once this process hears again, the agent's node resends what nobody heard every RESEND_SECONDS
            # (relay.py, the same MOVED_CHECK_SECONDS): at least two of those are waited for, whatever of the ack's
            # timeout went before the deafness was noticed (under load it can be most of it).
            grace = HEARD_AGAIN_GRACE_SECONDS if deaf_for else 0.0
            return max(ack_timeout, min(ack_timeout + deaf_for + grace, result_timeout))

        while True:
            left = due() - self._elapsed()
            try:
                await asyncio.wait_for(asyncio.shield(self.acked),
                                       max(0.0, left if moved is None else min(left, MOVED_CHECK_SECONDS)))
                return
            except TimeoutError:
                now = self._elapsed()
                if deaf is not None and deaf():
                    deaf_for += now - checked
                checked = now
                if now >= due():
                    raise AgentAckTimeout(f"no ack within {ack_timeout:.2f} s"
                                          + (f" (and {deaf_for:.2f} s unheard)" if deaf_for else "")) from None
            if moved is not None and not self.acked.done() and await moved():
                raise AgentDisconnected("no ack, and the agent's connection is no longer there")

    def _elapsed(self) -> float:
        return time.monotonic() - self.sent_at
