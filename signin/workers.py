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
