"""Reconnect delays: exponential backoff with full jitter, capped ("Exponential Backoff And Jitter", AWS)."""

from __future__ import annotations

import random
from collections.abc import Callable

RECONNECT_BASE_SECONDS = 1.0
RECONNECT_CAP_SECONDS = 30.0
# For the first minute of an outage no delay exceeds this: a portal restart or a deploy (seconds of downtime)
# finds its agents back within about 8 s, while a long outage still backs off to the 30 s cap.
SHORT_OUTAGE_SECONDS = 60.0
SHORT_OUTAGE_CAP_SECONDS = 8.0


class Backoff:
    """Full jitter: each delay is uniform in [0, min(cap, base·2^attempt)], so many agents never reconnect in step."""

    def __init__(self, *, base: float = RECONNECT_BASE_SECONDS, cap: float = RECONNECT_CAP_SECONDS,
                 uniform: Callable[[float, float], float] = random.uniform):
        self.base = base
        self.cap = cap
        self.attempt = 0
        self.waited = 0.0  # the delays given since the last reset: how long this outage has lasted, at least
        self._uniform = uniform

    def ceiling(self) -> float:
        cap = self.cap if self.waited >= SHORT_OUTAGE_SECONDS else min(self.cap, SHORT_OUTAGE_CAP_SECONDS)
        return min(cap, self.base * 2 ** min(self.attempt, 32))  # the exponent is bounded: no overflow

    def next_delay(self) -> float:
        ceiling = self.ceiling()
        delay = min(ceiling, max(0.0, self._uniform(0.0, ceiling)))
        self.attempt += 1
        self.waited += delay
        return delay

    def reset(self) -> None:
        self.attempt = 0
        self.waited = 0.0
