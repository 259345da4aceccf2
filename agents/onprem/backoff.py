"""Reconnect delays: exponential backoff with full jitter, capped ("Exponential Backoff And Jitter", AWS)."""

from __future__ import annotations

import random
from collections.abc import Callable

RECONNECT_BASE_SECONDS = 1.0
RECONNECT_CAP_SECONDS = 30.0


class Backoff:
    """Full jitter: each delay is uniform in [0, min(cap, base·2^attempt)], so many agents never reconnect in step."""

    def __init__(self, *, base: float = RECONNECT_BASE_SECONDS, cap: float = RECONNECT_CAP_SECONDS,
                 uniform: Callable[[float, float], float] = random.uniform):
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._uniform = uniform

    def ceiling(self) -> float:
        return min(self.cap, self.base * 2 ** min(self.attempt, 32))  # the exponent is bounded: no overflow

    def next_delay(self) -> float:
        delay = min(self.ceiling(), max(0.0, self._uniform(0.0, self.ceiling())))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
