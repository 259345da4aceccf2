"""The channel layer between nodes (config/settings/channels.py): channels_redis' pub/sub layer, which can also
tell whether anyone heard a message.

Redis pub/sub keeps nothing: a message published to a channel no connection is subscribed to at that moment is
dropped, and PUBLISH answers how many subscribers got it. channels_redis' ``send`` throws that count away, so a
message that reached no one looks sent. That is the case for a while after every Redis restart, with or without
its data: subscriptions belong to connections, and each node's receiving connection subscribes again only once
it reconnects (channels_redis tries again a second after its receive failed). A request relayed to the agent's
node, or the agent's answer sent back to the asking node, in that second vanished without an error; an answer
lost so ended a sign-in the agent had answered as agent_timeout. ``send_heard`` is ``send`` with that count, so
the hand-off sends again what no one heard (agents/handoff/relay.py).
"""

from __future__ import annotations

from typing import Any

from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer


class PubSubChannelLayer(RedisPubSubChannelLayer):
    """``channels_redis.pubsub.RedisPubSubChannelLayer`` plus ``send_heard``. Everything else is its own."""

    async def send_heard(self, channel: str, message: dict[str, Any]) -> int:
        """``send``, answering how many subscribers got the message (PUBLISH's answer): 0 means it is gone."""
        # channels_redis 4.3 (uv.lock): its per-loop layer, the channel's shard, and the shard's own lock and
        # client, as its send() uses them; tests/agents/test_handoff_relay.py checks this against a real Redis.
        shard = self._get_layer()._get_shard(channel)
        async with shard._lock:
            shard._ensure_redis()
            return int(await shard._redis.publish(channel, self.serialize(message)))

    def listening(self, channel: str) -> bool:
        """Whether this process's subscription to ``channel`` is live: it subscribed, and the connection it
        receives on is up (redis-py subscribes again to every channel as that connection reconnects)."""
        shard = self._get_layer()._get_shard(channel)
        connection = shard._pubsub.connection if shard._pubsub is not None else None
        return channel in shard._subscribed_to and connection is not None and connection.is_connected


def listening(channel: str) -> bool:
    """Whether this process hears what is sent to ``channel`` (one of its own: the reply channel) right now: False
    while the layer's receiving connection is down, after a Redis restart until it has reconnected (and
    subscribed again). Always True for a layer that cannot tell."""
    layer = get_channel_layer()
    return layer.listening(channel) if isinstance(layer, PubSubChannelLayer) else True


async def send_heard(channel: str, message: dict[str, Any]) -> int | None:
    """Send ``message`` to ``channel``: how many listeners got it (0: nobody, the message is lost), or None when
    the layer cannot tell (the embedded profile's in-memory layer, which queues it for the channel)."""
    layer = get_channel_layer()
    assert layer is not None  # both profiles configure one (config/settings/channels.py)
    if isinstance(layer, PubSubChannelLayer):
        return await layer.send_heard(channel, message)
    await layer.send(channel, message)
    return None
