from django.core.management.base import CommandError

from samlidp.services.keys import signing_key_promote, signing_key_stage, signing_keys_published
from tenant.models import Tenant
from trail.commands import AuditedCommand


class Command(AuditedCommand):
    help = ("Rotate a tenant's SAML signing key in two steps: --stage publishes the next certificate in the metadata "
            "(it signs nothing yet); once every SP has read the metadata again, --promote makes it sign. Without "
            "an option, lists the published keys.")

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="the tenant's slug")
        step = parser.add_mutually_exclusive_group()
        step.add_argument("--stage", action="store_true", help="publish the next key (the same one if staged)")
        step.add_argument("--promote", action="store_true", help="the staged key signs from now on")

    def handle(self, *args, tenant, stage, promote, **options):
        owner = Tenant.objects.filter(slug=tenant).first()
        if owner is None:
            raise CommandError(f"No tenant with slug {tenant!r}.")
        if stage:
            signing_key_stage(tenant=owner)
        elif promote:
            try:
                signing_key_promote(tenant=owner)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        for key in signing_keys_published(tenant=owner):
            self.stdout.write(f"{key.state} key={key.pk} created={key.created_at:%Y-%m-%dT%H:%M:%SZ}")
