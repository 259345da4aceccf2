from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from tenant.models import Location, Tenant
from tenant.services import location_remove, location_set
from trail.commands import AuditedCommand


class Command(AuditedCommand):
    help = ("Add or change a tenant's named location (address ranges, trusted or blocked), or remove one; then "
            "print the tenant's locations, one a line: name, kind, ranges.")

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", help="the location's name (added, or its ranges and kind replaced)")
        parser.add_argument("--range", action="append", default=[], dest="ranges", metavar="CIDR",
                            help="an IPv4 or IPv6 network (203.0.113.0/24, 2001:db8::/48); repeat for several")
        kind = parser.add_mutually_exclusive_group()
        kind.add_argument("--trusted", action="store_const", const=Location.Kind.TRUSTED, dest="kind",
                          help="sign-ins from here need no second factor under the 'untrusted' MFA policy")
        kind.add_argument("--blocked", action="store_const", const=Location.Kind.BLOCKED, dest="kind",
                          help="sign-ins from here are refused before any agent is asked")
        parser.add_argument("--remove", metavar="NAME", help="remove the location of this name")

    def handle(self, *args, slug, name, ranges, kind, remove, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant with slug {slug!r}.")
        if remove is not None and (name is not None or ranges or kind is not None):
            raise CommandError("--remove takes no --name, --range, --trusted or --blocked.")
        if remove is not None:
            if not location_remove(tenant=tenant, name=remove):
                raise CommandError(f"Tenant {tenant.slug} has no location named {remove!r}.")
            self.stderr.write(f"Removed location {remove} of tenant {tenant.slug}")
        elif name is not None:
            if not ranges or kind is None:
                raise CommandError("A location needs --name, at least one --range, and --trusted or --blocked.")
            try:
                location_set(tenant=tenant, name=name, ranges=ranges, kind=kind)
            except ValidationError as exc:
                raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        elif ranges or kind is not None:
            raise CommandError("--range, --trusted and --blocked need --name.")
        for location in Location.objects.filter(tenant=tenant):
            self.stdout.write(f"{location.name}\t{location.kind}\t{' '.join(location.ranges.split())}")
