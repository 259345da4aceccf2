"""The embedded profile's periodic work: no Celery worker nor beat runs there, so the portal process runs the
same schedule (CELERY_BEAT_SCHEDULE) on a thread of its own, each task inline as eager Celery runs it. The
presence registry of that profile lives in this process, which is why this cannot run anywhere else."""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

_started = threading.Lock()
_thread: threading.Thread | None = None


def _run_due(schedule: dict[str, dict], next_run: dict[str, float]) -> None:
    for name, entry in schedule.items():
        if time.monotonic() < next_run[name]:
            continue
        next_run[name] = time.monotonic() + float(entry["schedule"])
        try:
            result = import_string(entry["task"]).apply()
            if result.failed():
                logger.error("periodic task %s failed:\n%s", name, result.traceback)
        except Exception:
            logger.exception("periodic task %s failed", name)
        finally:
            close_old_connections()


def _loop(schedule: dict[str, dict]) -> None:
    next_run = dict.fromkeys(schedule, 0.0)  # everything once at start, as beat does
    while True:
        _run_due(schedule, next_run)
        time.sleep(max(0.1, min(next_run.values()) - time.monotonic()))


def embedded_timer_start() -> bool:
    """Start the timer once per process, in the embedded profile only (production has beat). Returns whether
    it runs."""
    global _thread
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        return False
    with _started:
        if _thread is None:
            _thread = threading.Thread(target=_loop, args=(dict(settings.CELERY_BEAT_SCHEDULE),),
                                       name="pta-embedded-timer", daemon=True)
            _thread.start()
            logger.info("embedded profile: periodic work runs in this process (%d tasks)",
                        len(settings.CELERY_BEAT_SCHEDULE))
    return True
