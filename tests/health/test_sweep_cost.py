"""What one run of the health tasks costs must not grow with the agents or the tenants (issue 27): the SQL
statements and the presence registry's reads of a sweep are counted with few agents and tenants, then with many,
and must be the same. The time itself is measured by bench/sweep.py (docs/benchmarks.md)."""

import datetime
import time
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import Agent
from agents.presence import PresenceRecord, presence_close, presence_registry
from health.models import AgentAvailability, SignInRollup
from health.services import availability
from health.services.availability import agents_availability_mark
from health.services.incidents import alerts_evaluate
from health.services.rollups import minute_floor, signin_rollups_compute
from signin.models import SignInEvent
from tenant.models import Domain, Tenant

pytestmark = pytest.mark.django_db
LATER = datetime.timedelta(minutes=5)  # beyond PTA_ALERT_GRACE_SECONDS


class Fleet:
    """Tenants and agents as rows (the tasks read rows, not certificates), agent j of tenant j mod T, and the
    presence of the agents a test says are connected."""

    def __init__(self) -> None:
        self.tenants: list[Tenant] = []
        self.agents: list[Agent] = []
        self.published: list[PresenceRecord] = []

    def grow(self, *, tenants: int, agents: int) -> list[Agent]:
        first = len(self.tenants)
        new_tenants = [Tenant(name=f"Sweep {i}", slug=f"sweep-{i}") for i in range(first, tenants)]
        Tenant.objects.bulk_create(new_tenants)
        Domain.objects.bulk_create([Domain(tenant=t, name=f"t{first + i}.sweep.test", verified=True)
                                    for i, t in enumerate(new_tenants)])
        self.tenants += new_tenants
        not_after = timezone.now() + datetime.timedelta(days=365)
        new = [Agent(tenant=self.tenants[j % len(self.tenants)], name=f"agent-{j}", certificate_pem="-",
                     certificate_serial=str(j), key_fingerprint=uuid.uuid4().hex * 2, certificate_not_after=not_after)
               for j in range(len(self.agents), agents)]
        Agent.objects.bulk_create(new)
        self.agents += new
        return new

    def connect(self, agents: list[Agent]) -> None:
        now = time.time()
        records = [PresenceRecord(agent_id=str(a.pk), tenant_id=str(a.tenant_id), domains=(), node_id="n1",
                                  channel_name=f"chan-{a.pk}", connected_at=now, last_beat=now) for a in agents]
        async_to_sync(_registry_call)("publish", records)
        self.published += records

    def disconnect(self, agents: list[Agent]) -> None:
        for agent in agents:
            async_to_sync(_registry_call)("withdraw", agent_id=str(agent.pk), tenant_id=str(agent.tenant_id))


async def _registry_call(method: str, *args, **kwargs):
    try:
        return await getattr(presence_registry(), method)(*args, **kwargs)
    finally:
        await presence_close()


@pytest.fixture
def fleet():
    made = Fleet()
    yield made
    for record in made.published:
        async_to_sync(_registry_call)("withdraw", agent_id=record.agent_id, tenant_id=record.tenant_id)


@pytest.fixture
def registry_reads(monkeypatch):
    """How many times a sweep reads the presence registry (a Redis round trip each in production)."""
    counted = {"reads": 0}

    class Counting:
        def __init__(self, inner) -> None:
            self.inner = inner

        def __getattr__(self, name):
            attribute = getattr(self.inner, name)
            if name.startswith("for_"):
                async def counted_read(*args, **kwargs):
                    counted["reads"] += 1
                    return await attribute(*args, **kwargs)
                return counted_read
            return attribute

    monkeypatch.setattr(availability, "presence_registry", lambda: Counting(presence_registry()))
    return counted


def statements(task) -> int:
    with CaptureQueriesContext(connection) as queries:
        task()
    return len(queries)


def test_the_availability_sweep_costs_the_same_statements_and_registry_reads_for_3_agents_as_for_80(
        fleet, registry_reads):
    """Before issue 27's third pass a sweep read each tenant's presence (a round trip per tenant: 10,000 with
    10,000 tenants) and wrote each agent's change with an UPDATE of its own (5,000 after a restart of 5,000)."""
    costs = []
    for tenants, agents in ((3, 3), (40, 80)):
        new = fleet.grow(tenants=tenants, agents=agents)
        fleet.connect(new[1:])  # all but one of the new agents come, so marks change both ways
        reads_before = registry_reads["reads"]
        first = statements(agents_availability_mark)  # the new agents' marks: one write per kind of change
        steady = statements(agents_availability_mark)  # nothing changed: reads only
        fleet.disconnect(new[1:3])  # two agents' presence lapses
        lapsed = statements(agents_availability_mark)
        costs.append((first, steady, lapsed, registry_reads["reads"] - reads_before))
    assert AgentAvailability.objects.filter(active=True).count() == 76 - 2  # the first three's went both ways
    assert costs[0] == costs[1], costs
    assert costs[0][3] == 3  # one registry read per sweep (up to 1,000 agents)


def test_evaluating_alerts_costs_the_same_statements_for_3_agents_of_3_tenants_as_for_80_of_40(fleet):
    """The steady evaluation (no incident opens or resolves) reads the tenants, the agents with their marks, the
    thresholds, the sign-in counts and the open incidents: one statement each, however many."""
    costs = []
    for tenants, agents in ((3, 3), (40, 80)):
        new = fleet.grow(tenants=tenants, agents=agents)
        fleet.connect(new)
        agents_availability_mark()
        alerts_evaluate(now=timezone.now() + LATER)
        costs.append(statements(lambda: alerts_evaluate(now=timezone.now() + LATER)))
    assert costs[0] == costs[1], costs


def test_a_rollup_run_costs_the_same_statements_for_3_agents_as_for_80(fleet):
    """A run reads the window's sign-in records in one query and replaces its rows in one DELETE and one INSERT
    (per 1,000 rows; SQLite's 999 variables make it 111): the statements do not grow with the agents or tenants
    whose sign-ins it rolls up. The sign-ins fall in one minute, so that the rows (one per agent) stay in one
    INSERT on SQLite too."""
    minute = minute_floor(timezone.now()) - datetime.timedelta(minutes=3)
    costs = []
    for tenants, agents in ((3, 3), (40, 80)):
        fleet.grow(tenants=tenants, agents=agents)
        SignInEvent.objects.bulk_create([
            SignInEvent(created_at=minute + datetime.timedelta(seconds=10 + i % 30), tenant_id=agent.tenant_id,
                        agent=agent, username=f"user{i}@sweep.test", outcome="success", agent_ms=5.0)
            for i, agent in enumerate(fleet.agents * 3)])
        at = minute + datetime.timedelta(seconds=50)
        signin_rollups_compute(now=at)
        costs.append(statements(lambda at=at: signin_rollups_compute(now=at)))
    assert SignInRollup.objects.filter(agent__isnull=False).count() == 80
    assert costs[0] == costs[1], costs
