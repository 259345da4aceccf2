from channels.db import database_sync_to_async
from django.db import IntegrityError, transaction

from tenant.models import Tenant, User


def _user_sync(*, tenant: Tenant, upn: str, directory: dict) -> User:
    """Just in time: create or update the portal's user from what the agent read from AD as that user."""
    upn = upn.strip().lower()
    try:
        with transaction.atomic():
            return _user_upsert(tenant=tenant, upn=upn, directory=directory)
    except IntegrityError:  # the same user signed in twice at once: the other request created it
        return User.objects.get(upn=upn)


def _user_upsert(*, tenant: Tenant, upn: str, directory: dict) -> User:
    immutable_id = str(directory.get("object_guid") or "")[:64]
    fields = {"display_name": str(directory.get("display_name") or "")[:256],
              "email": str(directory.get("mail") or "")[:254]}
    user = None
    if immutable_id:
        user = User.objects.select_for_update().filter(tenant=tenant, immutable_id=immutable_id).first()
    user = user or User.objects.select_for_update().filter(upn=upn).first()
    if user is None:
        user = User(tenant=tenant, upn=upn, source=User.Source.ON_PREMISES)
        user.set_unusable_password()
    elif user.tenant_id != tenant.pk:
        raise PermissionError("That UPN belongs to another tenant.")
    changed = {k: v for k, v in {"upn": upn, "immutable_id": immutable_id or user.immutable_id, **fields}.items()
               if getattr(user, k) != v}
    for name, value in changed.items():
        setattr(user, name, value)
    if user._state.adding or changed:
        user.full_clean(exclude=["password", "email"])
        user.save()
    return user


user_sync = database_sync_to_async(_user_sync)
