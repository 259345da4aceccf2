"""One mixin scopes every admin class to the signed-in administrator's tenant."""

from django.contrib import admin
from django.http import Http404


def mask(secret: str, shown: int = 4) -> str:
    """The last characters only, so a secret never reaches a page, a URL or a log whole."""
    return f"…{secret[-shown:]}" if secret else ""


def _without_tenant(fields) -> list:
    """A field list without "tenant", also inside the tuples that put fields on one line."""
    kept = []
    for entry in fields:
        if isinstance(entry, (list, tuple)):
            entry = type(entry)(name for name in entry if name != "tenant")
            if entry:
                kept.append(entry)
        elif entry != "tenant":
            kept.append(entry)
    return kept


class ReadOnlyAdmin:
    """For what the portal writes itself (sign-in records, incidents and their deliveries): listed and read, never
    added, edited or deleted by hand. Put it before the admin class among the bases."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class TenantScopedAdmin(admin.ModelAdmin):
    """Platform superusers see everything; a tenant administrator sees and edits only their tenant.

    ``tenant_path`` is the lookup from the model to its tenant ("tenant", or "pk" for Tenant itself).
    Lists, object URLs, lookups and autocomplete all go through get_queryset, so one filter covers them.
    """

    tenant_path = "tenant"

    @staticmethod
    def is_platform_admin(request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if self.is_platform_admin(request):
            return queryset
        if request.user.tenant_id is None:
            return queryset.none()
        return queryset.filter(**{self.tenant_path: request.user.tenant_id})

    def get_list_filter(self, request):
        filters = super().get_list_filter(request)
        if self.is_platform_admin(request):
            return filters
        # A filter over a relation lists every related row: only related rows of this tenant's objects.
        scoped = []
        for entry in filters:
            name = entry[0] if isinstance(entry, tuple) else entry
            if name == "tenant":
                continue
            field = self.model._meta.get_field(name) if isinstance(entry, str) else None
            scoped.append((name, admin.RelatedOnlyFieldListFilter) if field and field.is_relation else entry)
        return scoped

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        # Another tenant's object is indistinguishable from a missing one: 404, not a helpful redirect.
        raise Http404

    def get_exclude(self, request, obj=None):
        excluded = list(super().get_exclude(request, obj) or [])
        if not self.is_platform_admin(request) and self.tenant_path == "tenant":
            excluded.append("tenant")
        return excluded

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return _without_tenant(fields) if self._tenant_left_out(request, obj) else fields

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if not self._tenant_left_out(request, obj):
            return fieldsets
        kept = [(name, {**opts, "fields": _without_tenant(opts["fields"])}) for name, opts in fieldsets]
        return [(name, opts) for name, opts in kept if opts["fields"]]

    def _tenant_left_out(self, request, obj) -> bool:
        """Whether a declared "tenant" must leave the page: the form excludes it (get_exclude), and a field the
        form lacks is a KeyError. A read-only tenant (a field or a view-only page) is shown from the object."""
        if self.is_platform_admin(request) or self.tenant_path != "tenant":
            return False
        if "tenant" in self.get_readonly_fields(request, obj):
            return False
        return self.has_add_permission(request) if obj is None else self.has_change_permission(request, obj)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)  # UserAdmin takes `change` by name only
        if self.is_platform_admin(request) or self.tenant_path != "tenant":
            return form
        tenant_id = request.user.tenant_id

        # A subclass of the form class Django built for this page (mypy takes no variable as a base class).
        class TenantBoundForm(form):  # type: ignore[valid-type,misc]
            def __init__(self, *args, **kw):
                super().__init__(*args, **kw)
                # Set before validation, so model clean() sees the tenant it will be saved with.
                self.instance.tenant_id = tenant_id

        return TenantBoundForm

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        self._scope_choices(db_field, request, kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        self._scope_choices(db_field, request, kwargs)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def _scope_choices(self, db_field, request, kwargs):
        if self.is_platform_admin(request):
            return
        related = db_field.related_model
        tenant_id = request.user.tenant_id
        if related._meta.model_name == "tenant":
            kwargs["queryset"] = related.objects.filter(pk=tenant_id)
        elif any(f.name == "tenant" for f in related._meta.get_fields()):
            kwargs["queryset"] = related._default_manager.filter(tenant_id=tenant_id)
