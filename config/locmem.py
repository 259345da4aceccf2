"""The embedded profile's cache (sessions, familiar places, remembered routes' neighbours): Django's LocMemCache,
bounded by the bytes it holds as well as by its number of entries.

LocMemCache forgets an expired entry only when it is read again or culled, and culls only at MAX_ENTRIES: the
sessions of sign-ins nobody finished (a username typed, a wrong password, a bot), each dead after its ten
minutes, stayed in the process until the count reached its cap (200,000 entries, hundreds of MiB). Here every
entry's size is counted (its key, its pickled value and what the two dictionaries spend on it); past MAX_BYTES
the expired entries go first, then the least recently used, down to nine tenths of the budget, so a sweep runs
once per tenth of the budget written, not at every write.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache

# What CPython spends on one entry beyond its key's and its value's bytes: the str and bytes objects' headers, the
# OrderedDict's slot and link, the expiry dictionary's slot and its float (measured with tracemalloc: 330–370).
ENTRY_OVERHEAD_BYTES = 360
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclass
class _Budget:
    """Shared by every instance of one named cache (Django makes one per thread), as LocMemCache's own dicts are."""

    sizes: dict[str, int] = field(default_factory=dict)
    total: int = 0


_budgets: dict[str, _Budget] = {}
_budgets_lock = threading.Lock()


class BoundedLocMemCache(LocMemCache):
    # LocMemCache's own (django-stubs leave its private members out).
    _cache: OrderedDict[str, bytes]
    _expire_info: dict[str, float | None]
    _lock: threading.Lock
    _max_entries: int
    _cull_frequency: int

    def __init__(self, name: str, params: dict[str, Any]):
        super().__init__(name, params)
        options = params.get("OPTIONS") or {}
        self.max_bytes = int(options.get("MAX_BYTES", DEFAULT_MAX_BYTES))
        with _budgets_lock:
            self._budget = _budgets.setdefault(name, _Budget())

    @property
    def bytes_held(self) -> int:
        return self._budget.total

    @property
    def entries(self) -> int:
        return len(self._cache)

    def _set(self, key: str, value: bytes, timeout: float | None = DEFAULT_TIMEOUT) -> None:  # under the lock
        super()._set(key, value, timeout)  # type: ignore[misc]
        budget = self._budget
        size = len(key) + len(value) + ENTRY_OVERHEAD_BYTES
        budget.total += size - budget.sizes.get(key, 0)
        budget.sizes[key] = size
        if budget.total > self.max_bytes:
            self._shrink(self.max_bytes * 9 // 10)

    def _shrink(self, target: int) -> None:
        """The expired entries, then the least recently used ones, until at most ``target`` bytes are held."""
        now = time.time()
        for key in [key for key, expiry in self._expire_info.items() if expiry is not None and expiry <= now]:
            self._delete(key)
        while self._budget.total > target and len(self._cache) > 1:
            key, _ = self._cache.popitem()  # the end of the order is the least recently used
            self._forget(key)

    def _cull(self) -> None:  # at MAX_ENTRIES, as Django's, but expired entries first
        self._shrink(self._budget.total)
        if len(self._cache) >= self._max_entries:
            for _ in range(len(self._cache) // max(1, self._cull_frequency)):
                key, _ = self._cache.popitem()
                self._forget(key)

    def _delete(self, key: str) -> bool:
        deleted = super()._delete(key)  # type: ignore[misc]
        if deleted:
            self._budget.total -= self._budget.sizes.pop(key, 0)
        return deleted

    def _forget(self, key: str) -> None:
        self._expire_info.pop(key, None)
        self._budget.total -= self._budget.sizes.pop(key, 0)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
            self._expire_info.clear()
            self._budget.sizes.clear()
            self._budget.total = 0
