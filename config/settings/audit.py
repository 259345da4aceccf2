"""The audit trail: how long it is kept, and where it is streamed as JSON lines (trail/stream.py)."""

import re

from django.core.exceptions import ImproperlyConfigured

from .env import env, env_int

# Administrative changes are kept this long (days), then purged by the periodic work.
PTA_AUDIT_RETENTION_DAYS = env_int("PTA_AUDIT_RETENTION_DAYS", 365, minimum=1)
# Resolved health incidents (and their notifications) are kept this long after they were resolved (days).
PTA_INCIDENT_RETENTION_DAYS = env_int("PTA_INCIDENT_RETENTION_DAYS", 90, minimum=1)

# Where the trail and the sign-in records are streamed, one JSON line each: empty (off), file:/absolute/path (or
# the path alone), syslog (the local /dev/log), syslog:/path/to/socket, or syslog://host:port (UDP).
PTA_AUDIT_STREAM = env("PTA_AUDIT_STREAM", "").strip()
_STREAM = re.compile(r"(file:)?/.+|syslog|syslog:/.+|syslog://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}/?")
if PTA_AUDIT_STREAM and not _STREAM.fullmatch(PTA_AUDIT_STREAM):
    raise ImproperlyConfigured(
        "PTA_AUDIT_STREAM must be empty, file:/absolute/path, syslog, syslog:/path/to/socket or syslog://host:port, "
        f"not {PTA_AUDIT_STREAM[:60]!r}.")
