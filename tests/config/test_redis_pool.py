"""The Redis cache keeps one client and connection pool per process: Django makes a cache object per request
context, and with its own backend every one of them opened connections of its own and built a client per
command."""

import redis
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache

from config.redis import RedisCache, redis_retry_options


def connections_received(url: str) -> int:
    return int(redis.Redis.from_url(url).info("stats")["total_connections_received"])


def requests_served(url: str, backend: type, options: dict, count: int = 20) -> int:
    """Connections the server accepted while ``count`` requests each used a cache object of their own, as
    Django gives every request context (from the same settings: the same OPTIONS)."""
    before = connections_received(url)
    for i in range(count):
        cache = backend(url, {"OPTIONS": options})
        cache.set(f"request-{i}", i)
        assert cache.get(f"request-{i}") == i
        assert cache.add(f"request-{i}", "again") is False and cache.get_many([f"request-{i}"]) == {f"request-{i}": i}
    return connections_received(url) - before - 1  # less the counting connection itself


def test_the_cache_objects_of_every_request_share_one_client_and_pool(redis_server):
    url, options = redis_server.url, redis_retry_options()
    assert requests_served(url, RedisCache, options) <= 1
    # Why it matters: Django's own backend opens a connection per request.
    assert requests_served(url, DjangoRedisCache, options) >= 20


def client_of(cache: RedisCache):
    return cache._cache.get_client(write=True)  # type: ignore[attr-defined] # Django's private client


def test_caches_on_one_url_share_a_client_only_with_the_same_options(redis_server):
    settings = {"OPTIONS": redis_retry_options()}
    first, second = RedisCache(redis_server.url, settings), RedisCache(redis_server.url, settings)
    assert client_of(first) is client_of(second)
    other = RedisCache(redis_server.url, {"OPTIONS": {"socket_timeout": 1}})
    assert client_of(other) is not client_of(first)
    assert client_of(other).connection_pool.connection_kwargs["socket_timeout"] == 1
