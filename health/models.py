import uuid

from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone

# Stands in for "no agent" in the rollup's unique key: SQLite has no NULLS NOT DISTINCT, and a coalesced key
# keeps one row per (minute, tenant, outcome) for sign-ins no agent answered on both databases.
NO_AGENT = uuid.UUID(int=0)
DEFAULT_ACTIVE_AGENTS_THRESHOLD = 1


class SignInRollup(models.Model):
    """Sign-ins of one UTC minute by tenant, agent and outcome: the history the health view charts, kept far
    longer than reading the sign-in records would allow."""

    minute = models.DateTimeField(help_text="Start of the UTC minute.")
    tenant = models.ForeignKey("tenant.Tenant", on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey("agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    outcome = models.CharField(max_length=64)
    count = models.PositiveIntegerField()
    # Of the agent round trip, over the sign-ins an agent answered.
    latency_p50_ms = models.FloatField(null=True)
    latency_p95_ms = models.FloatField(null=True)
    latency_p99_ms = models.FloatField(null=True)

    class Meta:
        ordering = ["minute"]
        constraints = [
            models.UniqueConstraint(
                "minute", "tenant",
                Coalesce("agent", models.Value(NO_AGENT, output_field=models.UUIDField()),
                         output_field=models.UUIDField()),
                "outcome", name="health_rollup_one_row_per_key"),
        ]
        indexes = [models.Index(fields=["tenant", "minute"])]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.outcome} ×{self.count}"


class AlertSettings(models.Model):
    """Where a tenant's health alerts go, and how many active agents it needs. The webhook secret is encrypted
    at rest (health/services/alert_settings.py) and never shown again once set."""

    tenant = models.OneToOneField("tenant.Tenant", on_delete=models.CASCADE, related_name="alert_settings")
    emails = models.TextField("e-mail addresses", blank=True, default="",
                              help_text="One address per line. Each new address is mailed a link to confirm first, "
                                        "and gets alerts only once it is confirmed.")
    webhook_url = models.URLField("webhook URL", max_length=500, blank=True, default="",
                                  help_text="Receives a signed JSON POST when an incident opens or resolves.")
    webhook_secret_encrypted = models.BinaryField(editable=False, null=True)
    active_agents_threshold = models.PositiveSmallIntegerField(
        "active agents needed", default=DEFAULT_ACTIVE_AGENTS_THRESHOLD,
        help_text="Fewer active agents than this opens an incident (0: never).")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "alert settings"
        verbose_name_plural = "alert settings"

    def __str__(self) -> str:
        return f"Alerts of {self.tenant}"

    @property
    def email_list(self) -> list[str]:
        return [line.strip() for line in self.emails.splitlines() if line.strip()]

    @property
    def webhook_secret_set(self) -> bool:
        return bool(self.webhook_secret_encrypted)


class AlertRecipient(models.Model):
    """An address of a tenant's alert e-mail, and whether the person who reads it confirmed it through the link
    mailed to it (health/services/alert_recipients.py). An address gets nothing else before: a tenant
    administrator could otherwise have incident mail sent to anyone. An address without a row is unconfirmed;
    removing it from the list removes its row, so adding it again asks again."""

    tenant = models.ForeignKey("tenant.Tenant", on_delete=models.CASCADE, related_name="+")
    address = models.EmailField(max_length=254)
    created_at = models.DateTimeField(default=timezone.now)
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "address"], name="health_alert_recipient_once")]

    def __str__(self) -> str:
        return f"{self.address} ({'confirmed' if self.confirmed_at else 'not confirmed'})"


class AgentAvailability(models.Model):
    """Whether an agent was present in the registry at the last sweep, and since when: the mark every node
    and worker agrees on, whichever node the agent was connected to."""

    agent = models.OneToOneField("agents.Agent", on_delete=models.CASCADE, primary_key=True,
                                 related_name="availability")
    active = models.BooleanField(default=False)
    since = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "agent availability"

    def __str__(self) -> str:
        return f"{self.agent_id} {'active' if self.active else 'inactive'} since {self.since:%Y-%m-%d %H:%M:%S}"


class Incident(models.Model):
    """A condition of a tenant's health, from when it was first seen until it cleared. At most one is open per
    (tenant, kind, subject): the database refuses a second, which is what makes evaluation safe on several
    workers."""

    class Kind(models.TextChoices):
        AGENTS_BELOW_THRESHOLD = "agents_below_threshold", "Active agents below the threshold"
        FAILOVER_LOST = "failover_lost", "Failover lost"
        CERTIFICATE_EXPIRING = "certificate_expiring", "Agent certificate expiring"
        OUTCOME_SPIKE = "outcome_spike", "Spike of failed sign-ins"

    tenant = models.ForeignKey("tenant.Tenant", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    # What within the tenant: an agent's id (certificate), an outcome (spike), "" for the tenant as a whole.
    subject = models.CharField(max_length=64, blank=True, default="")
    summary = models.CharField(max_length=300)
    details = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "kind", "subject"], condition=models.Q(resolved_at=None),
                                    name="health_incident_one_open_per_subject"),
        ]
        indexes = [models.Index(fields=["tenant", "-opened_at"])]

    def __str__(self) -> str:
        return self.summary

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class Notification(models.Model):
    """One message about one incident's opening or resolution on one channel: an outbox row written with the
    transition, delivered by its own task. Unique per (incident, event, channel), so it is sent once."""

    class Event(models.TextChoices):
        OPENED = "opened", "Opened"
        RESOLVED = "resolved", "Resolved"

    class Channel(models.TextChoices):
        EMAIL = "email", "E-mail"
        WEBHOOK = "webhook", "Webhook"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=16, choices=Event.choices)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Due time of the next attempt; while an attempt runs, the end of its lease.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True, help_text="Given up after the last attempt.")
    last_error = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "event", "channel"], name="health_notification_once"),
        ]
        indexes = [models.Index(fields=["sent_at", "failed_at", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.channel} {self.event} #{self.incident_id}"

    @property
    def state(self) -> str:
        return "sent" if self.sent_at else "failed" if self.failed_at else "pending"
