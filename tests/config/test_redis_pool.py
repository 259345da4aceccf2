"""The Redis cache keeps one connection pool per process: Django makes a cache object per request context, and
with redis-py's own pool class every one of them opened connections of its own."""

import redis
from django.core.cache.backends.redis import RedisCache

from config.redis import SharedConnectionPool


def connections_received(url: str) -> int:
    return int(redis.Redis.from_url(url).info("stats")["total_connections_received"])


def requests_served(url: str, options: dict, count: int = 20) -> int:
    """Connections the server accepted while ``count`` requests each used a cache object of their own, as
    Django gives every request context."""
    before = connections_received(url)
    for i in range(count):
        cache = RedisCache(url, {"OPTIONS": options})
        cache.set(f"request-{i}", i)
        assert cache.get(f"request-{i}") == i
    return connections_received(url) - before - 1  # less the counting connection itself


def test_the_cache_objects_of_every_request_share_one_pool(redis_server):
    url = redis_server.url
    assert requests_served(url, {"pool_class": "config.redis.SharedConnectionPool"}) <= 1
    # Why it matters: Django's default opens a connection per request.
    assert requests_served(url, {}) >= 20
    assert SharedConnectionPool.from_url(url) is SharedConnectionPool.from_url(url)
