import logging
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from oauth2_provider.generators import generate_client_secret

from applications.models import Application, PendingGroupAssignment
from tenant.models import DirectoryGroup, Tenant, User

logger = logging.getLogger(__name__)

GRANTS = {"authorization-code": Application.GRANT_AUTHORIZATION_CODE, "password": Application.GRANT_PASSWORD}


@sensitive_variables("secret")
@transaction.atomic
def application_register(*, tenant: Tenant, name: str, redirect_uris: Iterable[str] = (), public: bool = False,
                         grant: str = "authorization-code", allowed_origins: Iterable[str] = (),
                         post_logout_redirect_uris: Iterable[str] | None = None,
                         require_mfa: bool = False, assign_groups: Iterable[str] = ()) -> tuple[Application, str]:
    """A tenant's application; returns it and its client secret in clear (shown once: only a hash is kept),
    empty for a public client. ID tokens are signed with RS256; the tenant's own applications skip the
    consent page (the tenant's administrators registered them). ``allowed_origins`` (https://host[:port]) are
    the browser origins that may call /token/ and /userinfo/ (CORS), for browser-only clients.
    ``post_logout_redirect_uris`` are where RP-initiated logout may send the browser back; None (not given): the
    redirect URIs, as before the option existed. ``require_mfa``: its users need a second factor whatever the
    tenant's MFA policy. ``assign_groups``: group names (sAMAccountName); any turns assignment on (only their
    members may use it; a name no sign-in has reported yet waits for one: application_access_set)."""
    redirect_uris = list(redirect_uris)
    after_logout = redirect_uris if post_logout_redirect_uris is None else list(post_logout_redirect_uris)
    application = Application(
        tenant=tenant, name=name.strip(), redirect_uris=" ".join(redirect_uris),
        post_logout_redirect_uris=" ".join(after_logout),
        client_type=Application.CLIENT_PUBLIC if public else Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=GRANTS[grant], algorithm=Application.RS256_ALGORITHM, skip_authorization=True,
        allowed_origins=" ".join(allowed_origins), require_mfa=require_mfa,
    )
    secret = application_secret_issue(application=application)
    application.full_clean()
    application.save()
    assign_groups = list(assign_groups)
    if assign_groups:
        application_access_set(application=application, assign_groups=assign_groups)
    return application, secret


@sensitive_variables("secret")
def application_secret_issue(*, application: Application) -> str:
    """Gives an unsaved application its first client secret: returns it in clear (to be shown once; saving keeps
    only its hash, DOT's ``ClientSecretField``), or "" for a public client, which has none."""
    secret = "" if application.client_type == Application.CLIENT_PUBLIC else generate_client_secret()
    application.client_secret, application.hash_client_secret = secret, True
    return secret


@sensitive_variables("secret")
@transaction.atomic
def application_secret_rotate(*, application: Application, actor: str) -> str:
    """Replaces a confidential application's client secret with a new one and returns it in clear (shown once;
    only its hash is saved). The old secret fails at the token endpoint from this commit on; tokens already
    issued live on (refreshing one needs the client's secret, so the new one). ``actor`` names who asked, for
    the log."""
    if application.client_type != Application.CLIENT_CONFIDENTIAL:
        raise ValidationError("A public client has no client secret to rotate: it signs in with PKCE alone.")
    secret = generate_client_secret()
    application.client_secret, application.hash_client_secret = secret, True
    application.secret_rotated_at = timezone.now()
    application.save(update_fields=["client_secret", "hash_client_secret", "secret_rotated_at", "updated"])
    logger.info("client secret of application %s (%s, tenant %s) rotated by %s", application.client_id,
                application.name, application.tenant_id, actor)
    return secret


@transaction.atomic
def application_access_set(*, application: Application, require_mfa: bool | None = None,
                           phishing_resistant_required: bool | None = None,
                           assignment_required: bool | None = None, assign_groups: Iterable[str] = (),
                           unassign_groups: Iterable[str] = ()) -> Application:
    """Change who may use an application and how (what is not given stays as it is): ``require_mfa``, a second
    factor for it whatever the tenant's MFA policy; ``assignment_required``; ``assign_groups`` (which also turns
    assignment on) and ``unassign_groups``: group names (sAMAccountName, compared case-insensitively). A name the
    application's tenant has a group of (seen at a sign-in) assigns that group; another waits as a pending name
    until a sign-in reports it (application_pending_groups_resolve). Only the application's tenant's groups."""
    assign_groups = [name.strip() for name in assign_groups if name.strip()]
    unassign_groups = [name.strip() for name in unassign_groups if name.strip()]
    for name in [*assign_groups, *unassign_groups]:
        if len(name) > 256:
            raise ValidationError(f"A group name has at most 256 characters: {name[:40]!r}….")
    changes: dict[str, object] = {}
    if require_mfa is not None:
        changes["require_mfa"] = require_mfa
    if phishing_resistant_required is not None:  # a passkey for its sign-ins (signin/services/passkeys.py)
        changes["phishing_resistant_required"] = phishing_resistant_required
    if assign_groups and assignment_required is None:
        assignment_required = True
    if assignment_required is not None:
        changes["assignment_required"] = assignment_required
    for name, value in changes.items():
        setattr(application, name, value)
    if changes:
        application.save(update_fields=[*changes, "updated"])
    for name in unassign_groups:
        application.assigned_groups.remove(*_tenant_groups_named(tenant_id=application.tenant_id, name=name))
        PendingGroupAssignment.objects.filter(application=application, name__iexact=name).delete()
    for name in assign_groups:
        groups = _tenant_groups_named(tenant_id=application.tenant_id, name=name)
        if groups:
            application.assigned_groups.add(*groups)
        elif not PendingGroupAssignment.objects.filter(application=application, name__iexact=name).exists():
            PendingGroupAssignment.objects.create(application=application, name=name)
    return application


def _tenant_groups_named(*, tenant_id, name: str) -> list[DirectoryGroup]:
    # sAMAccountName is unique in a domain and compared case-insensitively by AD; a tenant with several domains
    # (or a group renamed since) may hold more than one of a name: all of them.
    return list(DirectoryGroup.objects.filter(tenant_id=tenant_id, name__iexact=name))


def application_pending_groups_resolve(*, user: User) -> int:
    """After a sign-in stored the user's groups: each pending group name (of an application of the user's tenant)
    that names one of them becomes that group's assignment. One query when nothing is pending. Returns how many."""
    if user.tenant_id is None:
        return 0
    pending = list(PendingGroupAssignment.objects.filter(application__tenant_id=user.tenant_id)
                   .select_related("application"))
    if not pending:
        return 0
    groups: dict[str, list[DirectoryGroup]] = {}
    for group in DirectoryGroup.objects.filter(tenant_id=user.tenant_id, memberships__user=user):
        groups.setdefault(group.name.lower(), []).append(group)
    resolved = 0
    for entry in pending:
        found = groups.get(entry.name.lower())
        if not found:
            continue
        with transaction.atomic():
            entry.application.assigned_groups.add(*found)
            entry.delete()
        logger.info("group %s pending for application %s resolved to %s at a sign-in", entry.name,
                    entry.application.client_id, ", ".join(g.object_guid for g in found))
        resolved += 1
    return resolved


def application_pending_groups_settle(*, application: Application) -> None:
    """Pending names of the application that name a group its tenant knows already become that group's assignment
    (the admin console, after an administrator typed names)."""
    for entry in list(application.pending_groups.all()):
        groups = _tenant_groups_named(tenant_id=application.tenant_id, name=entry.name)
        if groups:
            application.assigned_groups.add(*groups)
            entry.delete()


def application_users_check(*, application: Application, users: Iterable[User]) -> None:
    """Directly assigned users must be the application's tenant's (the admin form's choices are; this holds for
    every way in)."""
    strangers = [user.upn for user in users if user.tenant_id != application.tenant_id]
    if strangers:
        raise ValidationError(f"Only users of the application's organisation can be assigned: {', '.join(strangers)}.")


def application_groups_check(*, application: Application, groups: Iterable[DirectoryGroup]) -> None:
    strangers = [group.name for group in groups if group.tenant_id != application.tenant_id]
    if strangers:
        raise ValidationError(f"Only groups of the application's organisation can be assigned: "
                              f"{', '.join(strangers)}.")
