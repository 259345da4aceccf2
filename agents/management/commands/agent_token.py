from django.core.management.base import CommandError

from agents.services.registration import DEFAULT_TOKEN_TTL_SECONDS, registration_token_issue
from tenant.models import Tenant
from trail.commands import AuditedCommand


class Command(AuditedCommand):
    help = "Issue a one-time agent registration token; prints it on the last line."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--domain", action="append", default=[], dest="domains",
                            help="a domain the agent will serve (default: all of the tenant's)")
        parser.add_argument("--ttl", type=int, default=DEFAULT_TOKEN_TTL_SECONDS, help="seconds the token is valid")

    def handle(self, *args, tenant, domains, ttl, **options):
        found = Tenant.objects.filter(slug=tenant).first()
        if found is None:
            raise CommandError(f"No tenant with slug {tenant!r}.")
        chosen = list(found.domains.filter(name__in=[d.lower() for d in domains]))
        missing = set(d.lower() for d in domains) - {d.name for d in chosen}
        if missing:
            raise CommandError(f"Not domains of {tenant}: {', '.join(sorted(missing))}")
        try:
            token, raw = registration_token_issue(tenant=found, domains=chosen, ttl_seconds=ttl)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(
            f"One-time registration token for {found.slug}, valid until {token.expires_at:%Y-%m-%d %H:%M:%S} UTC")
        self.stdout.write(raw)
