from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from applications.selectors import application_by_client_id
from applications.services import application_secret_rotate
from trail.commands import AuditedCommand


class Command(AuditedCommand):
    help = ("Replace a confidential application's client secret; prints client_secret=… once (only its hash is "
            "kept). The old secret stops working at once.")

    def add_arguments(self, parser):
        parser.add_argument("client_id", help="the application's client id (app_register printed it)")

    def handle(self, *args, client_id, **options):
        application = application_by_client_id(client_id=client_id.strip())
        if application is None:
            raise CommandError(f"No application with client id {client_id!r}.")
        try:
            secret = application_secret_rotate(application=application, actor="manage.py app_rotate_secret")
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stderr.write(f"Rotated the client secret of {application.name} (tenant {application.tenant.slug}); "
                          "the old one no longer works")
        self.stdout.write(f"client_secret={secret}")
