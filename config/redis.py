"""How the portal's Redis clients ride out a short Redis outage (a restart, a failover): each command is retried on
a fresh connection for up to about REDIS_RETRY_SECONDS before its error reaches the caller, so a sign-in waits
within its deadline instead of answering 500. Used by the cache (sessions, familiar places), the lockout store
and the presence registry; the channel layer reconnects by itself."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cached_property
from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

# About 5 s: backoff doubling from 50 ms, capped at 0.5 s, 13 tries (with jitter: between 2.5 and 5 s in all).
RETRY_BASE_SECONDS = 0.05
RETRY_CAP_SECONDS = 0.5
RETRIES = 13


def redis_retry_options(*, asynchronous: bool = False) -> dict:
    """Keyword arguments for redis.Redis / redis.asyncio.Redis (and their connection pools)."""
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry

    errors = (RedisConnectionError, RedisTimeoutError)
    backoff = ExponentialWithJitterBackoff(cap=RETRY_CAP_SECONDS, base=RETRY_BASE_SECONDS)
    retry = (AsyncRetry if asynchronous else Retry)(backoff, RETRIES, supported_errors=errors)
    return {"retry": retry, "retry_on_error": list(errors)}


class SharedClientCacheClient(RedisCacheClient):
    """Django's Redis cache client with one ``redis.Redis`` (and its connection pool) per process, server URL and
    options.

    Django builds a cache object for every request context (each request's asyncio task and the threads it hands
    work to), each with pools of its own, and a new ``redis.Redis`` for every get, set and add. With that, every
    sign-in opened fresh connections to Redis (a TCP handshake, HELLO and SELECT each, two per sign-in as bench/
    counts them) and spent about 0.1 ms of CPU building a client per command. A Redis client on a pool is
    thread-safe and the pool re-creates itself after a fork (the Celery workers), so one per URL and options is
    enough."""

    _shared: dict[tuple[str, str], object] = {}  # (URL, the pool's options) → client
    _lock = threading.Lock()
    # Set by Django's __init__; django-stubs leave its private attributes out.
    _servers: list[str]
    _pool_class: Any
    _pool_options: dict[str, Any]
    _client: Any
    _get_connection_pool_index: Callable[[bool], int]

    @cached_property
    def _options_key(self) -> str:
        # The options are the settings' own objects (the retry policy included), so one cache's are the same
        # every time; another cache on the same URL with other options gets a client of its own.
        return repr((self._pool_class, sorted(self._pool_options.items())))

    def get_client(self, key=None, *, write=False):
        url = self._servers[self._get_connection_pool_index(write)]
        key = (url, self._options_key)
        client = self._shared.get(key)
        if client is None:
            with self._lock:
                client = self._shared.get(key)
                if client is None:
                    pool = self._pool_class.from_url(url, **self._pool_options)
                    client = self._shared[key] = self._client(connection_pool=pool)
        return client


class RedisCache(DjangoRedisCache):
    """The cache backend (``CACHES["default"]["BACKEND"]`` in production): Django's, with the shared client."""

    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = SharedClientCacheClient
