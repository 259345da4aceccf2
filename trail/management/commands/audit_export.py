import datetime
import os

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from tenant.models import Tenant
from trail.lines import line_text
from trail.selectors import KINDS, trail_lines


def moment(value: str, option: str) -> datetime.datetime:
    """2026-12-07, 2026-12-07T14:00, 2026-12-07T14:00:00+01:00; without a zone, UTC."""
    try:
        parsed = parse_datetime(value)
        if parsed is None and (day := parse_date(value)) is not None:
            parsed = datetime.datetime.combine(day, datetime.time())
    except ValueError:
        parsed = None
    if parsed is None:
        raise CommandError(f"{option} must be a date or a date and time (2026-12-07 or 2026-12-07T14:00:00Z), "
                           f"not {value[:40]!r}.")
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=datetime.UTC)


class Command(BaseCommand):
    help = ("Export the audit trail (administrative changes) and the sign-in records of a time range as JSON lines "
            "(schema pta-audit/1, docs/architecture.md), oldest first, to stdout or a file.")

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, help="from this moment on (a date is its midnight, UTC)")
        parser.add_argument("--until", help="up to, not including, this moment (default: now)")
        parser.add_argument("--kind", choices=[*KINDS, "all"], default="all",
                            help="changes, sign-ins or both (default)")
        parser.add_argument("--tenant", help="one tenant's (its slug) only")
        parser.add_argument("--output", help="write to this file (created or replaced, mode 0640) instead of stdout")

    def handle(self, *args, since, until, kind, tenant, output, **options):
        start = moment(since, "--since")
        end = moment(until, "--until") if until else timezone.now()
        if end <= start:
            raise CommandError("--until must be after --since.")
        tenant_id = None
        if tenant:
            tenant_id = Tenant.objects.filter(slug=tenant).values_list("pk", flat=True).first()
            if tenant_id is None:
                raise CommandError(f"No tenant with slug {tenant!r}.")
        lines = trail_lines(since=start, until=end, kinds=KINDS if kind == "all" else (kind,), tenant_id=tenant_id)
        if output:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            with os.fdopen(fd, "w", encoding="utf-8") as target:
                count = self._write(lines, lambda text: target.write(text + "\n"))
        else:
            count = self._write(lines, self.stdout.write)
        self.stderr.write(f"{count} line(s) exported")

    @staticmethod
    def _write(lines, write) -> int:
        count = 0
        for line in lines:
            write(line_text(line))
            count += 1
        return count
