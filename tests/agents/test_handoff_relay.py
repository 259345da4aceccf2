"""Both sides of the relayed path (agents/handoff/relay.py) over the production channel layer: channels_redis'
pub/sub layer (agents/handoff/layer.py), configured as config/settings/channels.py does, on a private
redis-server, restarted where the test says."""

import asyncio
import contextlib
import signal
import time

import pta_protocol as protocol
import pytest
import redis.asyncio
from channels.layers import get_channel_layer

from agents.handoff import AgentAckTimeout, AgentUnavailable
from agents.handoff.layer import send_heard
from agents.handoff.messages import RelayedAck, RelayedRequest, RelayedResult
from agents.handoff.relay import ReplyChannel, _answer

REQUEST = protocol.Request(request_id="r-1", tenant="t", domain="alpha.example.test", username="a@alpha.example.test",
                           key_id="k", expires_at=time.time() + 300, sealed={"key": "x"}, signature="s")
RESULT = protocol.Result(request_id="r-1", outcome="success")
HANG = 30  # seconds: only a hang lasts this long, and then the test fails instead of waiting forever


@pytest.fixture
async def layer(settings, redis_server):
    settings.CHANNEL_LAYERS = {"default": {
        "BACKEND": "agents.handoff.layer.PubSubChannelLayer",
        "CONFIG": {"hosts": [{"address": redis_server.url, "socket_timeout": None}], "prefix": "pta-test"},
    }}
    layer = get_channel_layer()
    assert layer is not None
    yield layer
    await layer.flush()


async def test_an_answer_on_the_reply_channel_settles_the_request(layer):
    replies = ReplyChannel()
    connection = await layer.new_channel("connection.")  # where the agent's connection on "node B" listens
    pending = await replies.send(connection, REQUEST, timeout=HANG)
    relayed = RelayedRequest.from_message(await asyncio.wait_for(layer.receive(connection), HANG))
    assert relayed.frame() == REQUEST
    await layer.send(relayed.reply_to, RelayedResult.of(RESULT).to_message())
    assert await pending.wait(ack_timeout=HANG, result_timeout=HANG) == RESULT
    assert replies.waiters == {}


async def test_sign_ins_that_start_relaying_at_once_share_one_reply_channel(layer):
    replies = ReplyChannel()
    names = await asyncio.wait_for(asyncio.gather(*(replies.ensure_listening() for _ in range(5))), HANG)
    assert len(set(names)) == 1  # one listener and one subscription, not one per sign-in left running


async def test_a_redis_that_stops_answering_makes_the_agent_unavailable_instead_of_holding_the_sign_in(
        layer, redis_server):
    replies = ReplyChannel()
    await asyncio.wait_for(replies.ensure_listening(), HANG)
    redis_server.proc.send_signal(signal.SIGSTOP)  # connected, but nothing answers: the layer has no socket timeout
    try:
        with pytest.raises(AgentUnavailable):
            await asyncio.wait_for(replies.send("connection.elsewhere", REQUEST, timeout=0.5), HANG)
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert replies.waiters == {}  # given up: a late answer finds nobody


async def listeners(redis_server, channel: str) -> int:
    """How many connections are subscribed to ``channel`` right now (PUBSUB NUMSUB), asked on a connection of the
    test's own."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        return int((await client.pubsub_numsub(channel))[0][1])
    finally:
        await client.aclose()


async def restarted(redis_server, layer, channel: str) -> None:
    """Redis stopped, and started again once the layer's receiving connection (``channel``'s) has found it gone,
    as when Redis takes a moment to come back: its subscriptions come back only when that connection reconnects,
    a second or so later (channels_redis tries again a second after a failed receive). Its connection for
    sending is broken too, which the first send finds (and drops)."""
    redis_server.stop(kill=True)
    for _ in range(100):
        if not layer.listening(channel):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the layer never found Redis gone")
    redis_server.start()
    with contextlib.suppress(Exception):  # the broken connection: the next send opens a new one
        await layer.send("pta-test.nobody", {"type": "nothing"})


async def test_a_send_says_whether_anyone_heard_it(layer):
    heard = await layer.new_channel("connection.")
    assert await send_heard(heard, {"type": "x"}) == 1
    assert await send_heard("pta-test.connection.nobody", {"type": "x"}) == 0
    assert await asyncio.wait_for(layer.receive(heard), HANG) == {"type": "x"}


async def test_an_answer_sent_while_the_asking_node_subscribes_again_after_a_redis_restart_reaches_it(
        layer, redis_server):
    """The agent_timeout of the Redis restart runs: the agent had answered, the serving node published the result
    to the asking node's reply channel before that node had subscribed again, and it reached no one."""
    replies = ReplyChannel()
    connection = await layer.new_channel("connection.")
    pending = await replies.send(connection, REQUEST, timeout=HANG)
    relayed = RelayedRequest.from_message(await asyncio.wait_for(layer.receive(connection), HANG))
    await restarted(redis_server, layer, relayed.reply_to)
    assert await listeners(redis_server, relayed.reply_to) == 0  # the moment the answer would be lost
    await asyncio.wait_for(_answer(relayed.reply_to, RelayedResult.of(RESULT), until=time.time() + 10), HANG)
    assert await listeners(redis_server, relayed.reply_to) == 1  # the asker subscribed again: then it was heard
    assert await pending.wait(ack_timeout=HANG, result_timeout=5) == RESULT


async def test_a_request_relayed_while_the_agents_node_subscribes_again_after_a_redis_restart_reaches_it(
        layer, redis_server):
    """No one heard it, so no agent has it: sent again until the node holding the agent listens again."""
    replies = ReplyChannel()
    await asyncio.wait_for(replies.ensure_listening(), HANG)
    connection = await layer.new_channel("connection.")
    await restarted(redis_server, layer, connection)
    assert await listeners(redis_server, connection) == 0
    await replies.send(connection, REQUEST, timeout=10)
    relayed = RelayedRequest.from_message(await asyncio.wait_for(layer.receive(connection), 5))
    assert relayed.frame() == REQUEST


async def test_a_request_no_one_hears_until_its_ack_is_due_is_no_ack(layer):
    """The node holding the agent has gone: nothing reached any agent, so the sign-in may go to another one."""
    replies = ReplyChannel()
    started = time.monotonic()
    with pytest.raises(AgentAckTimeout):
        await asyncio.wait_for(replies.send("pta-test.connection.gone", REQUEST, timeout=0.5), HANG)
    assert 0.5 <= time.monotonic() - started < 2
    assert replies.waiters == {}


async def test_an_ack_the_asking_node_could_not_hear_while_redis_was_away_is_waited_for_not_given_up(
        layer, redis_server):
    """The request reached the agent's node just before Redis went away; the ack cannot come back until it is back
    and this node listens again. Giving up at the ack's timeout would ask a second agent while the first binds (a
    guess counted twice by AD): the ack's clock stops while this node cannot hear."""
    replies = ReplyChannel()
    connection = await layer.new_channel("connection.")
    pending = await replies.send(connection, REQUEST, timeout=HANG)
    relayed = RelayedRequest.from_message(await asyncio.wait_for(layer.receive(connection), HANG))

    async def nowhere() -> bool:
        return False

    waiting = asyncio.create_task(pending.wait(ack_timeout=0.5, result_timeout=HANG, moved=nowhere,
                                               deaf=replies.deaf))
    redis_server.stop(kill=True)
    for _ in range(100):
        if replies.deaf():
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # twice the ack's timeout, unheard
    assert not waiting.done()
    redis_server.start()
    until = time.time() + 10
    await _answer(relayed.reply_to, RelayedAck(request_id=REQUEST.request_id), until=until)  # as _forward does
    await _answer(relayed.reply_to, RelayedResult.of(RESULT), until=until)
    assert await asyncio.wait_for(waiting, HANG) == RESULT
