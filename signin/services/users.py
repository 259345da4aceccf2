"""The portal's user for a directory answer. A directory user is tenant + objectGUID; the portal decides who signs
in, and the agent's report (UPN, objectGUID, attributes) is believed only within the domains that agent serves:

- never for a cloud-only account, nor for a user of another tenant;
- a GUID never moves a user to another domain, nor renames another user;
- a UPN whose GUID changed is a new person: the old user is kept, inactive, with its UPN freed (never rebound).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection

from django.db import IntegrityError, transaction

from applications.services import application_pending_groups_resolve
from tenant.models import GroupsState, Tenant, User
from tenant.services import user_groups_record

logger = logging.getLogger(__name__)


# Outcomes of a bind that say the directory does not let the account sign in now.
DIRECTORY_STATES = ("account_disabled", "account_expired", "account_locked")
DEPARTED = "departed"


class IdentityRejected(Exception):
    """The directory's answer names an identity the portal will not sign in (outcome identity_conflict)."""


def _directory_fields(directory: dict, served_domains: Collection[str]) -> dict:
    """The user's attributes that AD returned (one it did not return does not erase what the portal knows). The
    mail is vouched for (email_verified) only in a domain the answering agent serves: AD's ``mail`` is free text,
    and one forest's administrators could otherwise hand their user a verified address in another forest's domain
    of the same tenant."""
    fields: dict[str, str] = {}
    if display_name := str(directory.get("display_name") or "")[:256]:
        fields["display_name"] = display_name
    if mail := str(directory.get("mail") or "")[:254]:
        fields["email"] = mail
        fields["directory_verified_email"] = mail if _domain(mail.strip().lower()) in served_domains else ""
    return fields


def _domain(upn: str) -> str:
    return upn.rpartition("@")[2]


def directory_upn(*, typed_upn: str, directory: dict, served_domains: Collection[str]) -> str:
    """The UPN the sign-in ends with: AD's own (Alternate ID sign-ins), accepted only in a domain the answering
    agent serves (and so one its tenant verified)."""
    upn = str(directory.get("upn") or "").strip().lower() or typed_upn
    if _domain(upn) not in served_domains:
        raise IdentityRejected(f"the agent answered for {upn!r}, outside the domains it serves")
    return upn


def user_sync(*, tenant: Tenant, upn: str, directory: dict, known: User | None = None,
              served_domains: Collection[str] = ()) -> User:
    """Just in time: create or update the portal's user from what the agent read from AD as that user.
    ``known`` is the user the caller already read by this UPN, if any: a returning user whose directory
    attributes did not change then costs no query at all. ``served_domains`` are the answering agent's (its mail
    is vouched for only in one of them). Raises IdentityRejected."""
    upn = upn.strip().lower()
    guid = str(directory.get("object_guid") or "")[:64]
    wanted = _directory_fields(directory, served_domains)
    if known is not None and known.upn == upn and known.tenant_id == tenant.pk and guid \
            and known.immutable_id == guid and known.source == User.Source.ON_PREMISES and not known.directory_state \
            and all(getattr(known, k) == v for k, v in wanted.items()):
        return known
    try:
        with transaction.atomic():
            return _user_upsert(tenant=tenant, upn=upn, guid=guid, wanted=wanted)
    except IntegrityError:  # the same person signed in twice at once: the other request created them
        user = User.objects.filter(upn=upn, tenant=tenant, immutable_id=guid).first()
        if user is None:
            raise IdentityRejected(f"{upn!r} changed while it was being signed in") from None
        return user


def _user_upsert(*, tenant: Tenant, upn: str, guid: str, wanted: dict) -> User:
    by_upn = User.objects.select_for_update().filter(upn=upn).first()
    if by_upn is not None:
        if by_upn.tenant_id != tenant.pk:
            raise IdentityRejected(f"{upn!r} belongs to another tenant")
        if by_upn.source != User.Source.ON_PREMISES:
            raise IdentityRejected(f"{upn!r} is a cloud-only account")
        if by_upn.immutable_id and guid and by_upn.immutable_id != guid:
            _user_retire(by_upn)  # a new person has the UPN of one who left: never hand them the old account
            by_upn = None
    by_guid = (User.objects.select_for_update().filter(tenant=tenant, immutable_id=guid).first()
               if guid else None)
    if by_upn is not None and by_guid is not None and by_upn.pk != by_guid.pk:
        raise IdentityRejected(f"{upn!r} is another user than the one AD names by that objectGUID")
    user = by_upn or by_guid
    if user is None:
        user = User(tenant=tenant, upn=upn, source=User.Source.ON_PREMISES)
        user.set_unusable_password()
    elif user.upn != upn:  # renamed in AD: the same person, within the same domain only
        if _domain(user.upn) != _domain(upn):
            raise IdentityRejected(f"AD moved {user.upn!r} to another domain ({upn!r})")
        if user.source != User.Source.ON_PREMISES:
            raise IdentityRejected(f"{user.upn!r} is a cloud-only account")
    changed: dict[str, object] = {"upn": upn} if user.upn != upn else {}
    if guid and user.immutable_id != guid:
        changed["immutable_id"] = guid
    if user.directory_state in DIRECTORY_STATES:  # the directory deactivated them, and now signs them in
        changed |= {"is_active": True, "directory_state": ""}
    changed |= {k: v for k, v in wanted.items() if getattr(user, k) != v}
    for name, value in changed.items():
        setattr(user, name, value)
    if user._state.adding or changed:
        # Uniqueness is left to the database (IntegrityError, user_sync): checked by a query here, it was a race
        # between two first sign-ins of one person, the later one answered 500 (seen in bench/run --soak).
        user.full_clean(exclude=["password", "email", "directory_verified_email"], validate_unique=False,
                        validate_constraints=False)
        user.save()
    return user


def _user_retire(user: User) -> None:
    """Keep the departed person's user (records, tokens, factors stay theirs), inactive, with its UPN freed."""
    local, _, domain = user.upn.partition("@")
    freed = f"{local[:200]}+departed-{uuid.uuid4().hex[:12]}@{domain}"
    logger.warning("user %s: AD now names another person by this UPN; the old user is kept inactive as %s",
                   user.pk, freed)
    User.objects.filter(pk=user.pk).update(upn=freed, is_active=False, directory_state=DEPARTED)


def user_directory_state_record(*, user: User, state: str) -> None:
    """AD answered that the account is disabled, expired or locked: the user is inactive from now on (their
    sessions end, their tokens stop working) until the directory signs them in again."""
    if state not in DIRECTORY_STATES:
        raise ValueError(f"not a directory state: {state}")
    if user.is_active or user.directory_state:
        User.objects.filter(pk=user.pk, directory_state__in=["", *DIRECTORY_STATES]).update(
            is_active=False, directory_state=state)


def user_groups_sync(*, user: User, groups: list[dict] | None, truncated: bool, asked: bool) -> None:
    """The user's groups from a signed-in answer (a sign-in, a password change, an account-state refresh): what the
    agent reported replaces what was stored; an agent that was not asked (it does not read groups) or did not
    answer them leaves none stored, and the state says why (the admin console shows it)."""
    if not asked:
        state = GroupsState.AGENT_UNSUPPORTED
    elif groups is None:
        state = GroupsState.FAILED
    else:
        state = GroupsState.TRUNCATED if truncated else GroupsState.CURRENT
    user_groups_record(user=user, state=state, groups=groups or ())
    if groups:  # a group assigned by name before any sign-in reported it becomes that group's assignment
        application_pending_groups_resolve(user=user)
