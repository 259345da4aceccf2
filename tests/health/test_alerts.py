"""Alert evaluation: availability marks from the presence registry, the four conditions, and incidents opened
and resolved exactly once, each transition owing one notification per channel."""

import datetime
import time
from collections.abc import Sequence

import pytest
from asgiref.sync import async_to_sync
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import Agent
from agents.presence import PresenceRecord, presence_close, presence_registry
from health.models import AgentAvailability, Incident, Notification
from health.services.alert_settings import alert_settings_set
from health.services.availability import agents_availability_mark
from health.services.incidents import Condition, alerts_evaluate, certificates_sweep, incident_open
from signin.models import SignInEvent
from tests.health.conftest import confirm_emails

pytestmark = pytest.mark.django_db
LATER = datetime.timedelta(minutes=5)  # beyond PTA_ALERT_GRACE_SECONDS


async def _in_registry(*, publish: Sequence[PresenceRecord] = (), withdraw: Sequence[tuple[str, str]] = ()) -> None:
    registry = presence_registry()
    try:
        await registry.publish(publish)
        for agent_id, tenant_id in withdraw:
            await registry.withdraw(agent_id=agent_id, tenant_id=tenant_id)
    finally:
        await presence_close()


class Presence:
    """Agents in this profile's registry (the process's own, or Redis), as a node publishes them."""

    def __init__(self) -> None:
        self.published: list[PresenceRecord] = []

    def connect(self, *agents: Agent) -> None:
        records = [PresenceRecord(agent_id=str(a.pk), tenant_id=str(a.tenant_id), domains=(), node_id="n1",
                                  channel_name=f"chan-{a.pk}", connected_at=time.time()) for a in agents]
        async_to_sync(_in_registry)(publish=records)
        self.published.extend(records)

    def disconnect(self, *agents: Agent) -> None:
        async_to_sync(_in_registry)(withdraw=[(str(a.pk), str(a.tenant_id)) for a in agents])


@pytest.fixture
def presence():
    registry = Presence()
    yield registry
    async_to_sync(_in_registry)(withdraw=[(r.agent_id, r.tenant_id) for r in registry.published])


@pytest.fixture
def alerted(tenant_a):
    settings = alert_settings_set(tenant=tenant_a, emails=["ops@alpha.example.test"],
                                  webhook_url="https://hooks.test/x", webhook_secret="s" * 32)
    confirm_emails(tenant_a)
    return settings


def incidents(**filters) -> list[tuple[str, str, bool]]:
    return sorted((i.kind, i.subject, i.is_open) for i in Incident.objects.filter(**filters))


def notifications() -> list[tuple[str, str, str]]:
    return sorted((n.incident.kind, n.event, n.channel) for n in Notification.objects.select_related("incident"))


def test_availability_follows_presence_and_changes_only_on_transitions(tenant_a, agent_factory, presence):
    up, _ = agent_factory(tenant_a, "up")
    down, _ = agent_factory(tenant_a, "down")
    revoked, _ = agent_factory(tenant_a, "revoked")
    Agent.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    presence.connect(up, revoked)

    assert agents_availability_mark() == {"active": 1, "inactive": 0}
    marks = {m.agent_id: (m.active, m.since) for m in AgentAvailability.objects.all()}
    assert {pk: active for pk, (active, _) in marks.items()} == {up.pk: True, down.pk: False, revoked.pk: False}
    assert agents_availability_mark() == {"active": 0, "inactive": 0}  # nothing changed: nothing written
    assert {m.agent_id: (m.active, m.since) for m in AgentAvailability.objects.all()} == marks

    presence.disconnect(up)  # as when its node dies and the record lapses
    assert agents_availability_mark() == {"active": 0, "inactive": 1}
    mark = AgentAvailability.objects.get(agent=up)
    assert not mark.active and mark.since > marks[up.pk][1]


def test_the_only_agent_gone_opens_one_incident_and_its_return_resolves_it(tenant_a, agent_factory, presence,
                                                                          alerted):
    agent, _ = agent_factory(tenant_a)
    presence.connect(agent)
    agents_availability_mark()
    alerts_evaluate(now=timezone.now() + LATER)
    assert incidents() == []

    presence.disconnect(agent)
    agents_availability_mark()
    alerts_evaluate()  # within the grace period: a restart is not an incident
    assert incidents() == []
    for _ in range(3):
        alerts_evaluate(now=timezone.now() + LATER)
    assert incidents() == [("agents_below_threshold", "", True)]
    incident = Incident.objects.get()
    assert incident.summary == "Alpha Corp: 0 active agent(s), 1 needed"
    assert incident.details == {"active": 0, "agents": 1, "inactive": ["agent-1"], "threshold": 1}
    assert notifications() == [("agents_below_threshold", "opened", "email"),
                               ("agents_below_threshold", "opened", "webhook")]

    presence.connect(agent)
    agents_availability_mark()
    for _ in range(3):
        alerts_evaluate(now=timezone.now() + LATER)
    assert incidents() == [("agents_below_threshold", "", False)]
    assert len(notifications()) == 4 and {n[1] for n in notifications()} == {"opened", "resolved"}


def test_failover_is_lost_below_two_agents_and_the_threshold_is_the_tenants(tenant_a, tenant_b, agent_factory,
                                                                            presence):
    one, _ = agent_factory(tenant_a, "one")
    agent_factory(tenant_a, "two")
    single, _ = agent_factory(tenant_b, "single")
    presence.connect(one, single)
    agents_availability_mark()
    alerts_evaluate(now=timezone.now() + LATER)
    # Beta never had two agents: no failover to lose. No alert settings: recorded all the same, nobody told.
    assert incidents() == [("failover_lost", "", True)]
    assert Incident.objects.get().tenant == tenant_a and notifications() == []
    alert_settings_set(tenant=tenant_a, emails=["ops@alpha.example.test"])
    confirm_emails(tenant_a)
    presence.connect(*Agent.objects.filter(tenant=tenant_a))
    agents_availability_mark()
    alerts_evaluate(now=timezone.now() + LATER)
    # Resolved, and nobody is told of the end of an incident they never heard of.
    assert incidents() == [("failover_lost", "", False)] and notifications() == []
    presence.disconnect(*Agent.objects.filter(name="two"))
    agents_availability_mark()
    alerts_evaluate(now=timezone.now() + LATER)
    assert notifications() == [("failover_lost", "opened", "email")]

    alert_settings_set(tenant=tenant_b, active_agents_threshold=2)
    alert_settings_set(tenant=tenant_a, active_agents_threshold=0)  # 0: never below
    alerts_evaluate(now=timezone.now() + LATER)
    assert incidents(tenant=tenant_b) == [("agents_below_threshold", "", True)]
    assert incidents(tenant=tenant_a) == [("failover_lost", "", False), ("failover_lost", "", True)]
    assert Incident.objects.get(tenant=tenant_a, resolved_at=None).details["inactive"] == ["two"]


def test_a_spike_of_directory_unavailable_opens_an_incident_for_that_outcome(tenant_a, settings):
    settings.PTA_ALERT_SPIKE_SHARE = 0.2
    settings.PTA_ALERT_SPIKE_MIN_SIGNINS = 10

    def signins(outcome: str, n: int, *, ago: datetime.timedelta = datetime.timedelta(minutes=1)) -> None:
        for _ in range(n):
            SignInEvent.objects.create(tenant=tenant_a, username="u@alpha.example.test", outcome=outcome,
                                       created_at=timezone.now() - ago)

    signins("directory_unavailable", 3)
    signins("success", 5)
    signins("success", 50, ago=datetime.timedelta(minutes=6))  # outside the five minutes
    alerts_evaluate()
    assert incidents() == []  # 3 of 8: too few sign-ins to call it a spike

    signins("success", 2)
    signins("agent_timeout", 2)  # 2 of 12 (17 %): under the share
    alerts_evaluate()
    assert incidents() == [("outcome_spike", "directory_unavailable", True)]
    assert Incident.objects.get().details == {"outcome": "directory_unavailable", "count": 3, "signins": 12,
                                              "share": 0.25, "threshold": 0.2}

    signins("success", 10)
    alerts_evaluate()
    assert incidents() == [("outcome_spike", "directory_unavailable", False)]


def test_a_certificate_near_its_end_opens_an_incident_until_renewed(tenant_a, agent_factory):
    near, _ = agent_factory(tenant_a, "near")
    agent_factory(tenant_a, "fresh")
    revoked, _ = agent_factory(tenant_a, "revoked")
    soon = timezone.now() + datetime.timedelta(days=10)
    Agent.objects.filter(pk__in=[near.pk, revoked.pk]).update(certificate_not_after=soon)
    Agent.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())

    certificates_sweep()
    certificates_sweep()
    assert incidents() == [("certificate_expiring", str(near.pk), True)]
    assert Incident.objects.get().summary == "Alpha Corp: the certificate of agent near expires in 9 day(s)"

    Agent.objects.filter(pk=near.pk).update(certificate_not_after=timezone.now() + datetime.timedelta(days=180))
    certificates_sweep()
    assert incidents() == [("certificate_expiring", str(near.pk), False)]


def test_a_second_open_incident_of_the_same_subject_is_refused(tenant_a, alerted):
    """Two workers evaluating at once: the database lets one open it; the other writes nothing."""
    condition = Condition(str(tenant_a.pk), Incident.Kind.FAILOVER_LOST, "", "Alpha Corp: failover lost")
    assert incident_open(condition=condition, now=timezone.now()) is not None
    assert incident_open(condition=condition, now=timezone.now()) is None
    assert Incident.objects.count() == 1 and Notification.objects.count() == 2
    with pytest.raises(IntegrityError), transaction.atomic():
        Incident.objects.create(tenant=tenant_a, kind=Incident.Kind.FAILOVER_LOST, summary="again")
