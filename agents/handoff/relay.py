"""Both paths of the hand-off: to an agent connected to this process, and to one connected to another node.

Asking side: ``hand_over`` gives the request to the local connection, or sends it to the node that holds the
agent (RelayedRequest) and registers it with this process's one reply channel, where that node's answers arrive
and are matched by request id (a channel per request would never be unsubscribed by the pub/sub layer). Either
way the asker then waits on the PendingRequest.

Serving side: ``serve_relayed`` (called by the connection's consumer) sends a relayed request to the agent and
forwards its ack and its result, or how it failed, to the asking node, until the request expires.

Pub/sub delivers a message only to whoever is subscribed at that moment: after a Redis restart each node's
subscriptions are back only once its receiving connection has reconnected (about a second later), and what was
published meanwhile is lost without an error (agents/handoff/layer.py). So both sides send again what no one heard:
the request, until its ack is due (nothing reached the agent: no bind happened), and the ack and the result, until
the request expires. And the asker neither relays a request nor counts the ack's time while its own reply channel
is down: an ack it could not hear must not send the sign-in to a second agent while the first binds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import pta_protocol as protocol
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings

from agents.connections import LocalConnection, in_background, local_agents
from agents.handoff import (
    AgentAckTimeout,
    AgentDisconnected,
    AgentRequestError,
    AgentUnavailable,
    LayerUnavailable,
)
from agents.handoff.layer import listening, send_heard
from agents.handoff.messages import (
    NodeMessage,
    NodeMessageError,
    RelayedAck,
    RelayedFailure,
    RelayedRequest,
    RelayedResult,
    reply_from_message,
    version_for,
)
from agents.handoff.pending import MOVED_CHECK_SECONDS, PendingRequest
from agents.presence import presence_registry

logger = logging.getLogger(__name__)


async def hand_over(request: protocol.Request, *, agent_id: str, channel_name: str, local: bool,
                    ack_timeout: float, result_timeout: float, node_protocol: int = 1) -> protocol.Result:
    """Give ``request`` to the agent (on this node when ``local``, else at ``channel_name``) and wait for its ack,
    then its result: PendingRequest.wait's exceptions, and AgentUnavailable when it could not be sent (within
    ``ack_timeout``, for the relayed path). A relayed request whose ack is late is given up as soon as the agent's
    presence no longer names ``channel_name`` (its node left: the agent is elsewhere, or not yet back).
    ``node_protocol``: what the agent's node reads (its presence says), so the message is one it knows."""
    if local:
        connection = local_agents.get(agent_id)
        if connection is None:
            raise AgentDisconnected("gone")
        try:
            pending = await connection.send_request(request)
        except ValueError as exc:  # sealed for a key the agent no longer has (it renewed meanwhile), or its rights
            raise AgentUnavailable(str(exc)) from None  # changed: nothing was sent
        return await pending.wait(ack_timeout=ack_timeout, result_timeout=result_timeout)

    async def moved() -> bool:
        try:
            async with asyncio.timeout(MOVED_CHECK_SECONDS):
                record = await presence_registry().for_agent(agent_id=agent_id)
        except Exception:  # Redis away or slow: no word either way; the ack's own timeout still holds
            return False
        return record is None or record.channel_name != channel_name

    pending = await reply_channel.send(channel_name, request, timeout=ack_timeout, node_protocol=node_protocol,
                                       moved=moved)
    return await pending.wait(ack_timeout=ack_timeout, result_timeout=result_timeout, moved=moved,
                              deaf=reply_channel.deaf)


class ReplyChannel:
    """This process's one reply channel: request id → the pending request relayed to another node."""

    def __init__(self) -> None:
        self.waiters: dict[str, PendingRequest] = {}
        # The listener, referenced here while it runs, and the name of its channel once the layer has given one:
        # one per event loop, however many sign-ins start relaying at once.
        self._task: asyncio.Task[None] | None = None
        self._name: asyncio.Future[str] | None = None

    async def ensure_listening(self) -> str:
        loop = asyncio.get_running_loop()
        name = self._name
        if name is None or self._task is None or self._task.done() or self._task.get_loop() is not loop:
            name = self._name = loop.create_future()
            self._task = loop.create_task(self._listen(name), name="pta-reply-channel")
        return await asyncio.shield(name)

    async def _listen(self, name: asyncio.Future[str]) -> None:
        layer = _layer()
        try:
            # Both layers we configure take a prefix (the stubs' base class does not declare it).
            name.set_result(await layer.new_channel("pta-replies."))  # type: ignore[call-arg]
        except Exception as exc:  # Redis away: the senders waiting for the name fail; the next one starts again
            name.set_exception(exc)
            return
        while True:
            try:
                message = await layer.receive(name.result())
            except Exception:  # Redis away: keep listening; waiters end at their own deadlines
                logger.warning("reply channel receive failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            self.deliver(message)

    def deaf(self) -> bool:
        """Whether an answer sent to this process now would reach no one: its reply channel is not listening
        (its subscription is down until the layer reconnects to a restarted Redis)."""
        name = self._name
        if name is None or not name.done() or name.cancelled() or name.exception() is not None:
            return True
        return not listening(name.result())

    def deliver(self, message: object) -> None:
        """Settle the pending request this answer is about; a late one (given up already) is dropped."""
        try:
            reply = reply_from_message(message)
        except NodeMessageError as exc:
            logger.warning("dropped a message on the reply channel: %s", exc)
            return
        pending = self.waiters.get(reply.request_id)
        if pending is None:
            return
        match reply:
            case RelayedAck():
                pending.ack()
            case RelayedResult():
                try:
                    pending.resolve(reply.frame())
                except protocol.ProtocolError:
                    pending.ack()  # the agent answered: it had the request
                    pending.fail(AgentRequestError("malformed", "The agent's result was malformed."))
            case RelayedFailure():
                pending.fail(reply.exception())

    async def send(self, channel_name: str, request: protocol.Request, *, timeout: float, node_protocol: int = 1,
                   moved: Callable[[], Awaitable[bool]] | None = None) -> PendingRequest:
        """Send ``request`` to the connection at ``channel_name`` on another node; its answers settle the pending
        request returned. Not before this process listens on its reply channel again (after a Redis restart): the
        agent's ack would be lost, the ack's timeout would pass, and the sign-in would go to a second agent while
        the first one binds. While no one listens at ``channel_name`` (that node is subscribing again after a
        Redis restart, or has gone), it is sent again every RESEND_SECONDS: nothing reached the agent, so no
        bind happened.
        AgentUnavailable when it could not be sent within ``timeout`` (the layer's Redis connection has no
        socket timeout: a Redis that stops answering would hold the sign-in past its deadline): LayerUnavailable
        when the layer failed, AgentAckTimeout when no one heard it, AgentDisconnected as soon as ``moved()``
        says the connection is no longer the agent's.
        """
        pending = PendingRequest.start(request.request_id)  # the ack is due within its timeout from here
        self.waiters[request.request_id] = pending
        pending.result.add_done_callback(lambda _: self.waiters.pop(request.request_id, None))
        unheard = False  # a send reached no one: then the time ran out on that (the layer answers)
        try:
            async with asyncio.timeout(timeout):
                reply_to = await self.ensure_listening()
                while not listening(reply_to):  # the agent's ack could not come back: it must not have the request
                    await asyncio.sleep(RESEND_SECONDS)
                message = RelayedRequest.of(request, reply_to=reply_to, version=node_protocol).to_message()
                while await send_heard(channel_name, message) == 0:  # 0: no one; None: a layer that cannot tell
                    unheard = True
                    if moved is not None and await moved():
                        raise AgentDisconnected("no one listens at the agent's connection, which is no longer there")
                    await asyncio.sleep(RESEND_SECONDS)
        except AgentDisconnected:
            pending.give_up()
            raise
        except Exception as exc:  # Redis away or stalled: no ack can come in time, so the sign-in may go elsewhere
            pending.give_up()
            if unheard and isinstance(exc, TimeoutError):  # the layer works: the agent's node is not listening
                raise AgentAckTimeout(f"no one listened at the agent's connection for {timeout:.2f} s") from None
            raise LayerUnavailable(f"channel layer: {exc!r}") from None
        except BaseException:  # the sign-in was cancelled: nobody waits for an answer any more
            pending.give_up()
            raise
        return pending


# While a relayed message reaches no one (the receiving node subscribes again after a Redis restart, or has gone),
# how often it is sent again, and an answer while the layer fails: as often as a late ack's ``moved`` is asked.
RESEND_SECONDS = MOVED_CHECK_SECONDS


reply_channel = ReplyChannel()


async def serve_relayed(connection: LocalConnection, message: object) -> None:
    """A request relayed by another node, for the agent of ``connection``: send it, then answer the asking node."""
    try:
        relayed = RelayedRequest.from_message(message)
    except NodeMessageError as exc:
        logger.warning("dropped a relayed request: %s", exc)
        return
    try:
        request = relayed.frame()
        pending = await connection.send_request(request)
    except (AgentUnavailable, ValueError, protocol.ProtocolError) as exc:
        # Not awaited here: the connection handles nothing else (the agent's frames included) until this returns.
        in_background(_answer(relayed.reply_to, RelayedFailure.of(relayed.request_id, exc,
                                                                  version=relayed.version)))
        return
    in_background(_forward(pending, reply_to=relayed.reply_to, expires_at=request.expires_at,
                           version=relayed.version))


def answer_unknown(message: dict) -> None:
    """A message of a kind this node does not know, for an agent's connection (a newer node's): when it says
    where to answer, the asker hears ``unsupported`` (it then asks another agent; no bind happened here)."""
    reply_to, request_id = message.get("reply_to"), message.get("request_id")
    logger.warning("ignored a message of unknown type %r", str(message.get("type"))[:60])
    if isinstance(reply_to, str) and isinstance(request_id, str):
        version = message.get("version")
        failure = RelayedFailure(request_id=request_id, reason="error", code="unsupported",
                                 message="This node does not know that kind of message.",
                                 version=version_for(version if isinstance(version, int) else 1))
        in_background(_answer(reply_to, failure))


async def _forward(pending: PendingRequest, *, reply_to: str, expires_at: float, version: int) -> None:
    """The agent's ack, then its result (or how the request failed), to the asking node. The asker has given up
    by the request's expiry: then the request is given up here too, which frees the agent's slot."""
    try:
        async with asyncio.timeout(max(0.0, expires_at - time.time())):
            try:
                await asyncio.shield(pending.acked)
                # The usual answer follows its ack within milliseconds (one bind and one read): held for a moment,
                # the ack rides with the result (a result implies it, PendingRequest.resolve), one message less
                # through the layer per relayed sign-in. A failure is always sent after its ack, never for it: a
                # failure before the ack tells the asker no bind happened.
                await asyncio.wait([pending.result], timeout=ack_hold_seconds())
                if not pending.result.done() or pending.result.cancelled() or pending.result.exception():
                    await _answer(reply_to, RelayedAck(request_id=pending.request_id, version=version_for(version)),
                                  until=expires_at)
                result = await asyncio.shield(pending.result)
            except Exception as exc:  # an error frame, or the agent disconnected: the asker decides what it means
                await _answer(reply_to, RelayedFailure.of(pending.request_id, exc, version=version), until=expires_at)
                return
            await _answer(reply_to, RelayedResult.of(result, version=version), until=expires_at)
    except TimeoutError:
        pending.give_up()


def ack_hold_seconds() -> float:
    """How long a relayed request's ack waits for its result to ride with: well inside the asker's ack deadline
    (PTA_AGENT_ACK_SECONDS, the same on every node), at most 50 ms."""
    return min(ACK_HOLD_SECONDS, settings.PTA_AGENT_ACK_SECONDS / 5)


ACK_HOLD_SECONDS = 0.05


def _layer() -> BaseChannelLayer:
    layer = get_channel_layer()
    assert layer is not None  # both profiles configure one (config/settings/channels.py)
    return layer


async def _answer(reply_to: str, message: NodeMessage, *, until: float = 0.0) -> None:
    """Send ``message`` to the asking node; while no one hears it there (its node subscribes again after a Redis
    restart) or the layer fails (Redis restarting), again every RESEND_SECONDS until ``until`` (epoch seconds: the
    request's expiry), as the asker still waits. A node that has gone is sent to until then, no longer."""
    while True:
        try:
            if await send_heard(reply_to, message.to_message()) != 0:
                return
            failed: Exception | None = None
        except Exception as exc:
            failed = exc
        if time.time() + RESEND_SECONDS >= until:
            logger.warning("could not send the agent's answer back to %s: %s", reply_to,
                           repr(failed) if failed is not None else "no one listens there", exc_info=failed)
            return
        await asyncio.sleep(RESEND_SECONDS)
