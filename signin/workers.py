"""Where a sign-in's synchronous work (database, cache, sessions) runs: a pool of worker threads.

Django's default for async code is its one thread-sensitive thread, which every request of the process shares:
under load each sign-in's two hops would queue behind every other's. A sign-in's hops share no
thread-bound state, so they run in this pool instead; each still opens and releases its database connection
as Channels' database_sync_to_async does (close_old_connections before and after).
"""

from concurrent.futures import ThreadPoolExecutor

from channels.db import database_sync_to_async

# Bounded: more threads than database connections (the pool's max_size) would only wait for one.
executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="pta-signin")


def in_worker(func):
    """``await in_worker(fn)(*args)``: run ``fn`` in the sign-in pool."""
    return database_sync_to_async(func, thread_sensitive=False, executor=executor)


# A database restart or failover (the connection killed under a query, then refused for a moment) is waited out
# within the sign-in's deadline, on a fresh connection: each step it retries is safe to run twice.
TRANSIENT_RETRY_SECONDS = 5.0


def transient_errors() -> tuple[type[Exception], ...]:
    import redis.exceptions
    from django.db import InterfaceError, OperationalError

    return OperationalError, InterfaceError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError


async def in_worker_retrying(func, /, *args, until: float, **kwargs):
    """``in_worker(func)(*args, **kwargs)``, again after a transient database or Redis error until ``until``
    (a time.monotonic() value). ``func`` must be safe to run again after a partial run."""
    import asyncio
    import logging
    import time

    errors = transient_errors()
    while True:
        try:
            return await in_worker(func)(*args, **kwargs)
        except errors as exc:
            if time.monotonic() + 0.25 >= until:
                raise
            logging.getLogger(__name__).warning("%s: %s; trying again", func.__name__, type(exc).__name__)
            await asyncio.sleep(0.25)


def retrying_transient_errors(view):
    """For a synchronous view that writes nothing before its end: run it again after a transient error, for up
    to TRANSIENT_RETRY_SECONDS."""
    import functools
    import time

    from django.db import close_old_connections

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        until = time.monotonic() + TRANSIENT_RETRY_SECONDS
        errors = transient_errors()
        while True:
            try:
                return view(request, *args, **kwargs)
            except errors:
                if time.monotonic() + 0.25 >= until:
                    raise
                close_old_connections()
                time.sleep(0.25)

    return wrapped
