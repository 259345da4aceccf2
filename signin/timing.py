"""Where one password POST's time goes, step by step, for the benchmark's latency tail (PTA_SERVER_TIMING).

Off by default. On, the password POST's answer carries a ``Server-Timing`` header (bench/ reads it) with, in
milliseconds: each worker hop's run time (``<hop>``) and its wait (``<hop>-wait``: the executor's queue, the
thread's start and the event loop's wake-up after it, i.e. the await less the run), the agent step (``agent``:
choosing an agent, sealing, the hand-off and its answer; ``handoff``: the hand-off alone, as the record's
``agent_ms``; ``agent_own``: the agent's own time, from its result), the garbage collector's pauses while the
request was served (``gc``: any thread's, since a collection holds the GIL), and the consumer's whole time
(``total``). What the client measures beyond ``total`` is Daphne's (parsing, the event loop's backlog) and
the socket's.

Durations only, and only when the operator (the benchmark) asks: a sign-in's timing tells a watcher whether the
account exists or which route it took, which the portal otherwise keeps out of its answers.
"""

from __future__ import annotations

import contextvars
import gc
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

_current: contextvars.ContextVar[Timing | None] = contextvars.ContextVar("pta_timing", default=None)
_gc_lock = threading.Lock()
_gc_seconds = 0.0  # every collection's pause so far in this process
_gc_started: dict[int, float] = {}  # thread id → when its collection began


def _gc_callback(phase: str, info: dict) -> None:
    global _gc_seconds
    if phase == "start":
        _gc_started[threading.get_ident()] = time.perf_counter()
    elif (began := _gc_started.pop(threading.get_ident(), None)) is not None:
        with _gc_lock:
            _gc_seconds += time.perf_counter() - began


def enabled() -> bool:
    return bool(getattr(settings, "PTA_SERVER_TIMING", False))


def install() -> None:
    """Count the collector's pauses (once per process; only when timing is on)."""
    if enabled() and _gc_callback not in gc.callbacks:
        gc.callbacks.append(_gc_callback)


class Timing:
    """One request's steps: name → milliseconds (a step seen twice adds up)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.gc_at_start = _gc_seconds
        self.steps: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.steps[name] = self.steps.get(name, 0.0) + seconds * 1000

    def header(self) -> str:
        steps = {**self.steps, "gc": (_gc_seconds - self.gc_at_start) * 1000,
                 "total": (time.perf_counter() - self.started) * 1000}
        return ", ".join(f"{name};dur={ms:.2f}" for name, ms in steps.items())


def begin() -> Timing | None:
    """Start timing this request (in the consumer's task: the hops and the agent step see it), if timing is on."""
    if not enabled():
        return None
    timing = Timing()
    _current.set(timing)
    return timing


def current() -> Timing | None:
    return _current.get()


def step(name: str, seconds: float) -> None:
    if (timing := _current.get()) is not None:
        timing.add(name, seconds)


def timed_hop(func: Callable, call: Callable) -> Callable:
    """``call`` (an awaitable wrapper of ``func`` run in a worker thread), timed as the hop ``func.__name__``
    when this request is timed: its run in the thread, and the rest of the await as its wait."""
    name = getattr(func, "__name__", "hop").lstrip("_")

    async def awaited(*args: Any, **kwargs: Any) -> Any:
        timing = _current.get()
        if timing is None:
            return await call(*args, **kwargs)
        began = time.perf_counter()
        ran_before = timing.steps.get(name, 0.0)
        try:
            return await call(*args, **kwargs)
        finally:
            ran = timing.steps.get(name, 0.0) - ran_before
            timing.add(f"{name}-wait", time.perf_counter() - began - ran / 1000)

    return awaited


def run_timed(func: Callable) -> Callable:
    """``func`` for the worker thread: its run time goes to the request's timing (the context is copied there)."""
    name = getattr(func, "__name__", "hop").lstrip("_")

    def run(*args: Any, **kwargs: Any) -> Any:
        timing = _current.get()
        if timing is None:
            return func(*args, **kwargs)
        began = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            timing.add(name, time.perf_counter() - began)

    return run
