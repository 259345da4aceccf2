from django.db import IntegrityError, transaction

from tenant.models import Tenant, User


def _directory_fields(directory: dict) -> dict:
    return {"immutable_id": str(directory.get("object_guid") or "")[:64],
            "display_name": str(directory.get("display_name") or "")[:256],
            "email": str(directory.get("mail") or "")[:254]}


def user_sync(*, tenant: Tenant, upn: str, directory: dict, known: User | None = None) -> User:
    """Just in time: create or update the portal's user from what the agent read from AD as that user.
    ``known`` is the user the caller already read by this UPN, if any: a returning user whose directory
    attributes did not change then costs no query at all."""
    upn = upn.strip().lower()
    wanted = {"upn": upn, **_directory_fields(directory)}
    if known is None or known.upn != upn:
        known = User.objects.filter(upn=upn, tenant=tenant).first()
    unchanged = known is not None and all(getattr(known, k) == v for k, v in wanted.items() if v or k == "upn")
    if unchanged and known.tenant_id == tenant.pk:
        return known
    try:
        with transaction.atomic():
            return _user_upsert(tenant=tenant, wanted=wanted)
    except IntegrityError:  # the same user signed in twice at once: the other request created it
        return User.objects.get(upn=upn)


def _user_upsert(*, tenant: Tenant, wanted: dict) -> User:
    user = None
    if wanted["immutable_id"]:
        user = User.objects.select_for_update().filter(tenant=tenant, immutable_id=wanted["immutable_id"]).first()
    user = user or User.objects.select_for_update().filter(upn=wanted["upn"]).first()
    if user is None:
        user = User(tenant=tenant, upn=wanted["upn"], source=User.Source.ON_PREMISES)
        user.set_unusable_password()
    elif user.tenant_id != tenant.pk:
        raise PermissionError("That UPN belongs to another tenant.")
    # An attribute AD did not return (empty) does not erase what the portal knows.
    changed = {k: v for k, v in wanted.items() if (v or k == "upn") and getattr(user, k) != v}
    for name, value in changed.items():
        setattr(user, name, value)
    if user._state.adding or changed:
        user.full_clean(exclude=["password", "email"])
        user.save()
    return user

