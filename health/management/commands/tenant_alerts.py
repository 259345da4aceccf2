from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from health.services.alert_recipients import alert_emails_confirmed
from health.services.alert_settings import alert_settings_get, alert_settings_set
from tenant.models import Tenant
from trail.commands import AuditedCommand


class Command(AuditedCommand):
    help = ("Set where a tenant's health alerts go (e-mail addresses, a signed webhook) and print the settings. "
            "Without options it only prints them. Each new e-mail address is mailed a confirmation link first and "
            "gets alerts only once someone confirmed it there (unconfirmed ones: email_unconfirmed=).")

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--email", action="append", metavar="ADDR",
                            help="an address to alert (repeat for several); replaces the list. A new address "
                                 "(or one unconfirmed whose last link is over an hour old) is mailed a link to "
                                 "confirm, and gets nothing else until it is confirmed")
        parser.add_argument("--no-email", action="store_true", dest="no_email", help="alert nobody by e-mail")
        parser.add_argument("--webhook", metavar="URL",
                            help="https:// URL that receives the signed JSON; '' removes it")
        parser.add_argument("--webhook-secret-file", metavar="PATH", dest="secret_file", type=Path,
                            help="a file holding the webhook's signing secret (at least 16 characters)")
        parser.add_argument("--threshold", type=int, metavar="N",
                            help="fewer active agents than N opens an incident (default 1; 0: never)")

    def handle(self, *args, slug, email, no_email, webhook, secret_file, threshold, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant with slug {slug!r}.")
        if email and no_email:
            raise CommandError("--email and --no-email contradict each other.")
        secret = None
        if secret_file is not None:
            try:
                secret = secret_file.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(f"Cannot read the webhook secret from {secret_file}: {exc}") from None
        if email or no_email or webhook is not None or secret is not None or threshold is not None:
            try:
                alert_settings_set(tenant=tenant, emails=[] if no_email else email, webhook_url=webhook,
                                   webhook_secret=secret, active_agents_threshold=threshold)
            except ValidationError as exc:
                raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        current = alert_settings_get(tenant=tenant)
        self.stdout.write(f"tenant={tenant.slug}")
        confirmed = alert_emails_confirmed(tenant_id=tenant.pk, addresses=current.email_list)
        self.stdout.write(f"email={','.join(current.email_list)}")
        self.stdout.write(f"email_unconfirmed={','.join(a for a in current.email_list if a not in confirmed)}")
        self.stdout.write(f"webhook={current.webhook_url}")
        self.stdout.write(f"webhook_secret={'set' if current.webhook_secret_set else 'not set'}")
        self.stdout.write(f"threshold={current.active_agents_threshold}")
