"""How the portal's Redis clients ride out a short Redis outage (a restart, a failover): each command is retried on
a fresh connection for up to about REDIS_RETRY_SECONDS before its error reaches the caller, so a sign-in waits
within its deadline instead of answering 500. Used by the cache (sessions, familiar places), the lockout store
and the presence registry; the channel layer reconnects by itself."""

from __future__ import annotations

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
