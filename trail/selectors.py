import datetime
import heapq
from collections.abc import Iterator
from typing import Any

from signin.models import SignInEvent
from trail.lines import change_line, signin_line
from trail.models import AuditEvent

KINDS = ("change", "signin")


def trail_lines(*, since: datetime.datetime, until: datetime.datetime, kinds: tuple[str, ...] = KINDS,
                tenant_id: Any = None, chunk: int = 2000) -> Iterator[dict[str, Any]]:
    """The changes and sign-ins of [since, until), as JSON lines, oldest first (the two merged by time), read in
    chunks so that a year's export holds one chunk of each in memory."""
    sources = []
    if "change" in kinds:
        changes = AuditEvent.objects.filter(created_at__gte=since, created_at__lt=until)
        if tenant_id is not None:
            changes = changes.filter(tenant_id=tenant_id)
        sources.append(change_line(e) for e in changes.order_by("created_at", "id").iterator(chunk_size=chunk))
    if "signin" in kinds:
        signins = SignInEvent.objects.filter(created_at__gte=since, created_at__lt=until)
        if tenant_id is not None:
            signins = signins.filter(tenant_id=tenant_id)
        sources.append(signin_line(e) for e in signins.order_by("created_at", "id").iterator(chunk_size=chunk))
    return heapq.merge(*sources, key=lambda line: line["time"])
