"""Reads about applications: which one a request names, whether a browser origin is registered, and whether a user
may use one (assignment)."""

from __future__ import annotations

import hashlib

from django.db.models import Q
from oauth2_provider.models import get_access_token_model

from applications.models import Application, PendingGroupAssignment
from applications.uris import origin_registered
from tenant.models import DirectoryGroup, DirectoryGroupMembership, User


def application_by_client_id(*, client_id: str) -> Application | None:
    return Application.objects.filter(client_id=client_id).first() if client_id else None


def application_of_access_token(*, token: str) -> Application | None:
    """The application an access token was issued to (whether or not it is still valid)."""
    if not token:
        return None
    checksum = hashlib.sha256(token.encode()).hexdigest()
    found = get_access_token_model().objects.filter(token_checksum=checksum).select_related("application").first()
    return found.application if found else None


def origin_registered_by_any_application(*, origin: str) -> bool:
    """A CORS preflight names no client: it passes for an origin some application registered exactly."""
    if not origin:
        return False
    candidates = Application.objects.filter(allowed_origins__contains=origin).values_list("allowed_origins", flat=True)
    return any(origin_registered(origin, registered) for registered in candidates)


def application_user_assigned(*, application: Application, user: User) -> bool:
    """Whether the user may get a code or tokens for the application: always when it does not require assignment;
    else when assigned directly, or a member of an assigned group (transitively: the stored groups are AD's
    tokenGroups as of the user's last sign-in), or of a group of a pending name (not yet resolved). Only the
    application's own tenant's users. Groups not read (an agent that does not read them, or could not) are no
    membership: refused, never admitted on a guess."""
    if not application.assignment_required:
        return True
    if user.tenant_id is None or user.tenant_id != application.tenant_id:
        return False
    if application.assigned_users.filter(pk=user.pk).exists():
        return True
    in_pending = Q(pk__in=[])  # AD compares sAMAccountNames case-insensitively
    for name in application.pending_groups.values_list("name", flat=True):
        in_pending |= Q(group__name__iexact=name)
    return DirectoryGroupMembership.objects.filter(
        Q(group__applications=application) | in_pending, user=user, group__tenant_id=application.tenant_id,
    ).exists()


def application_assigned_groups(*, application: Application) -> list[DirectoryGroup]:
    return list(application.assigned_groups.order_by("name", "object_guid"))


def application_pending_group_names(*, application: Application) -> list[str]:
    return list(PendingGroupAssignment.objects.filter(application=application).values_list("name", flat=True))


def application_assigned_users(*, application: Application) -> list[User]:
    return list(application.assigned_users.order_by("upn"))
