from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from tenant.services import tenant_create
from trail.commands import AuditedCommand


class Command(AuditedCommand):
    help = "Create a tenant with its verified domains; prints the tenant's slug on the last line."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--domain", action="append", required=True, dest="domains",
                            help="a verified UPN suffix (repeat for several)")
        parser.add_argument("--slug", default="")

    def handle(self, *args, name, domains, slug, **options):
        try:
            tenant = tenant_create(name=name, domains=domains, slug=slug)
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        self.stderr.write(f"Created tenant {tenant.name} with domain(s) {', '.join(domains)}")
        self.stdout.write(tenant.slug)
