"""The per-minute rollup of sign-ins: counts and latency percentiles per tenant, agent and outcome, idempotent."""

import datetime

import pytest
from django.utils import timezone

from agents.services.lifecycle import agent_delete
from health.models import SignInRollup
from health.services.rollups import percentile, signin_rollups_compute, signin_rollups_purge
from signin.models import SignInEvent

NOW = timezone.now().replace(second=30, microsecond=0)
MINUTE = NOW.replace(second=0) - datetime.timedelta(minutes=2)


def event(tenant, agent, outcome: str, *, at: datetime.datetime, agent_ms: float | None = None) -> SignInEvent:
    return SignInEvent.objects.create(tenant=tenant, agent=agent, username="u@alpha.example.test", outcome=outcome,
                                      agent_ms=agent_ms, created_at=at)


def rows() -> dict[tuple, tuple]:
    return {(r.minute, r.agent_id, r.outcome): (r.count, r.latency_p50_ms, r.latency_p95_ms, r.latency_p99_ms)
            for r in SignInRollup.objects.all()}


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.99)) == (50.0, 95.0, 99.0)
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None


@pytest.mark.django_db
def test_minutes_are_rolled_up_by_tenant_agent_and_outcome(tenant_a, tenant_b, agent_factory):
    agent, _ = agent_factory(tenant_a)
    for ms in (10.0, 20.0, 30.0, 40.0):
        event(tenant_a, agent, "success", at=MINUTE + datetime.timedelta(seconds=ms), agent_ms=ms)
    event(tenant_a, agent, "invalid_credentials", at=MINUTE + datetime.timedelta(seconds=59), agent_ms=5.0)
    event(tenant_a, None, "no_agent_available", at=MINUTE)
    event(tenant_a, None, "no_agent_available", at=MINUTE + datetime.timedelta(minutes=1))
    event(None, None, "unknown_domain", at=MINUTE)  # no tenant: nothing to chart it under
    event(tenant_b, None, "cloud_locked", at=MINUTE)
    event(tenant_a, agent, "success", at=NOW - datetime.timedelta(seconds=1), agent_ms=1.0)  # this minute so far
    event(tenant_a, agent, "success", at=NOW, agent_ms=1.0)  # not yet

    signin_rollups_compute(now=NOW)

    next_minute = MINUTE + datetime.timedelta(minutes=1)
    assert rows() == {
        (MINUTE, agent.pk, "success"): (4, 20.0, 40.0, 40.0),
        (MINUTE, agent.pk, "invalid_credentials"): (1, 5.0, 5.0, 5.0),
        (MINUTE, None, "no_agent_available"): (1, None, None, None),
        (next_minute, None, "no_agent_available"): (1, None, None, None),
        (MINUTE, None, "cloud_locked"): (1, None, None, None),
        (NOW.replace(second=0), agent.pk, "success"): (1, 1.0, 1.0, 1.0),
    }
    assert SignInRollup.objects.get(outcome="cloud_locked").tenant == tenant_b


@pytest.mark.django_db
def test_running_again_gives_the_same_rows_and_picks_up_late_records(tenant_a, agent_factory):
    agent, _ = agent_factory(tenant_a)
    this_minute = NOW.replace(second=0)
    event(tenant_a, agent, "success", at=MINUTE, agent_ms=12.0)
    event(tenant_a, agent, "success", at=this_minute, agent_ms=12.0)
    signin_rollups_compute(now=NOW)
    first = rows()
    signin_rollups_compute(now=NOW)
    assert rows() == first and SignInRollup.objects.count() == 2
    # Stamped at the end of the minute before the newest one rolled up, committed after the run: counted next.
    event(tenant_a, agent, "success", at=this_minute - datetime.timedelta(microseconds=1), agent_ms=14.0)
    # And the current minute's row grows as the minute goes on.
    event(tenant_a, agent, "success", at=NOW + datetime.timedelta(seconds=10), agent_ms=14.0)
    signin_rollups_compute(now=NOW + datetime.timedelta(seconds=20))
    assert rows()[(this_minute - datetime.timedelta(minutes=1), agent.pk, "success")][0] == 1
    assert rows()[(this_minute, agent.pk, "success")][0] == 2
    assert rows()[(MINUTE, agent.pk, "success")][0] == 1


@pytest.mark.django_db
def test_purge_keeps_the_retention_period(tenant_a):
    old = SignInRollup.objects.create(minute=NOW - datetime.timedelta(days=31), tenant=tenant_a, outcome="success",
                                      count=1)
    kept = SignInRollup.objects.create(minute=NOW - datetime.timedelta(days=29), tenant=tenant_a, outcome="success",
                                       count=1)
    assert signin_rollups_purge(older_than_days=30) == 1
    assert list(SignInRollup.objects.values_list("pk", flat=True)) == [kept.pk] and old.pk != kept.pk


@pytest.mark.django_db
def test_a_deleted_agents_rows_join_the_tenants_rows_of_no_agent(tenant_a, agent_factory):
    """Two agents' rows of one key become rows of no agent when both are deleted: the unique key would refuse
    the second, so the counts are added up instead, and the tenant's totals are unchanged."""
    first, _ = agent_factory(tenant_a, "first")
    second, _ = agent_factory(tenant_a, "second")
    for agent, count, p95 in ((first, 3, 40.0), (second, 2, 90.0)):
        SignInRollup.objects.create(minute=MINUTE, tenant=tenant_a, agent=agent, outcome="agent_timeout",
                                    count=count, latency_p50_ms=10.0, latency_p95_ms=p95, latency_p99_ms=p95)
    SignInRollup.objects.create(minute=MINUTE, tenant=tenant_a, agent=first, outcome="success", count=5)

    agent_delete(agent=first)
    agent_delete(agent=second)

    assert rows() == {(MINUTE, None, "agent_timeout"): (5, 10.0, 90.0, 90.0),
                      (MINUTE, None, "success"): (5, None, None, None)}
