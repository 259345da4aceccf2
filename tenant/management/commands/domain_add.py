from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from tenant.models import Tenant
from tenant.services import domain_add
from trail.commands import AuditedCommand


class Command(AuditedCommand):
    help = ("Add an unverified domain to a tenant and print the DNS TXT record that proves ownership "
            "(then run domain_verify).")

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, dest="slug", help="the tenant's slug")
        parser.add_argument("domain", help="the UPN suffix, e.g. contoso.com")

    def handle(self, *args, slug, domain, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant with slug {slug!r}.")
        try:
            added = domain_add(tenant=tenant, name=domain)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(
            f"Added {added.name} to {tenant.name}, unverified: it routes no sign-in yet. Publish this DNS TXT record "
            f"in the {added.name} zone, then run: python manage.py domain_verify --tenant {tenant.slug} {added.name}")
        self.stdout.write(f"name={added.record_name}")
        self.stdout.write(f"value={added.record_value}")
