import uuid

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from health.readable import time_text
from tenant.admin_scoping import ReadOnlyAdmin, TenantScopedAdmin
from tenant.models import Tenant
from trail.models import AuditEvent

EVENT_FIELDS = ("time", "tenant_name", "actor", "actor_os_user", "through", "address", "detail", "action",
                "object_type", "object_id", "object_repr", "changes_readable")


class TenantFilter(admin.SimpleListFilter):
    """Platform administrators only (a tenant administrator's list is their tenant's already)."""

    title = "tenant"
    parameter_name = "tenant"

    def lookups(self, request, model_admin):
        return [(str(pk), name) for pk, name in Tenant.objects.order_by("name").values_list("pk", "name")] + [
            ("none", "(platform)")]

    def queryset(self, request, queryset):
        if self.value() == "none":
            return queryset.filter(tenant_id=None)
        if self.value():
            try:
                return queryset.filter(tenant_id=uuid.UUID(self.value()))
            except ValueError:  # not a UUID: nothing matches
                return queryset.none()
        return queryset


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin, TenantScopedAdmin):
    """The audit trail: read-only for everyone (no permission to change it exists); a tenant administrator sees
    their tenant's events, a platform administrator all."""

    tenant_path = "tenant_id"
    list_display = ["time", "actor", "through", "address", "action", "object_type", "object_repr", "tenant_name"]
    list_filter = ["action", "object_type", "through", ("created_at", admin.DateFieldListFilter), TenantFilter]
    search_fields = ["actor", "object_repr", "object_id", "action", "detail"]
    date_hierarchy = "created_at"
    fields = readonly_fields = EVENT_FIELDS
    actions = None  # no bulk action: there is nothing to do to an event

    def get_list_filter(self, request):
        filters = super().get_list_filter(request)
        return filters if self.is_platform_admin(request) else [f for f in filters if f is not TenantFilter]

    def get_list_display(self, request):
        shown = super().get_list_display(request)
        return shown if self.is_platform_admin(request) else [f for f in shown if f != "tenant_name"]

    @admin.display(description="time", ordering="created_at")
    def time(self, obj: AuditEvent) -> str:
        return time_text(obj.created_at)

    @admin.display(description="tenant")
    def tenant_name(self, obj: AuditEvent) -> str:
        if obj.tenant_id is None:
            return "(platform)"
        name = getattr(obj, "tenant_name_read", None)
        if name is None:  # the change page: one event
            name = Tenant.objects.filter(pk=obj.tenant_id).values_list("name", flat=True).first()
        return name or f"(deleted) {obj.tenant_id}"

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        # The page's tenants' names in one query (the event keeps the tenant's ID: it outlives the tenant).
        events = list(changelist.result_list)
        names = dict(Tenant.objects.filter(pk__in={e.tenant_id for e in events if e.tenant_id})
                     .values_list("pk", "name"))
        for event in events:
            event.tenant_name_read = names.get(event.tenant_id, "")
        return changelist

    @admin.display(description="what changed")
    def changes_readable(self, obj: AuditEvent):
        if not obj.changes:
            return "—"
        rows = ((field, _shown(change.get("before")), _shown(change.get("after")))
                for field, change in sorted(obj.changes.items()))
        return format_html('<table class="pta-audit-changes"><thead><tr><th>field</th><th>before</th>'
                           '<th>after</th></tr></thead><tbody>{}</tbody></table>',
                           format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows))


def _shown(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(none)"
    return str(value)
