from django.core.management.base import CommandError

from tenant.models import Tenant
from tenant.selectors import tenant_domain
from tenant.services import domain_verify
from trail.commands import AuditedCommand


class Command(AuditedCommand):
    help = ("Look up a domain's DNS TXT record and verify the domain when it matches; exits 0 once the domain is "
            "verified (also when it already was).")

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, dest="slug", help="the tenant's slug")
        parser.add_argument("domain", help="a domain added with domain_add")

    def handle(self, *args, slug, domain, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant with slug {slug!r}.")
        claim = tenant_domain(tenant=tenant, name=domain)
        if claim is None:
            raise CommandError(f"Tenant {tenant.slug} has no domain {domain!r}; add it with domain_add first.")
        result = domain_verify(domain=claim)
        if not result.verified:
            raise CommandError(result.message)
        self.stdout.write(result.message)
