import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from trail.context import Actor
from trail.models import AuditEvent
from trail.redaction import value_redacted


def audit_event_record(*, actor: Actor, tenant_id: Any, object_type: str, object_id: str, object_repr: str,
                       action: str, changes: dict, using: str = "default") -> AuditEvent:
    """One event, in the change's own transaction; streamed (trail/stream.py) once that transaction commits."""
    event = AuditEvent(
        tenant_id=tenant_id, actor=actor.name[:320], actor_user_id=actor.user_id, actor_os_user=actor.os_user[:64],
        through=actor.through, address=actor.address or None, detail=str(value_redacted("detail", actor.detail)),
        object_type=object_type, object_id=object_id[:64], object_repr=object_repr[:300], action=action[:64],
        changes=changes,
    )
    event.save(using=using)

    def stream() -> None:
        from trail.stream import stream_change

        stream_change(event)

    transaction.on_commit(stream, using=using, robust=True)
    return event


def audit_events_purge(*, older_than_days: int) -> int:
    """Delete audit events older than the retention period; returns how many."""
    cutoff = timezone.now() - datetime.timedelta(days=older_than_days)
    deleted, _ = AuditEvent.objects.filter(created_at__lt=cutoff).delete()
    return deleted
