from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from applications.selectors import (
    application_assigned_groups,
    application_assigned_users,
    application_by_client_id,
    application_pending_group_names,
)
from applications.services import application_access_set
from samlidp.models import ServiceProvider
from trail.commands import AuditedCommand


class Command(AuditedCommand):
    help = ("Change who may use an application and how, then print its access settings, one `key=value` a line. "
            "Without options it only prints them.")

    def add_arguments(self, parser):
        parser.add_argument("client_id", help="the application's client_id, or a SAML service provider's entity ID")
        parser.add_argument("--require-mfa", choices=["on", "off"], dest="require_mfa",
                            help="a second factor for this application whatever the tenant's MFA policy")
        parser.add_argument("--phishing-resistant", choices=["on", "off"], dest="phishing_resistant",
                            help="on: the sign-in for this application needs a passkey (codes refused)")
        parser.add_argument("--assign-group", action="append", default=[], dest="assign_groups", metavar="NAME",
                            help="let members of this directory group (sAMAccountName; nested membership counts) "
                                 "use it, and turn assignment on; a name no sign-in has reported yet is kept and "
                                 "matched at the next sign-in that reports it (repeat for several)")
        parser.add_argument("--unassign-group", action="append", default=[], dest="unassign_groups", metavar="NAME",
                            help="no longer admit this group's members (repeat for several)")
        parser.add_argument("--assignment-required", choices=["on", "off"], dest="assignment_required",
                            help="on: only assigned users and members of assigned groups may use it; off: all the "
                                 "tenant's users (the assignments are kept)")

    def handle(self, *args, client_id, **options):
        application = application_by_client_id(client_id=client_id)
        if application is None:  # a SAML service provider's entity ID
            providers = list(ServiceProvider.objects.select_related("application").filter(entity_id=client_id)[:2])
            if len(providers) > 1:
                raise CommandError(f"{client_id!r} is the entity ID of SAML service providers of several tenants: "
                                   "give the application's client_id.")
            application = providers[0].application if providers else None
        if application is None:
            raise CommandError(f"No application with client_id {client_id!r}.")
        try:
            application = application_access_set(application=application, **self.changes(options))
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        for key, value in self.settings(application):
            self.stdout.write(f"{key}={value}")

    @staticmethod
    def changes(options: dict) -> dict:
        """The options, as application_access_set's arguments (what was not given: left out, unchanged)."""
        changes: dict[str, object] = {}
        if options["require_mfa"] is not None:
            changes["require_mfa"] = options["require_mfa"] == "on"
        if options["phishing_resistant"] is not None:
            changes["phishing_resistant_required"] = options["phishing_resistant"] == "on"
        if options["assignment_required"] is not None:
            changes["assignment_required"] = options["assignment_required"] == "on"
        if options["assign_groups"]:
            changes["assign_groups"] = options["assign_groups"]
        if options["unassign_groups"]:
            changes["unassign_groups"] = options["unassign_groups"]
        return changes

    @staticmethod
    def settings(application) -> list[tuple[str, str]]:
        """What is printed: the application, then each access setting (lists comma-separated; a group name no
        sign-in has reported yet is marked "(pending)")."""
        groups = [group.name for group in application_assigned_groups(application=application)]
        groups += [f"{name} (pending)" for name in application_pending_group_names(application=application)]
        users = [user.upn for user in application_assigned_users(application=application)]
        return [("client_id", application.client_id), ("name", application.name),
                ("tenant", application.tenant.slug),
                ("assignment_required", "on" if application.assignment_required else "off"),
                ("assigned_groups", ", ".join(groups)), ("assigned_users", ", ".join(users)),
                ("require_mfa", "on" if application.require_mfa else "off"),
                ("phishing_resistant", "on" if application.phishing_resistant_required else "off")]
