"""The trail's JSON lines: one event a line, the same for the stream (trail/stream.py) and the export
(``manage.py audit_export``). The schema is documented in docs/architecture.md ("The audit trail"); its version is
``SCHEMA`` on every line. A reader must ignore fields it does not know: a later version may add some, and changes
the version only when a field changes meaning or goes."""

from __future__ import annotations

import datetime
import json
from typing import Any

SCHEMA = "pta-audit/1"


def _time(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def change_line(event) -> dict[str, Any]:
    """An administrative change (trail.AuditEvent)."""
    return {
        "schema": SCHEMA, "kind": "change", "id": event.id, "time": _time(event.created_at),
        "tenant": _text(event.tenant_id),
        "actor": {"name": event.actor, "user_id": event.actor_user_id, "os_user": event.actor_os_user or None,
                  "through": event.through, "address": event.address or None, "detail": event.detail or None},
        "object": {"type": event.object_type, "id": event.object_id, "name": event.object_repr},
        "action": event.action, "changes": event.changes,
    }


def signin_line(event) -> dict[str, Any]:
    """A sign-in record (signin.SignInEvent). A sign-in that asked a second factor is streamed twice, after its
    password step and with its second factor's result: the later line of one ``id`` is its final state."""
    return {
        "schema": SCHEMA, "kind": "signin", "id": event.id, "time": _time(event.created_at),
        "tenant": _text(event.tenant_id), "request_id": _text(event.request_id),
        "username": event.username, "user_id": event.user_id, "outcome": event.outcome,
        "ad_subcode": event.ad_subcode or None, "address": event.ip_address or None,
        "user_agent": event.user_agent or None, "channel": event.channel, "familiar": event.familiar,
        "location": event.location or None, "location_kind": event.location_kind or None,
        "agent": _text(event.agent_id), "application": _text(event.application_id),
        "password_change": event.password_change,
        "mfa": {"decision": event.mfa_decision or None, "reason": event.mfa_reason or None,
                "result": event.mfa_result or None},
        "total_ms": event.total_ms, "agent_ms": event.agent_ms, "queued_ms": event.queued_ms,
    }


def line_text(line: dict[str, Any]) -> str:
    """One line of text, no newline inside (JSON escapes every control character)."""
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str)
