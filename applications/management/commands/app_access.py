from django.core.management.base import BaseCommand, CommandError

from applications.selectors import application_by_client_id
from applications.services import application_access_set


class Command(BaseCommand):
    help = ("Change who may use an application and how, then print its access settings, one `key=value` a line. "
            "Without options it only prints them.")

    def add_arguments(self, parser):
        parser.add_argument("client_id")
        parser.add_argument("--require-mfa", choices=["on", "off"], dest="require_mfa",
                            help="a second factor for this application whatever the tenant's MFA policy")

    def handle(self, *args, client_id, **options):
        application = application_by_client_id(client_id=client_id)
        if application is None:
            raise CommandError(f"No application with client_id {client_id!r}.")
        application = application_access_set(application=application, **self.changes(options))
        for key, value in self.settings(application):
            self.stdout.write(f"{key}={value}")

    @staticmethod
    def changes(options: dict) -> dict:
        """The options, as application_access_set's arguments (what was not given: left out, unchanged)."""
        changes: dict[str, object] = {}
        if options["require_mfa"] is not None:
            changes["require_mfa"] = options["require_mfa"] == "on"
        return changes

    @staticmethod
    def settings(application) -> list[tuple[str, str]]:
        """What is printed: the application, then each access setting."""
        return [("client_id", application.client_id), ("name", application.name),
                ("tenant", application.tenant.slug), ("require_mfa", "on" if application.require_mfa else "off")]
