"""Where a sign-in's synchronous work (database, cache, sessions) runs: a pool of worker threads.

Django's default for async code is its one thread-sensitive thread, which every request of the process shares:
under load each sign-in's two hops would queue behind every other's. A sign-in's hops share no
thread-bound state, so they run in this pool instead; each still opens and releases its database connection
as Channels' database_sync_to_async does (close_old_connections before and after).
"""

import asyncio
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import redis.exceptions
from channels.db import database_sync_to_async
from django.db import InterfaceError, OperationalError, close_old_connections

from signin.timing import run_timed, timed_hop

logger = logging.getLogger(__name__)

# Bounded: more threads than database connections (the pool's max_size) would only wait for one.
executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="pta-signin")


def in_worker(func):
    """``await in_worker(fn)(*args)``: run ``fn`` in the sign-in pool (timed as a hop of its own when the request
    is: signin/timing.py)."""
    return timed_hop(func, database_sync_to_async(run_timed(func), thread_sensitive=False, executor=executor))


# A database restart or failover (the connection killed under a query, then refused for a moment), or a Redis
# restart, is waited out on a fresh connection: each step retried is safe to run twice.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
TRANSIENT_RETRY_SECONDS = 5.0
RETRY_PAUSE_SECONDS = 0.25


async def in_worker_retrying(func, /, *args, until: float, **kwargs):
    """``in_worker(func)(*args, **kwargs)``, again after a transient database or Redis error until ``until``
    (a time.monotonic() value). ``func`` must be safe to run again after a partial run."""
    while True:
        try:
            return await in_worker(func)(*args, **kwargs)
        except TRANSIENT_ERRORS as exc:
            if time.monotonic() + RETRY_PAUSE_SECONDS >= until:
                raise
            logger.warning("%s: %s; trying again", func.__name__, type(exc).__name__)
            await asyncio.sleep(RETRY_PAUSE_SECONDS)


def retrying_transient_errors(view):
    """For a synchronous view that writes nothing before its end: run it again after a transient error, for up
    to TRANSIENT_RETRY_SECONDS."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        until = time.monotonic() + TRANSIENT_RETRY_SECONDS
        while True:
            try:
                return view(request, *args, **kwargs)
            except TRANSIENT_ERRORS:
                if time.monotonic() + RETRY_PAUSE_SECONDS >= until:
                    raise
                close_old_connections()
                time.sleep(RETRY_PAUSE_SECONDS)

    return wrapped
