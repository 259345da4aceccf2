"""The receivers that turn administrative changes into audit events.

Connected in trail/apps.py to the models an administrator changes (``AUDITED``). Every write goes through the
model (``save()``, ``delete()``, a queryset's ``delete()``, a many-to-many ``add``/``remove``/``set``), whichever
way it came: a console form, a console action or page of its own (verify a domain, rotate a secret, revoke an
agent, reset MFA), a service called by a management command. A receiver records only while an actor is set
(trail/context.py), in the change's own transaction: the change and its event commit together, or neither does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save

from trail.context import actor_current
from trail.redaction import SECRET_TEXT, changes_between


@dataclass(frozen=True)
class Audited:
    label: str  # the object type as the trail names it
    tenant_of: Callable[[Any], Any]


def _own_tenant(obj) -> Any:
    return obj.tenant_id


def _user_tenant(obj) -> Any:
    return type(obj).user.field.related_model.objects.filter(pk=obj.user_id).values_list(
        "tenant_id", flat=True).first()


def _application_tenant(obj) -> Any:
    return type(obj).application.field.related_model.objects.filter(pk=obj.application_id).values_list(
        "tenant_id", flat=True).first()


AUDITED: dict[str, Audited] = {
    "tenant.tenant": Audited("tenant", lambda obj: obj.pk),
    "tenant.domain": Audited("domain", _own_tenant),
    "tenant.location": Audited("location", _own_tenant),
    "tenant.user": Audited("user", _own_tenant),
    "agents.agent": Audited("agent", _own_tenant),
    "agents.registrationtoken": Audited("registration_token", _own_tenant),
    "applications.application": Audited("application", _own_tenant),
    "applications.pendinggroupassignment": Audited("application_pending_group", _application_tenant),
    "health.alertsettings": Audited("alert_settings", _own_tenant),
    "branding.branding": Audited("branding", _own_tenant),
    "otp_totp.totpdevice": Audited("mfa_authenticator", _user_tenant),
    "otp_static.staticdevice": Audited("mfa_recovery_codes", _user_tenant),
    "signin.passkeydevice": Audited("mfa_passkey", _user_tenant),
    "samlidp.serviceprovider": Audited("saml_service_provider", _application_tenant),
    "samlidp.signingkey": Audited("saml_signing_key", _own_tenant),
}

# Bookkeeping the portal moves by itself, not an administrator's change: left out of "what changed".
UNRECORDED = frozenset({"last_login", "last_seen", "last_check_at", "last_check_result", "last_used_at",
                        "throttling_failure_timestamp", "throttling_failure_count", "drift", "last_t"})

# A change that means more than "changed": (object type, field, test of before and after) → the action's verb.
NAMED_CHANGES: list[tuple[str, str, Callable[[Any, Any], bool], str]] = [
    ("domain", "verified", lambda old, new: not old and new, "verified"),
    ("domain", "verified", lambda old, new: old and not new, "unverified"),
    ("agent", "revoked_at", lambda old, new: old is None and new is not None, "revoked"),
    ("application", "client_secret", lambda old, new: bool(old) and old != new, "secret_rotated"),
    ("user", "password", lambda old, new: old != new, "password_set"),
]
CREATED_VERBS = {"registration_token": "issued"}
DELETED_VERBS = {"mfa_authenticator": "removed", "mfa_recovery_codes": "removed", "mfa_passkey": "removed"}


def audited_of(model) -> Audited | None:
    return AUDITED.get(model._meta.label_lower)


def snapshot(obj: models.Model) -> dict[str, Any]:
    """The object's own fields as stored (foreign keys by their ID), bookkeeping left out."""
    return {field.attname: field.value_from_object(obj) for field in obj._meta.concrete_fields
            if field.attname not in UNRECORDED and not getattr(field, "auto_now", False)}


def _stored(obj: models.Model) -> dict[str, Any] | None:
    names = [f.attname for f in obj._meta.concrete_fields
             if f.attname not in UNRECORDED and not getattr(f, "auto_now", False)]
    return type(obj)._base_manager.using(obj._state.db or "default").filter(pk=obj.pk).values(*names).first()


def _repr(obj: models.Model) -> str:
    text = str(obj)[:300]
    return "[redacted]" if SECRET_TEXT.search(text) else text


def _record(*, audited: Audited, obj: models.Model, verb: str, changes: dict, tenant_id: Any = None,
            using: str = "default") -> None:
    from trail.services import audit_event_record

    actor = actor_current()
    if actor is None:
        return
    audit_event_record(actor=actor, tenant_id=tenant_id, object_type=audited.label, object_id=str(obj.pk),
                       object_repr=_repr(obj), action=f"{audited.label}.{verb}", changes=changes, using=using)


def on_pre_save(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    if raw or actor_current() is None or instance._state.adding or instance.pk is None:
        return
    instance._trail_before = _stored(instance)


def on_post_save(sender, instance, created, raw=False, update_fields=None, using="default", **kwargs) -> None:
    if raw or actor_current() is None or (audited := audited_of(sender)) is None:
        return
    after = snapshot(instance)
    before = {} if created else (getattr(instance, "_trail_before", None) or {})
    instance._trail_before = None
    if update_fields is not None and not created:
        fields = {instance._meta.get_field(name).attname for name in update_fields}
        after = {k: v for k, v in after.items() if k in fields}
        before = {k: v for k, v in before.items() if k in fields}
    if created:
        after = {k: v for k, v in after.items() if v not in (None, "", b"")}
    changes = changes_between(before, after)
    if not created and not changes:
        return  # saved as it was: nothing to record
    verb = CREATED_VERBS.get(audited.label, "created") if created else _changed_verb(audited.label, before, after)
    _record(audited=audited, obj=instance, verb=verb, changes=changes, tenant_id=audited.tenant_of(instance),
            using=using)


def _changed_verb(label: str, before: dict, after: dict) -> str:
    for kind, field, test, verb in NAMED_CHANGES:
        if kind == label and field in after and before.get(field) != after.get(field) and \
                test(before.get(field), after.get(field)):
            return verb
    return "changed"


def on_pre_delete(sender, instance, using="default", **kwargs) -> None:
    if actor_current() is None or (audited := audited_of(sender)) is None:
        return
    # Read before the rows go (a cascade may take the object's owner with it).
    instance._trail_deleted = (snapshot(instance), audited.tenant_of(instance))


def on_post_delete(sender, instance, using="default", **kwargs) -> None:
    if actor_current() is None or (audited := audited_of(sender)) is None:
        return
    before, tenant_id = getattr(instance, "_trail_deleted", None) or (snapshot(instance), None)
    before = {k: v for k, v in before.items() if v not in (None, "", b"")}
    _record(audited=audited, obj=instance, verb=DELETED_VERBS.get(audited.label, "deleted"),
            changes=changes_between(before, {}), tenant_id=tenant_id, using=using)


def on_m2m_changed(sender, instance, action, reverse, model, pk_set, using="default", **kwargs) -> None:
    """An object's many-to-many field (an agent's domains, an application's assigned groups and users, a user's
    permissions) as names, before and after."""
    if actor_current() is None or reverse or (audited := audited_of(type(instance))) is None:
        return
    field = next((f for f in type(instance)._meta.many_to_many if f.remote_field.through is sender), None)
    if field is None:
        return
    if action.startswith("pre_"):
        if not hasattr(instance, "_trail_m2m_before"):
            instance._trail_m2m_before = {}
        instance._trail_m2m_before[field.name] = _related_names(instance, field)
        return
    before = getattr(instance, "_trail_m2m_before", {}).pop(field.name, None)
    after = _related_names(instance, field)
    if before is None or before == after:
        return
    _record(audited=audited, obj=instance, verb="changed",
            changes=changes_between({field.name: before}, {field.name: after}), tenant_id=audited.tenant_of(instance),
            using=using)


def _related_names(instance, field) -> list[str]:
    return sorted(str(related) for related in getattr(instance, field.name).all())


def receivers_connect() -> None:
    from django.apps import apps

    for label in AUDITED:
        app_label, model_name = label.split(".")
        try:
            model = apps.get_model(app_label, model_name)
        except LookupError:  # an optional app not installed
            continue
        uid = f"trail-{label}"
        pre_save.connect(on_pre_save, sender=model, dispatch_uid=f"{uid}-pre-save")
        post_save.connect(on_post_save, sender=model, dispatch_uid=f"{uid}-post-save")
        pre_delete.connect(on_pre_delete, sender=model, dispatch_uid=f"{uid}-pre-delete")
        post_delete.connect(on_post_delete, sender=model, dispatch_uid=f"{uid}-post-delete")
        for field in model._meta.many_to_many:
            m2m_changed.connect(on_m2m_changed, sender=field.remote_field.through, dispatch_uid=f"{uid}-{field.name}")


