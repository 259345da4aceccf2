import logging

import django_otp.plugins.otp_static.admin
import django_otp.plugins.otp_totp.admin  # noqa: F401 (registers django-otp's admin classes, replaced below)
from django.contrib import admin
from django.db.models import Count
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from signin.models import PasskeyDevice, SignInEvent
from tenant.admin_scoping import ReadOnlyAdmin, TenantScopedAdmin

logger = logging.getLogger(__name__)


@admin.register(SignInEvent)
class SignInEventAdmin(ReadOnlyAdmin, TenantScopedAdmin):
    list_display = ["created_at", "username", "outcome", "ad_subcode", "agent", "ip_address", "location",
                    "application", "total_ms", "mfa_decision", "mfa_reason", "mfa_result", "mfa_factor"]
    list_filter = ["outcome", "agent", "user", "channel", "password_change", "sealed_by", "mfa_decision",
                   "location_kind", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["username", "user__upn", "ip_address", "location"]
    date_hierarchy = "created_at"
    list_select_related = ["agent", "user", "application"]


# django-otp's own admin classes show and edit a factor's secret: the TOTP key (and its QR code page) and every
# unused recovery code. Imported above so that they are registered, then replaced, whatever the apps' order.
admin.site.unregister(TOTPDevice)
admin.site.unregister(StaticDevice)


FACTOR_FIELDS: tuple[str, ...] = ("user", "name", "confirmed", "created_at", "last_used_at")


class FactorAdmin(TenantScopedAdmin):
    """A user's second factor after enrolment: whose, which, when it was last used; removable (the user enrols
    again), never shown, added or edited here. No field of this page holds a secret."""

    tenant_path = "user__tenant"
    list_display = list(FACTOR_FIELDS)
    list_filter = ["confirmed"]
    search_fields = ["user__upn", "name"]
    list_select_related = ["user"]
    fields = readonly_fields = FACTOR_FIELDS

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    # A removal is in the console's own record (Django's admin log: the object's history and "Recent actions",
    # written by the delete view and the bulk action) and in the portal's log, with who removed what.
    def delete_model(self, request, obj) -> None:
        _removal_logged(request, [obj])
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        _removal_logged(request, list(queryset.select_related("user")))
        super().delete_queryset(request, queryset)


def _removal_logged(request, devices) -> None:
    for device in devices:
        logger.info("second factor removed by an administrator: %s %r of %s, by %s", device._meta.verbose_name,
                    device.name, device.user.upn, request.user.upn)


@admin.register(TOTPDevice)
class TOTPDeviceAdmin(FactorAdmin):
    pass


@admin.register(PasskeyDevice)
class PasskeyDeviceAdmin(FactorAdmin):
    """A user's passkeys: the public key and the credential's id are no secret, but of no use here either."""

    list_display = [*FACTOR_FIELDS, "backup_eligible"]
    fields = readonly_fields = (*FACTOR_FIELDS, "backup_eligible", "sign_count")


@admin.register(StaticDevice)
class RecoveryCodesAdmin(FactorAdmin):
    list_display = [*FACTOR_FIELDS, "codes_left"]
    fields = readonly_fields = (*FACTOR_FIELDS, "codes_left")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(unused_codes=Count("recovery_codes"))

    @admin.display(description="unused codes")
    def codes_left(self, obj: StaticDevice) -> int:
        return obj.unused_codes  # type: ignore[attr-defined]


def _plain_names() -> None:
    """The admin console names django-otp's models and apps in plain words ("Otp_Totp", "static devices" meant
    nothing to an administrator). Set on the models' options at run time: a migration's state reads Meta's own
    attributes (``original_attrs``), so this asks for no migration of the library."""
    from django.apps import apps

    for model, app_name, singular, plural in (
            (TOTPDevice, "MFA authenticator apps", "authenticator app", "authenticator apps"),
            (StaticDevice, "MFA recovery codes", "set of recovery codes", "recovery codes")):
        model._meta.verbose_name, model._meta.verbose_name_plural = singular, plural
        apps.get_app_config(model._meta.app_label).verbose_name = app_name


_plain_names()
