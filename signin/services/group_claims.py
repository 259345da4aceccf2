"""The `groups` claim of ID tokens and /userinfo/ (scope "groups"; docs/oidc.md, "Groups").

Per application: all the user's directory groups or only those of them assigned to it (applications.models,
assigned_groups), named by sAMAccountName or objectGUID, and at most ``groups_claim_limit`` of them. Beyond the
limit, or when the stored list is incomplete (the agent could not carry them all), the list is left out and
``groups_overage: true`` says so: a token must fit an HTTP header and a cookie, and a cut list would silently
drop groups a relying party may deny or grant on."""

from __future__ import annotations

from applications.models import Application
from tenant.models import GroupsState, User
from tenant.selectors import user_directory_groups

OVERAGE_CLAIM = "groups_overage"


def groups_claim_values(*, values: list[str], complete: bool, limit: int) -> dict[str, object]:
    """The claims for these group values: ``{"groups": [...]}``, ``{"groups_overage": True}`` when there are more
    than ``limit`` or the list is incomplete, or nothing for no groups (an empty claim is left out)."""
    if not complete or len(values) > limit:
        return {OVERAGE_CLAIM: True}
    return {"groups": values} if values else {}


def groups_claims(*, user: User, application: Application | None) -> dict[str, object]:
    """The user's group claims for this application. Groups not read (an agent that does not read them, or none
    since) give no claim, as no groups do."""
    if application is None or user.groups_state not in (GroupsState.CURRENT, GroupsState.TRUNCATED):
        return {}
    groups = user_directory_groups(user=user)
    if application.groups_claim == Application.GroupsClaim.ASSIGNED:
        assigned = set(application.assigned_groups.values_list("pk", flat=True))
        groups = [group for group in groups if group.pk in assigned]
    by_id = application.groups_claim_format == Application.GroupsFormat.ID
    values = sorted(group.object_guid if by_id else group.name for group in groups)
    return groups_claim_values(values=values, complete=user.groups_state == GroupsState.CURRENT,
                               limit=application.groups_claim_limit)
