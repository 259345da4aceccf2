from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from tenant.models import Tenant
from tenant.services import tenant_policy_set
from trail.commands import AuditedCommand


class Command(AuditedCommand):
    help = ("Change a tenant's sign-in policies (MFA, password grant, cloud lockout, refresh checks) and what its "
            "sign-in pages tell people who can't sign in (helpdesk contact, help text), and print them.")

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--mfa", choices=[c.value for c in Tenant.MfaPolicy],
                            help="off, all users, users with MFA enforced (per-user), or unfamiliar sign-ins only")
        parser.add_argument("--phishing-resistant", choices=["on", "off"], dest="phishing_resistant",
                            help="on: a passkey is the only second factor accepted, at every sign-in (authenticator-"
                                 "app and recovery codes refused)")
        parser.add_argument("--password-grant", choices=["on", "off"], dest="password_grant",
                            help="allow the OAuth password grant for this tenant's legacy clients")
        parser.add_argument("--lockout-threshold", type=int, dest="lockout_threshold",
                            help="wrong passwords before the cloud account locks (keep it below AD's)")
        parser.add_argument("--refresh-check", choices=["on", "off"], dest="refresh_check",
                            help="each OAuth token refresh asks an agent whether the account is still enabled")
        parser.add_argument("--helpdesk-contact", dest="helpdesk_contact",
                            help="a phone number, an e-mail address or an https:// address (\"\" clears it)")
        parser.add_argument("--help-text", dest="help_text",
                            help="plain text for the \"Can't access your account?\" page (\"\" clears it)")

    def handle(self, *args, slug, mfa, phishing_resistant, password_grant, lockout_threshold, refresh_check,
               helpdesk_contact, help_text, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant with slug {slug!r}.")
        try:
            tenant = tenant_policy_set(
                tenant=tenant, mfa_policy=mfa, lockout_threshold=lockout_threshold,
                password_grant_enabled=None if password_grant is None else password_grant == "on",
                refresh_checks_directory=None if refresh_check is None else refresh_check == "on",
                helpdesk_contact=helpdesk_contact, help_text=help_text,
                phishing_resistant_required=None if phishing_resistant is None else phishing_resistant == "on",
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        self.stdout.write(f"tenant={tenant.slug}")
        self.stdout.write(f"mfa={tenant.mfa_policy}")
        self.stdout.write(f"password_grant={'on' if tenant.password_grant_enabled else 'off'}")
        self.stdout.write(f"lockout_threshold={tenant.lockout_threshold}")
        self.stdout.write(f"refresh_check={'on' if tenant.refresh_checks_directory else 'off'}")
        self.stdout.write(f"helpdesk_contact={tenant.helpdesk_contact}")
        self.stdout.write(f"phishing_resistant={'on' if tenant.phishing_resistant_required else 'off'}")
