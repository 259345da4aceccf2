"""How the portal's Redis clients ride out a short Redis outage (a restart, a failover): each command is retried on
a fresh connection for up to about REDIS_RETRY_SECONDS before its error reaches the caller, so a sign-in waits
within its deadline instead of answering 500. Used by the cache (sessions, familiar places), the lockout store
and the presence registry; the channel layer reconnects by itself."""

from __future__ import annotations

import threading

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


class SharedConnectionPool:
    """The cache's connection pool: one per process and URL (``OPTIONS["pool_class"]`` of the Redis cache).

    Django builds a cache object, and with it a new connection pool, for every request context (each request's
    asyncio task and the threads it hands work to). With redis-py's own pool class each sign-in therefore opened
    fresh connections to Redis (a TCP handshake, HELLO and SELECT each, two per sign-in as bench/ counts them) and
    left them to the garbage collector. redis-py's pool is thread-safe and re-creates itself after a fork (the
    Celery workers), so one per URL is enough."""

    _pools: dict[str, object] = {}
    _lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options):
        import redis

        with cls._lock:
            pool = cls._pools.get(url)
            if pool is None:
                pool = cls._pools[url] = redis.ConnectionPool.from_url(url, **options)
        return pool
