"""Incidents as people read them in the admin console: times to the second with their zone, and the details an
evaluation stored (JSON) as labelled lines instead of a dict's repr."""

from __future__ import annotations

import datetime

from django.utils import timezone
from django.utils.html import format_html, format_html_join

from health.models import Incident

EMPTY = "–"
# The details' keys (health/services/incidents.py) in the order they read best, with their labels.
LABELS = {
    "outcome": "Outcome",
    "count": "Sign-ins with this outcome",
    "signins": "Sign-ins in the 5 minutes",
    "share": "Share of the sign-ins",
    "active": "Active agents",
    "agents": "Agents in service",
    "inactive": "Inactive agents",
    "agent": "Agent",
    "agent_id": "Agent id",
    "certificate_not_after": "Certificate valid until",
}
PERCENT_KEYS = {"share"}


def time_text(value: datetime.datetime | str | None) -> str:
    """2026-12-07 03:41:35 UTC: the portal's time zone (UTC), to the second, named."""
    if not value:
        return EMPTY
    if isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        moment = value
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, datetime.UTC)
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")


def _value_text(key: str, value, kind: str) -> str:
    if key in PERCENT_KEYS or (key == "threshold" and kind == Incident.Kind.OUTCOME_SPIKE):
        try:
            return f"{float(value):.0%}"
        except (TypeError, ValueError):
            return str(value)
    if key == "outcome":
        return str(value).replace("_", " ")
    if key.endswith("_at") or key.endswith("_after"):
        return time_text(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items()) or EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def incident_detail_lines(incident: Incident) -> list[tuple[str, str]]:
    """(label, text) for each of the incident's details: known keys first, labelled, then any other."""
    details = incident.details if isinstance(incident.details, dict) else {"details": incident.details}
    threshold_label = ("Alert above this share" if incident.kind == Incident.Kind.OUTCOME_SPIKE
                       else "Active agents needed")
    labels = {**LABELS, "threshold": threshold_label}
    keys = [k for k in labels if k in details] + sorted(k for k in details if k not in labels)
    return [(labels.get(k, k.replace("_", " ").capitalize()), _value_text(k, details[k], incident.kind))
            for k in keys]


def incident_details_html(incident: Incident):
    lines = incident_detail_lines(incident)
    if not lines:
        return EMPTY
    return format_html('<dl class="incident-details">{}</dl>',
                       format_html_join("", "<dt>{}</dt><dd>{}</dd>", lines))
