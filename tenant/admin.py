from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from tenant.admin_scoping import TenantScopedAdmin
from tenant.models import Domain, Tenant, User


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    tenant_path = "pk"
    list_display = ["name", "slug", "pass_through_enabled", "mfa_policy", "password_grant_enabled",
                    "lockout_threshold"]
    search_fields = ["name", "slug"]
    inlines = [DomainInline]

    def get_readonly_fields(self, request, obj=None):
        return [] if self.is_platform_admin(request) else ["slug"]


@admin.register(Domain)
class DomainAdmin(TenantScopedAdmin):
    list_display = ["name", "tenant", "verified"]
    list_filter = ["verified"]
    search_fields = ["name"]

    def get_readonly_fields(self, request, obj=None):
        # Verifying a domain is a platform decision: it routes sign-ins.
        return [] if self.is_platform_admin(request) else ["verified"]


class UserCreateForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ["upn"]


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(TenantScopedAdmin, DjangoUserAdmin):
    form = UserEditForm
    add_form = UserCreateForm
    ordering = ["upn"]
    list_display = ["upn", "display_name", "tenant", "source", "is_staff", "is_active", "date_joined"]
    list_filter = ["source", "is_staff", "is_active", "mfa_enforced"]
    search_fields = ["upn", "display_name", "email"]
    readonly_fields = ["immutable_id", "date_joined"]
    fieldsets = [
        (None, {"fields": ["upn", "tenant", "source", "immutable_id", "password"]}),
        ("Profile", {"fields": ["display_name", "email"]}),
        ("Access", {"fields": ["is_active", "is_staff", "mfa_enforced"]}),
        ("Platform", {"fields": ["is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["date_joined"]}),
    ]
    add_fieldsets = [(None, {"fields": ["upn", "tenant", "source", "display_name",
                                        "usable_password", "password1", "password2"]})]

    actions = ["reset_mfa"]

    @admin.action(description="Reset MFA (the user sets up an authenticator again at next sign-in)",
                  permissions=["change"])
    def reset_mfa(self, request, queryset):
        from signin.services.mfa import mfa_reset

        users = list(queryset)  # already scoped to the administrator's tenant
        for user in users:
            mfa_reset(user=user)
        self.message_user(request, f"MFA reset for {len(users)} user(s).", messages.SUCCESS)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if self.is_platform_admin(request):
            return fieldsets
        # A tenant administrator cannot grant platform rights nor move a user to another tenant.
        hidden = {"is_superuser", "groups", "user_permissions", "tenant"}
        return [(name, {**opts, "fields": [f for f in opts["fields"] if f not in hidden]})
                for name, opts in fieldsets if [f for f in opts["fields"] if f not in hidden]]
