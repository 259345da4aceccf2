from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from health.models import AlertSettings, Incident, Notification
from health.readable import incident_details_html, time_text
from health.services.alert_recipients import alert_emails_confirmed
from health.services.alert_settings import alert_settings_set
from tenant.admin_scoping import ReadOnlyAdmin, TenantScopedAdmin


class AlertSettingsForm(forms.ModelForm):
    webhook_url = forms.URLField(label="Webhook URL", required=False, max_length=500, assume_scheme="https",
                                 help_text=AlertSettings._meta.get_field("webhook_url").help_text)
    webhook_secret = forms.CharField(
        label="New webhook secret", required=False, strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Signs every webhook request (HMAC-SHA256). Never shown again: leave empty to keep the current "
                  "one, type a new one to replace it.")

    class Meta:
        model = AlertSettings
        fields = ["tenant", "emails", "webhook_url", "active_agents_threshold"]

    def changes(self) -> dict:
        """The form as the service's arguments."""
        data = self.cleaned_data
        return {"emails": (data.get("emails") or "").splitlines(), "webhook_url": data.get("webhook_url") or "",
                "webhook_secret": data.get("webhook_secret") or None,
                "active_agents_threshold": data.get("active_agents_threshold")}

    def clean(self):
        data = super().clean() or {}
        tenant = data.get("tenant") or getattr(self.instance, "tenant", None)
        if tenant is not None and not self.errors:
            try:
                alert_settings_set(tenant=tenant, commit=False, **self.changes())
            except ValidationError as exc:
                self.add_error(None, exc)
        return data


@admin.register(AlertSettings)
class AlertSettingsAdmin(TenantScopedAdmin):
    form = AlertSettingsForm
    list_display = ["tenant", "recipients", "webhook_url", "webhook_secret_status", "active_agents_threshold",
                    "updated_at"]
    fields = ["tenant", "emails", "recipients", "webhook_url", "webhook_secret_status", "webhook_secret",
              "active_agents_threshold", "updated_at"]
    readonly_fields = ["recipients", "webhook_secret_status", "updated_at"]

    # Kept out of error reports: the POST's field, and every local below this view, where the secret is in clear
    # under many names (Django's form cleaning, the form's clean(), the service, the cipher).
    @method_decorator(sensitive_post_parameters("webhook_secret"))
    @method_decorator(sensitive_variables())
    def changeform_view(self, request, *args, **kwargs):
        return super().changeform_view(request, *args, **kwargs)

    @admin.display(description="e-mail")
    def recipients(self, obj: AlertSettings) -> str:
        if not obj.pk:
            return ""
        confirmed = alert_emails_confirmed(tenant_id=obj.tenant_id, addresses=obj.email_list)
        return ", ".join(f"{a} ({'confirmed' if a in confirmed else 'awaiting confirmation'})" for a in obj.email_list)

    @admin.display(description="webhook secret")
    def webhook_secret_status(self, obj: AlertSettings) -> str:
        return "set (never shown)" if obj.webhook_secret_set else "not set"

    def save_model(self, request, obj, form, change):
        saved = alert_settings_set(tenant=obj.tenant, **form.changes())
        for field in saved._meta.concrete_fields:  # the admin logs and redirects with the object it passed in
            setattr(obj, field.attname, getattr(saved, field.attname))


NOTIFICATION_FIELDS = ("event", "channel", "state", "attempts", "sent", "failed", "last_error")
INCIDENT_FIELDS = ("summary", "tenant", "kind", "subject", "state", "opened", "resolved", "details_readable")


class NotificationInline(ReadOnlyAdmin, admin.TabularInline):
    model = Notification
    fields = readonly_fields = NOTIFICATION_FIELDS
    extra = 0
    can_delete = False

    @admin.display(description="sent at")
    def sent(self, obj: Notification) -> str:
        return time_text(obj.sent_at)

    @admin.display(description="failed at")
    def failed(self, obj: Notification) -> str:
        return time_text(obj.failed_at)


class OpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "Open"), ("resolved", "Resolved")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(resolved_at=None)
        if self.value() == "resolved":
            return queryset.exclude(resolved_at=None)
        return queryset


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin, TenantScopedAdmin):
    """Open and past incidents, read-only: the evaluation opens and resolves them."""

    list_display = ["summary", "tenant", "kind", "state", "opened", "resolved"]
    list_filter = [OpenFilter, "kind", "tenant"]
    search_fields = ["summary"]
    date_hierarchy = "opened_at"
    fields = readonly_fields = INCIDENT_FIELDS
    inlines = [NotificationInline]

    @admin.display(description="state")
    def state(self, obj: Incident) -> str:
        return "open" if obj.is_open else "resolved"

    # Times to the second with their zone (2026-12-07 03:41:35 UTC), not the admin's "Dec. 7, 2026, 3:41 a.m.".
    @admin.display(description="opened at", ordering="opened_at")
    def opened(self, obj: Incident) -> str:
        return time_text(obj.opened_at)

    @admin.display(description="resolved at", ordering="resolved_at")
    def resolved(self, obj: Incident) -> str:
        return time_text(obj.resolved_at) if obj.resolved_at else "open"

    @admin.display(description="details")
    def details_readable(self, obj: Incident):
        return incident_details_html(obj)
