from .env import REDIS_URL, env

# The in-process hand-off needs no layer; the layer carries requests to agents on other nodes.
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
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
