"""The asking side of the relayed path (agents/handoff/relay.py: ReplyChannel) over the production channel layer:
channels_redis' pub/sub layer, configured as config/settings/channels.py does, on a private redis-server."""

import asyncio
import signal
import time

import pta_protocol as protocol
import pytest
from channels.layers import get_channel_layer

from agents.handoff import AgentUnavailable
from agents.handoff.messages import RelayedRequest, RelayedResult
from agents.handoff.relay import ReplyChannel

REQUEST = protocol.Request(request_id="r-1", tenant="t", domain="alpha.example.test", username="a@alpha.example.test",
                           key_id="k", expires_at=time.time() + 300, sealed={"key": "x"}, signature="s")
RESULT = protocol.Result(request_id="r-1", outcome="success")
HANG = 30  # seconds: only a hang lasts this long, and then the test fails instead of waiting forever


@pytest.fixture
async def layer(settings, redis_server):
    settings.CHANNEL_LAYERS = {"default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
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
