from .env import REDIS_URL, env, env_float, env_int

# The in-process hand-off needs no layer; the layer carries requests to agents on other nodes. channels_redis'
# pub/sub layer, which also says whether anyone heard a message (agents/handoff/layer.py).
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "agents.handoff.layer.PubSubChannelLayer",
            "CONFIG": {
                # redis-py 8's 5 s socket timeout breaks pub/sub receives (channels_redis issue 422).
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "prefix": env("PTA_REDIS_PREFIX", "pta"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

PTA_REDIS_URL = REDIS_URL
PTA_REDIS_PREFIX = env("PTA_REDIS_PREFIX", "pta")

# The agent connection. Defaults are the protocol's; tests shorten them through the environment.
PTA_NODE_ID = env("PTA_NODE_ID", "")  # empty: "<hostname>:<pid>"
PTA_AGENT_HEARTBEAT_SECONDS = env_int("PTA_AGENT_HEARTBEAT_SECONDS", 10, minimum=1)
PTA_AGENT_HANDSHAKE_SECONDS = env_float("PTA_AGENT_HANDSHAKE_SECONDS", 10.0, minimum=0.1)
# At most this many agent hellos verified at once per process (the certificate, the signature, the database, in
# worker threads). A hello beyond it waits for a place when the node's measured pace (the time between two
# handshakes ending, averaged) says it gets one within PTA_AGENT_HANDSHAKE_WAIT_SECONDS (at most half the handshake
# deadline); otherwise, or once it has waited that long, it is closed with TRY_LATER (4008), and the agent comes
# back after its jittered backoff. Connections that never send a hello hold no place. A reconnect storm (a node
# restarted under thousands of agents) is then served in turn by a node that keeps up, and a loaded node refuses
# the excess at once instead of every handshake timing out and all retrying together. A wait of 0: the limit alone.
PTA_AGENT_HANDSHAKES_MAX = env_int("PTA_AGENT_HANDSHAKES_MAX", 32, minimum=1)
# 5 s, half the default deadline: at 1,000 agents it brought them back faster than 2 s did, with fewer refusals
# and less CPU (docs/benchmarks.md, "Scale, third pass").
PTA_AGENT_HANDSHAKE_WAIT_SECONDS = env_float("PTA_AGENT_HANDSHAKE_WAIT_SECONDS", 5.0, minimum=0.0)
# At most this many agent connections opening at once per process (from the WebSocket upgrade until the hello is
# verified), and this many of them from one client address (an IPv6 address counts as its /64; behind a trusted
# proxy, the forwarded address). An opening beyond either is accepted and closed at once with TRY_LATER, before any
# consumer or channel is made: a restart under thousands of agents no longer swamps the node with openings that time
# out, and one peer that opens connections cannot hold the node's places. The default total is
# above what the handshake admission lets be verified and wait (PTA_AGENT_HANDSHAKES_MAX x 5).
PTA_AGENT_OPENINGS_MAX = env_int("PTA_AGENT_OPENINGS_MAX", 256, minimum=1)
PTA_AGENT_OPENINGS_PER_ADDRESS = env_int("PTA_AGENT_OPENINGS_PER_ADDRESS", 32, minimum=1)
# When the openings are full, a connection that has sent no hello this long after it opened (an agent sends its hello
# as soon as it reads the challenge, one round trip) is closed with HANDSHAKE_TIMEOUT to make room: idle connections
# cannot keep agents out.
PTA_AGENT_SILENT_SECONDS = env_float("PTA_AGENT_SILENT_SECONDS", 2.0, minimum=0.0)
# How often this process republishes its agents' presence, and writes their last_seen to the database.
PTA_PRESENCE_FLUSH_SECONDS = env_float("PTA_PRESENCE_FLUSH_SECONDS", 2.0, minimum=0.1)
PTA_LAST_SEEN_SECONDS = env_float("PTA_LAST_SEEN_SECONDS", 30.0, minimum=0.1)
# How often this process asks the database whether a local agent was revoked or expired. In production the
# revocation reaches the connection at once over the channel layer and this is only a safety net; in the
# embedded profile `manage.py agent_revoke` runs in another process that the in-memory layer cannot reach.
PTA_REVOCATION_CHECK_SECONDS = env_float("PTA_REVOCATION_CHECK_SECONDS", 30.0 if REDIS_URL else 1.0, minimum=0.1)
if not REDIS_URL:
    PTA_PRESENCE_FLUSH_SECONDS = min(PTA_PRESENCE_FLUSH_SECONDS, PTA_REVOCATION_CHECK_SECONDS)

# SIGTERM drains a node (config/drain.py): at most this long for its requests in flight and its agents' requests
# to be answered before it stops anyway. Longer than a sign-in's deadline plus its wait in line; shorter than the
# unit's TimeoutStopSec (30 s).
PTA_DRAIN_SECONDS = env_float("PTA_DRAIN_SECONDS", 20.0, minimum=0.0)
# Then at most this long for the clients (nginx) to close their idle keep-alive connections to the node.
PTA_DRAIN_LINGER_SECONDS = env_float("PTA_DRAIN_LINGER_SECONDS", 3.0, minimum=0.0)
