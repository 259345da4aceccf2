"""The embedded profile's cache is bounded by the bytes it holds (config/locmem.py): a flood of sign-ins that
nobody finishes cannot grow the portal's memory without end, and their dead sessions are dropped before anything
alive."""

import os
import tracemalloc
import uuid

from config.locmem import BoundedLocMemCache

SESSION_LIKE = {"_auth_user_id": "12345", "signin": {"username": "someone@alpha.example.test", "next": "/x/" * 40,
                                                     "organisation": "Alpha", "tenant_id": str(uuid.uuid4())}}


def bounded(max_bytes: int) -> BoundedLocMemCache:
    return BoundedLocMemCache(f"test-{uuid.uuid4().hex}", {"OPTIONS": {"MAX_BYTES": max_bytes,
                                                                      "MAX_ENTRIES": 10**7}})


def test_memory_stays_within_the_budget_whatever_is_written():
    budget = 1024 * 1024
    cache = bounded(budget)
    tracemalloc.start()
    try:
        keys = [f"session:{n}:{os.urandom(8).hex()}" for n in range(20_000)]
        before = tracemalloc.get_traced_memory()[0]
        for n, key in enumerate(keys):  # about 12 MiB of sessions written
            cache.set(key, {**SESSION_LIKE, "n": n}, timeout=14 * 86400)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert cache.bytes_held <= budget
    assert held <= budget * 1.25, f"{held} bytes held for a budget of {budget}"  # the estimate is not far below
    assert cache.entries < 20_000 // 4
    assert cache.get(keys[-1])["n"] == 19_999 and cache.get(keys[0]) is None  # the newest are the ones kept


def test_expired_entries_go_before_live_ones():
    cache = bounded(256 * 1024)
    for n in range(50):
        cache.set(f"signed-in:{n}", SESSION_LIKE, timeout=3600)
    n = 0
    while cache.bytes_held < 200 * 1024:  # unfinished sign-ins, their ten minutes over
        cache.set(f"abandoned:{n}", SESSION_LIKE, timeout=0)
        n += 1
    for m in range(100):  # past the budget: a sweep
        cache.set(f"new:{m}", SESSION_LIKE, timeout=3600)
    assert all(cache.get(f"signed-in:{k}") is not None for k in range(50))  # the least recently used, yet kept
    assert cache.entries == 150  # every abandoned one dropped at the sweep
    assert cache.bytes_held <= 256 * 1024


def test_deletes_and_clear_give_the_budget_back():
    cache = bounded(1024 * 1024)
    cache.set("a", SESSION_LIKE)
    cache.set("a", {"small": 1})  # replaced: counted once, at its new size
    cache.set("b", SESSION_LIKE)
    cache.delete("b")
    assert cache.get("b") is None
    one = cache.bytes_held
    assert 0 < one < 600
    cache.clear()
    assert cache.bytes_held == 0 and cache.get("a") is None
