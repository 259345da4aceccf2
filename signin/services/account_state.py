"""Whether a token may still be refreshed: the account is active here and, where the tenant asks it, still
enabled in AD right now (an agent reads it with its service account: no password, one search on a pooled
connection).

Fails closed: when the tenant asks and no agent can answer, the refresh is refused (the user signs in again).
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync

from agents.services.dispatch import account_state_check
from signin.outcomes import Outcome
from signin.services.users import DEPARTED, DIRECTORY_STATES, user_directory_state_record, user_groups_sync
from tenant.models import User

logger = logging.getLogger(__name__)


def account_still_enabled(*, user: User) -> bool:
    tenant = user.tenant
    if tenant is None or not tenant.refresh_checks_directory or user.source != User.Source.ON_PREMISES:
        return True
    validation = async_to_sync(account_state_check)(tenant_id=str(tenant.pk), domain=user.upn.rpartition("@")[2],
                                                    username=user.upn)
    found = str(validation.user.get("object_guid") or "")
    outcome = Outcome(validation.outcome)
    if outcome is Outcome.SUCCESS and (not user.immutable_id or found == user.immutable_id):
        # The refreshed tokens carry the groups AD gives now.
        user_groups_sync(user=user, groups=validation.groups, truncated=validation.groups_truncated,
                         asked=validation.groups_asked)
        return True
    if outcome.value in DIRECTORY_STATES:
        user_directory_state_record(user=user, state=outcome.value)
    elif outcome in (Outcome.SUCCESS, Outcome.INVALID_CREDENTIALS):
        # Gone from AD, or its UPN names another person now: this user's tokens end here.
        User.objects.filter(pk=user.pk).update(is_active=False, directory_state=DEPARTED)
    else:
        logger.warning("refresh for user %s refused: the directory could not be asked (%s)", user.pk,
                       outcome.value)
    return False
