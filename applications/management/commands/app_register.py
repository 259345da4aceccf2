from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from applications.services import GRANTS, application_register
from samlidp.models import ServiceProvider
from samlidp.services.idp import idp_entity_id, idp_sso_url
from samlidp.services.registration import service_provider_register, sp_metadata_read
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
        saml = parser.add_argument_group("SAML 2.0 service provider (--saml)")
        saml.add_argument("--saml", action="store_true",
                          help="a SAML service provider instead of an OpenID Connect client; prints "
                               "saml_metadata_url=… and saml_sso_url=…")
        saml.add_argument("--entity-id", dest="entity_id", help="the SP's entity ID (default: its metadata's)")
        saml.add_argument("--acs-url", action="append", default=[], dest="acs_urls",
                          help="an assertion consumer service URL (HTTP-POST), exactly; the first is the default "
                               "(repeat for several; default: its metadata's)")
        saml.add_argument("--metadata-file", dest="metadata_file",
                          help="the SP's SAML metadata (XML): entity ID, ACS URLs, SLO URL and certificates from it")
        saml.add_argument("--nameid", choices=[c.value for c in ServiceProvider.NameIdFormat],
                          help="persistent (opaque, pairwise; the default), email, or upn (format unspecified)")
        saml.add_argument("--slo-url", dest="slo_url", default=None, help="the SP's single logout URL")
        saml.add_argument("--signing-cert-file", dest="signing_cert_file",
                          help="the SP's signing certificate (PEM); with it, its requests must be signed")
        saml.add_argument("--allow-idp-initiated", action="store_true", dest="allow_idp_initiated",
                          help="let /saml/<tenant>/sso/?sp=<entity ID> sign users in to it unasked")
        saml.add_argument("--send-groups", action="store_true", dest="send_groups",
                          help="send the groups attribute (the user's directory groups)")

    def handle(self, *args, tenant, name, redirect_uris, post_logout_redirect_uris, public, grant, allowed_origins,
               require_mfa, assign_groups, **options):
        owner = Tenant.objects.filter(slug=tenant).first()
        if owner is None:
            raise CommandError(f"No tenant with slug {tenant!r}.")
        if options["saml"]:
            return self.handle_saml(owner, name, require_mfa=require_mfa == "on", assign_groups=assign_groups,
                                    **options)
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

    def handle_saml(self, owner: Tenant, name: str, *, require_mfa: bool, assign_groups: list[str], entity_id,
                    acs_urls, metadata_file, nameid, slo_url, signing_cert_file, allow_idp_initiated, send_groups,
                    **options) -> None:
        fields: dict = {"entity_id": entity_id or "", "acs_urls": acs_urls, "slo_url": slo_url or "",
                        "signing_certificate": "", "encryption_certificate": "", "requests_signed": False}
        try:
            if metadata_file:
                with open(metadata_file, "rb") as source:
                    found = sp_metadata_read(xml=source.read(1024 * 1024))
                fields.update(entity_id=entity_id or found.entity_id, acs_urls=acs_urls or found.acs_urls,
                              slo_url=found.slo_url if slo_url is None else slo_url,
                              signing_certificate=found.signing_certificate,
                              encryption_certificate=found.encryption_certificate,
                              requests_signed=found.requests_signed and bool(found.signing_certificate))
                nameid = nameid or found.nameid
            if signing_cert_file:
                with open(signing_cert_file) as source:
                    fields.update(signing_certificate=source.read(64 * 1024), requests_signed=True)
            if not fields["entity_id"] or not fields["acs_urls"]:
                raise CommandError("A SAML service provider needs --entity-id and --acs-url, or --metadata-file.")
            sp = service_provider_register(tenant=owner, name=name, nameid=nameid or "persistent",
                                           allow_idp_initiated=allow_idp_initiated, send_groups=send_groups,
                                           require_mfa=require_mfa, assign_groups=assign_groups, **fields)
        except OSError as exc:
            raise CommandError(f"Cannot read {exc.filename}: {exc.strerror}.") from None
        except ValidationError as exc:
            if not hasattr(exc, "error_dict"):
                raise CommandError(" ".join(exc.messages)) from None
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        self.stderr.write(f"Registered SAML service provider {sp.entity_id} ({name}) for tenant {owner.slug}")
        self.stdout.write(f"saml_metadata_url={idp_entity_id(tenant=owner)}")
        self.stdout.write(f"saml_sso_url={idp_sso_url(tenant=owner)}")
        self.stdout.write(f"client_id={sp.application.client_id}")
