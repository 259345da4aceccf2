"""Incidents: the alert conditions, evaluated from the database and the availability marks, opened and resolved
once each. Each transition writes its notifications in the same transaction (an outbox); they are delivered by
their own task after the commit (health/services/notifications.py).

Several workers may evaluate at once: an incident opens through a partial unique index (one open per tenant,
kind and subject), and resolves through an UPDATE conditional on it being open, so whichever worker wins writes
the transition and its notifications, and the other writes nothing.
"""

from __future__ import annotations

import datetime
import logging
from collections import defaultdict
from dataclasses import dataclass, field

import pta_protocol as protocol
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone

from agents.models import Agent
from health.delivery import deliver_notification
from health.models import DEFAULT_ACTIVE_AGENTS_THRESHOLD, AlertSettings, Incident, Notification
from health.services.alert_recipients import alert_emails_confirmed
from signin.models import SignInEvent
from tenant.models import Tenant

logger = logging.getLogger(__name__)

# A tenant with fewer active agents than this has no failover.
FAILOVER_AGENTS = 2
SPIKE_WINDOW = datetime.timedelta(minutes=5)
SPIKE_OUTCOMES = (protocol.Outcome.DIRECTORY_UNAVAILABLE, protocol.Outcome.AGENT_TIMEOUT)
CERTIFICATE_WARNING = datetime.timedelta(days=14)

AGENT_KINDS = (Incident.Kind.AGENTS_BELOW_THRESHOLD, Incident.Kind.FAILOVER_LOST, Incident.Kind.OUTCOME_SPIKE)


@dataclass(frozen=True)
class Condition:
    """An alert condition that holds now; ``details`` go into the incident as first seen."""

    tenant_id: str
    kind: str
    subject: str
    summary: str
    details: dict = field(default_factory=dict, compare=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.tenant_id, self.kind, self.subject


def _notifications_write(*, incident: Incident, event: str) -> None:
    """The messages this transition owes, on the channels the tenant has now (a resolution, only where its
    opening went: nobody hears of the end of an incident they were never told of); sent after the commit."""
    alert_settings = AlertSettings.objects.filter(tenant_id=incident.tenant_id).first()
    channels = []
    if alert_settings and alert_emails_confirmed(tenant_id=incident.tenant_id, addresses=alert_settings.email_list):
        channels.append(Notification.Channel.EMAIL)
    if alert_settings and alert_settings.webhook_url and alert_settings.webhook_secret_set:
        channels.append(Notification.Channel.WEBHOOK)
    if event == Notification.Event.RESOLVED:
        told = set(incident.notifications.filter(event=Notification.Event.OPENED).values_list("channel", flat=True))
        channels = [channel for channel in channels if channel in told]
    created = [Notification.objects.create(incident=incident, event=event, channel=channel) for channel in channels]

    def enqueue() -> None:
        for notification in created:
            deliver_notification.delay(notification.pk)

    transaction.on_commit(enqueue, robust=True)


def incident_open(*, condition: Condition, now: datetime.datetime) -> Incident | None:
    """Open an incident for a condition that holds; None when one is already open (another worker's)."""
    try:
        with transaction.atomic():
            incident = Incident.objects.create(tenant_id=condition.tenant_id, kind=condition.kind,
                                               subject=condition.subject, summary=condition.summary[:300],
                                               details=condition.details, opened_at=now)
            _notifications_write(incident=incident, event=Notification.Event.OPENED)
    except IntegrityError:
        return None
    logger.warning("incident opened: %s", incident.summary)
    return incident


def incident_resolve(*, incident: Incident, now: datetime.datetime) -> bool:
    """Resolve an open incident whose condition no longer holds; False when another worker already did."""
    with transaction.atomic():
        if not Incident.objects.filter(pk=incident.pk, resolved_at=None).update(resolved_at=now):
            return False
        incident.resolved_at = now
        _notifications_write(incident=incident, event=Notification.Event.RESOLVED)
    logger.warning("incident resolved: %s", incident.summary)
    return True


def incidents_reconcile(*, kinds: tuple[str, ...], conditions: list[Condition], now: datetime.datetime
                        ) -> dict[str, int]:
    """Open an incident for each condition without one, resolve each open incident of these kinds whose condition
    is gone. Returns how many opened and resolved."""
    holding = {condition.key: condition for condition in conditions}
    open_incidents = {(str(incident.tenant_id), incident.kind, incident.subject): incident
                      for incident in Incident.objects.filter(kind__in=kinds, resolved_at=None)}
    counts = {"opened": 0, "resolved": 0}
    for key, condition in holding.items():
        if key not in open_incidents and incident_open(condition=condition, now=now):
            counts["opened"] += 1
    for key, incident in open_incidents.items():
        if key not in holding and incident_resolve(incident=incident, now=now):
            counts["resolved"] += 1
    return counts


def _agent_conditions(*, tenants: dict[str, str], now: datetime.datetime) -> list[Condition]:
    """Below the tenant's threshold of active agents, and failover lost, for tenants that have agents. An agent
    that went inactive less than PTA_ALERT_GRACE_SECONDS ago still counts: a restart is not an incident."""
    grace_start = now - datetime.timedelta(seconds=settings.PTA_ALERT_GRACE_SECONDS)
    agents_by_tenant: dict[str, list] = defaultdict(list)
    for row in Agent.objects.values("pk", "tenant_id", "name", "revoked_at", "registered_at",
                                    "availability__active", "availability__since"):
        agents_by_tenant[str(row["tenant_id"])].append(row)
    thresholds = {str(tenant_id): threshold for tenant_id, threshold in
                  AlertSettings.objects.values_list("tenant_id", "active_agents_threshold")}
    conditions = []
    for tenant_id, rows in agents_by_tenant.items():
        name = tenants[tenant_id]
        in_service = [r for r in rows if r["revoked_at"] is None]
        active_ids = {r["pk"] for r in in_service if r["availability__active"]
                      or (r["availability__since"] or r["registered_at"]) > grace_start}
        active = [r for r in in_service if r["pk"] in active_ids]
        inactive = sorted(r["name"] for r in in_service if r["pk"] not in active_ids)  # a set: linear in the agents
        threshold = thresholds.get(tenant_id, DEFAULT_ACTIVE_AGENTS_THRESHOLD)
        details = {"active": len(active), "agents": len(in_service), "inactive": inactive}
        if threshold and len(active) < threshold:
            conditions.append(Condition(
                tenant_id, Incident.Kind.AGENTS_BELOW_THRESHOLD, "",
                f"{name}: {len(active)} active agent(s), {threshold} needed",
                {**details, "threshold": threshold}))
        if len(in_service) >= FAILOVER_AGENTS and len(active) < FAILOVER_AGENTS:
            conditions.append(Condition(
                tenant_id, Incident.Kind.FAILOVER_LOST, "",
                f"{name}: failover lost, {len(active)} of {len(in_service)} agents active", details))
    return conditions


def _spike_conditions(*, tenants: dict[str, str], now: datetime.datetime) -> list[Condition]:
    """directory_unavailable or agent_timeout above PTA_ALERT_SPIKE_SHARE of a tenant's sign-ins in the last five
    minutes, once it had at least PTA_ALERT_SPIKE_MIN_SIGNINS."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for row in (SignInEvent.objects.filter(created_at__gte=now - SPIKE_WINDOW, tenant__isnull=False)
                .values("tenant_id", "outcome").annotate(n=Count("id"))):
        counts[str(row["tenant_id"])][row["outcome"]] = row["n"]
    conditions = []
    for tenant_id, by_outcome in counts.items():
        total = sum(by_outcome.values())
        if total < settings.PTA_ALERT_SPIKE_MIN_SIGNINS or tenant_id not in tenants:
            continue
        for outcome in SPIKE_OUTCOMES:
            share = by_outcome.get(outcome, 0) / total
            if share > settings.PTA_ALERT_SPIKE_SHARE:
                conditions.append(Condition(
                    tenant_id, Incident.Kind.OUTCOME_SPIKE, outcome,
                    f"{tenants[tenant_id]}: {outcome} in {share:.0%} of sign-ins in the last 5 minutes",
                    {"outcome": outcome, "count": by_outcome.get(outcome, 0), "signins": total,
                     "share": round(share, 3), "threshold": settings.PTA_ALERT_SPIKE_SHARE}))
    return conditions


def alerts_evaluate(*, now: datetime.datetime | None = None) -> dict[str, int]:
    """Evaluate the agent and spike conditions of every tenant and open or resolve their incidents."""
    now = now or timezone.now()
    # Names only (the summaries'): every tenant is read each sweep, and a tenant row is wide.
    tenants = {str(pk): name for pk, name in Tenant.objects.values_list("pk", "name")}
    conditions = _agent_conditions(tenants=tenants, now=now) + _spike_conditions(tenants=tenants, now=now)
    return incidents_reconcile(kinds=AGENT_KINDS, conditions=conditions, now=now)


def certificates_sweep(*, now: datetime.datetime | None = None) -> dict[str, int]:
    """An incident per agent (not revoked) whose certificate ends within 14 days and was not renewed; renewal,
    revocation or removal resolves it."""
    now = now or timezone.now()
    conditions = []
    for agent in Agent.objects.filter(revoked_at=None, certificate_not_after__lte=now + CERTIFICATE_WARNING
                                      ).select_related("tenant"):
        days = (agent.certificate_not_after - now).days
        when = "expired" if agent.certificate_not_after <= now else f"expires in {days} day(s)"
        conditions.append(Condition(
            str(agent.tenant_id), Incident.Kind.CERTIFICATE_EXPIRING, str(agent.pk),
            f"{agent.tenant.name}: the certificate of agent {agent.name} {when}",
            {"agent": agent.name, "agent_id": str(agent.pk),
             "certificate_not_after": agent.certificate_not_after.isoformat()}))
    return incidents_reconcile(kinds=(Incident.Kind.CERTIFICATE_EXPIRING,), conditions=conditions, now=now)


def incidents_purge(*, older_than_days: int, now: datetime.datetime | None = None) -> int:
    """Delete the incidents resolved more than ``older_than_days`` ago, with their notifications; an open incident
    stays however old. Returns how many incidents went."""
    cutoff = (now or timezone.now()) - datetime.timedelta(days=older_than_days)
    stale = Incident.objects.filter(resolved_at__lt=cutoff)
    count = stale.count()
    stale.delete()
    return count
