from django.db import models
from django.utils import timezone


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("The audit trail is append-only: events are never updated.")


class AuditEvent(models.Model):
    """One administrative change: who, when, from where, through what, to which object, and what changed (before
    and after, never a secret). Append-only: written once with the change, in its transaction; never updated;
    deleted only by the retention purge (trail/services.py)."""

    class Through(models.TextChoices):
        CONSOLE = "console", "admin console"
        COMMAND = "command", "management command"
        REGISTRATION = "registration", "agent registration"

    id = models.BigAutoField("ID", primary_key=True)
    created_at = models.DateTimeField("time", default=timezone.now, db_index=True)
    # Plain values, not foreign keys: an event outlives the tenant, the user and the object it names.
    tenant_id = models.UUIDField("tenant", null=True, blank=True, db_index=True,
                                 help_text="The tenant the object belongs to; empty for platform objects.")
    actor = models.CharField("who", max_length=320)
    actor_user_id = models.BigIntegerField("who (user ID)", null=True, blank=True)
    actor_os_user = models.CharField("operating-system user", max_length=64, blank=True, default="")
    through = models.CharField(max_length=16, choices=Through.choices)
    address = models.GenericIPAddressField("from address", null=True, blank=True)
    detail = models.CharField("request or command", max_length=500, blank=True, default="")
    object_type = models.CharField("object type", max_length=64, db_index=True)
    object_id = models.CharField("object ID", max_length=64)
    object_repr = models.CharField("object", max_length=300)
    action = models.CharField(max_length=64, db_index=True)
    changes = models.JSONField(default=dict, blank=True,
                               help_text="{field: {before, after}}; secrets appear as [redacted].")

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "audit event"
        verbose_name_plural = "audit trail"
        # Read only, in the console as everywhere: no permission to add, change or delete exists to be granted.
        default_permissions = ("view",)
        indexes = [models.Index(fields=["tenant_id", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.action} {self.object_repr} by {self.actor}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("The audit trail is append-only: events are never updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("The audit trail is append-only: events leave only by the retention purge.")
