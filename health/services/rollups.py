"""The per-minute rollup of sign-ins: what the health view charts, and what outlives the sign-in records."""

from __future__ import annotations

import datetime
import logging
import math
import uuid
from collections import defaultdict

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from health.models import SignInRollup
from signin.models import SignInEvent

logger = logging.getLogger(__name__)

MINUTE = datetime.timedelta(minutes=1)
# A run recomputes from the minute before the newest one rolled up (a sign-in stamped at a minute's last instant
# may commit after the next minute began) up to now, and at most this far back: after a longer outage of the
# workers the older minutes stay empty.
CATCH_UP = datetime.timedelta(hours=1)


def minute_floor(moment: datetime.datetime) -> datetime.datetime:
    return moment.replace(second=0, microsecond=0)


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least ``fraction`` of the values at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(fraction * len(ordered)) - 1)], 1)


def signin_rollups_compute(*, now: datetime.datetime | None = None) -> int:
    """Recompute the rollups from the minute before the newest one rolled up (at most CATCH_UP back) until now,
    the current minute so far included, and replace them: running twice gives the same rows. Returns how many
    rows the window now holds."""
    end = now or timezone.now()
    oldest = minute_floor(end) - CATCH_UP
    newest = (SignInRollup.objects.filter(minute__gte=oldest).order_by("-minute")
              .values_list("minute", flat=True).first())
    start = max(oldest, newest - MINUTE) if newest else oldest
    events = (SignInEvent.objects.filter(created_at__gte=start, created_at__lt=end, tenant__isnull=False)
              .values_list("created_at", "tenant_id", "agent_id", "outcome", "agent_ms"))
    counts: dict[tuple, int] = defaultdict(int)
    latencies: dict[tuple, list[float]] = defaultdict(list)
    for created_at, tenant_id, agent_id, outcome, agent_ms in events.iterator(chunk_size=5000):
        key = (minute_floor(created_at), tenant_id, agent_id, outcome)
        counts[key] += 1
        if agent_ms is not None:
            latencies[key].append(agent_ms)
    rows = []
    for key, count in counts.items():
        minute, tenant_id, agent_id, outcome = key
        rows.append(SignInRollup(minute=minute, tenant_id=tenant_id, agent_id=agent_id, outcome=outcome, count=count,
                                 latency_p50_ms=percentile(latencies[key], 0.50),
                                 latency_p95_ms=percentile(latencies[key], 0.95),
                                 latency_p99_ms=percentile(latencies[key], 0.99)))
    try:
        with transaction.atomic():
            SignInRollup.objects.filter(minute__gte=start).delete()
            SignInRollup.objects.bulk_create(rows, batch_size=1000)
    except IntegrityError:
        # Another worker replaced the same minutes at the same moment, from the same records.
        logger.info("rollup of %s–%s written by another worker", start, end)
    return len(rows)


def signin_rollups_purge(*, older_than_days: int) -> int:
    """Delete rollups older than the retention period; returns how many."""
    cutoff = timezone.now() - datetime.timedelta(days=older_than_days)
    deleted, _ = SignInRollup.objects.filter(minute__lt=cutoff).delete()
    return deleted


@transaction.atomic
def signin_rollups_detach_agent(*, agent_id: uuid.UUID | str) -> int:
    """Before an agent is deleted: fold its rows into the tenant's rows of no agent, which its own would collide
    with once its foreign key is set to NULL. Counts add up; of the two rows' latency percentiles the higher is
    kept (the sign-ins behind them cannot be merged any more). Returns how many rows were folded."""
    folded = 0
    for row in SignInRollup.objects.select_for_update().filter(agent_id=agent_id):
        twin = SignInRollup.objects.select_for_update().filter(
            minute=row.minute, tenant_id=row.tenant_id, agent__isnull=True, outcome=row.outcome).first()
        if twin is None:
            continue
        for name in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
            values = [v for v in (getattr(row, name), getattr(twin, name)) if v is not None]
            setattr(twin, name, max(values) if values else None)
        twin.count = F("count") + row.count
        twin.save(update_fields=["count", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"])
        row.delete()
        folded += 1
    return folded
