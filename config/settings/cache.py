from config.redis import redis_retry_options

from .env import REDIS_URL, env

# Smart lockout and familiar addresses are read on every sign-in: a cache, shared by all nodes in production.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "config.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("PTA_REDIS_PREFIX", "pta") + ":cache",
            # A Redis restart is waited out, not answered 500; one connection pool and client per process, not
            # per request (config/redis.py).
            "OPTIONS": redis_retry_options(),
        }
    }
else:
    # Sessions and familiar places live here (lockout counters in the process: signin/services/lockout.py): LocMem's
    # default of 300 entries would evict sign-ins in progress.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "pta",
                          "OPTIONS": {"MAX_ENTRIES": 200_000}}}
