from config.redis import redis_retry_options

from .env import REDIS_URL, env, env_int

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
    # default of 300 entries would evict sign-ins in progress. Bounded by its bytes too (config/locmem.py): the
    # expired sessions of unfinished sign-ins go first, then the least recently used entries.
    CACHES = {"default": {"BACKEND": "config.locmem.BoundedLocMemCache", "LOCATION": "pta",
                          "OPTIONS": {"MAX_ENTRIES": 200_000,
                                      "MAX_BYTES": env_int("PTA_EMBEDDED_CACHE_MIB", 64, minimum=4) * 1024 * 1024}}}
