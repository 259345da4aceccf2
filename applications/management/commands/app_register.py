from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from applications.services import GRANTS, application_register
from tenant.models import Tenant
from trail.commands import AuditedCommand


class Command(AuditedCommand):
    help = ("Register a tenant's application (OpenID Connect, authorization code with PKCE by default); prints "
            "client_id=… and, for a confidential client, client_secret=…, each on its own line.")

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="the tenant's slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--redirect-uri", action="append", default=[], dest="redirect_uris",
                            help="an allowed redirect URI, exactly (repeat for several)")
        parser.add_argument("--post-logout-redirect-uri", action="append", dest="post_logout_redirect_uris",
                            help="where the application's sign-out (RP-initiated logout) may send the browser back, "
                                 "exactly (repeat for several; default: the redirect URIs)")
        parser.add_argument("--public", action="store_true", help="a public client (no secret; PKCE only)")
        parser.add_argument("--grant", choices=sorted(GRANTS), default="authorization-code")
        parser.add_argument("--allowed-origin", action="append", default=[], dest="allowed_origins",
                            help="a browser origin (https://host[:port]) allowed to call /token/ and /userinfo/ "
                                 "(CORS), for browser-only clients; repeat for several")
        parser.add_argument("--require-mfa", choices=["on", "off"], default="off", dest="require_mfa",
                            help="a second factor for this application whatever the tenant's MFA policy")
        parser.add_argument("--assign-group", action="append", default=[], dest="assign_groups", metavar="NAME",
                            help="only members of this directory group (sAMAccountName; nested membership counts) "
                                 "may use it: turns assignment on (repeat for several)")

    def handle(self, *args, tenant, name, redirect_uris, post_logout_redirect_uris, public, grant, allowed_origins,
               require_mfa, assign_groups, **options):
        owner = Tenant.objects.filter(slug=tenant).first()
        if owner is None:
            raise CommandError(f"No tenant with slug {tenant!r}.")
        if grant == "authorization-code" and not redirect_uris:
            raise CommandError("The authorization code grant needs at least one --redirect-uri.")
        try:
            application, secret = application_register(tenant=owner, name=name, redirect_uris=redirect_uris,
                                                       public=public, grant=grant, allowed_origins=allowed_origins,
                                                       post_logout_redirect_uris=post_logout_redirect_uris,
                                                       require_mfa=require_mfa == "on", assign_groups=assign_groups)
        except ValidationError as exc:
            if not hasattr(exc, "error_dict"):
                raise CommandError(" ".join(exc.messages)) from None
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        self.stderr.write(f"Registered {application.name} for tenant {owner.slug} ({grant})")
        self.stdout.write(f"client_id={application.client_id}")
        if secret:
            self.stdout.write(f"client_secret={secret}")
