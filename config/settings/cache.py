from .env import REDIS_URL, env

# Smart lockout and familiar addresses are read on every sign-in: a cache, shared by all nodes in production.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("PTA_REDIS_PREFIX", "pta") + ":cache",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "pta"}}
