from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime

from tenant.admin_scoping import TenantScopedAdmin
from tenant.models import Domain, Location, Tenant, User
from tenant.selectors import user_directory_groups
from tenant.services import VerificationStatus, domain_verify


class DomainInlineForm(forms.ModelForm):
    class Meta:
        model = Domain
        fields = ["name", "verified"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # A verification belongs to its name: a saved domain is never renamed.
            self.fields["name"].disabled = True


class DomainInline(admin.TabularInline):
    """Platform administrators add and verify domains here; a tenant administrator only sees them (adding
    goes through the Domain page, verifying through its DNS record)."""

    model = Domain
    form = DomainInlineForm
    extra = 0

    def has_add_permission(self, request, obj=None):
        return TenantScopedAdmin.is_platform_admin(request) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return TenantScopedAdmin.is_platform_admin(request) and super().has_change_permission(request, obj)


def _agents_serving(domain_ids: list[int]) -> list[str]:
    from agents.services.lifecycle import agents_serving

    return agents_serving(domain_ids=domain_ids)


def _agents_follow(*, domain_ids: list[int] | None = None, agent_ids: list[str] | None = None) -> None:
    """A domain's proof changed or it went: the live connections of the agents serving it re-read their rights
    now, on whichever node (agents sit above tenants, hence the late import)."""
    from agents.services.lifecycle import agent_rights_changed

    agent_rights_changed(agent_ids=agent_ids if agent_ids is not None else _agents_serving(domain_ids or []))


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    tenant_path = "pk"
    list_display = ["name", "slug", "pass_through_enabled", "mfa_policy", "password_grant_enabled",
                    "lockout_threshold"]
    search_fields = ["name", "slug"]
    inlines = [DomainInline]

    def get_readonly_fields(self, request, obj=None):
        return [] if self.is_platform_admin(request) else ["slug"]

    def save_formset(self, request, form, formset, change):
        gone = [f.instance.pk for f in formset.deleted_forms if f.instance.pk]
        changed = [f.instance.pk for f in formset.forms if f.instance.pk and "verified" in f.changed_data]
        agents = _agents_serving(gone + changed)
        super().save_formset(request, form, formset, change)
        _agents_follow(agent_ids=agents)


@admin.register(Location)
class LocationAdmin(TenantScopedAdmin):
    """Named locations (access by network): address ranges, trusted or blocked. The ranges are checked as the form
    is saved (tenant/locations.py), each bad one named."""

    list_display = ["name", "tenant", "kind", "ranges_shown"]
    list_filter = ["kind"]
    search_fields = ["name", "ranges"]
    fields = ["name", "tenant", "kind", "ranges"]

    @admin.display(description="ranges")
    def ranges_shown(self, obj: Location) -> str:
        return ", ".join(obj.ranges.split())


@admin.register(Domain)
class DomainAdmin(TenantScopedAdmin):
    list_display = ["name", "tenant", "verified"]
    list_filter = ["verified"]
    search_fields = ["name"]
    actions = ["verify"]
    change_form_template = "admin/tenant/domain/change_form.html"

    def get_fields(self, request, obj=None):
        fields = ["name", "tenant", "verified"]
        if obj is not None:
            fields += ["verified_at", "dns_record_name", "dns_record_value", "how_to_verify", "last_check"]
        return fields if self.is_platform_admin(request) else [f for f in fields if f != "tenant"]

    def get_readonly_fields(self, request, obj=None):
        # A verified domain routes sign-ins: only its DNS record (or the platform operator) verifies it.
        readonly = [] if self.is_platform_admin(request) else ["verified"]
        if obj is not None:
            # Renaming would carry the verification to a name nobody proved.
            readonly += ["name", "verified_at", "dns_record_name", "dns_record_value", "how_to_verify", "last_check"]
        return readonly

    def get_urls(self):
        verify = path("<path:object_id>/verify/", self.admin_site.admin_view(self.verify_view),
                      name="tenant_domain_verify")
        return [verify, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        domain = self.get_object(request, unquote(object_id))
        verify_url = ""
        if domain is not None and not domain.verified and self.has_change_permission(request, domain):
            verify_url = reverse(f"{self.admin_site.name}:tenant_domain_verify", args=[domain.pk])
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "verify_url": verify_url})

    def verify_view(self, request, object_id):
        """POST …/verify/: look the domain's TXT record up now (the domain page's "Verify now" button) and say what
        was found; back to the domain's page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])  # a GET (a prefetch, a crawler) looks nothing up
        domain = self.get_object(request, unquote(object_id))  # scoped: another tenant's domain is a 404
        if domain is None:
            raise Http404
        if not self.has_change_permission(request, domain):
            raise PermissionDenied
        self._verify_one(request, domain)
        return HttpResponseRedirect(reverse(f"{self.admin_site.name}:tenant_domain_change", args=[domain.pk]))

    def _verify_one(self, request, domain: Domain) -> None:
        result = domain_verify(domain=domain)
        if result.status is VerificationStatus.VERIFIED:
            self.log_change(request, domain, "Verified by its DNS TXT record.")
            _agents_follow(domain_ids=[domain.pk])
        self.message_user(request, result.message, messages.SUCCESS if result.verified else messages.ERROR)

    def response_add(self, request, obj, post_url_continue=None):
        if obj.verified or "_addanother" in request.POST or IS_POPUP_VAR in request.POST:
            return super().response_add(request, obj, post_url_continue)
        # The record to publish is on the domain's page: show it at once, not the list.
        self.message_user(request, f"{obj.name} was added, unverified: publish the TXT record below, then verify "
                                   "the domain.", messages.SUCCESS)
        return HttpResponseRedirect(reverse(f"{self.admin_site.name}:tenant_domain_change", args=[obj.pk]))

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "verified" in form.changed_data:
            _agents_follow(domain_ids=[obj.pk])

    def delete_model(self, request, obj):
        agents = _agents_serving([obj.pk])
        super().delete_model(request, obj)
        _agents_follow(agent_ids=agents)

    def delete_queryset(self, request, queryset):
        agents = _agents_serving(list(queryset.values_list("pk", flat=True)))
        super().delete_queryset(request, queryset)
        _agents_follow(agent_ids=agents)

    @admin.display(description="TXT record name")
    def dns_record_name(self, obj):
        return obj.record_name

    @admin.display(description="TXT record value")
    def dns_record_value(self, obj):
        return obj.record_value

    @admin.display(description="How to verify")
    def how_to_verify(self, obj):
        if obj.verified:
            return "Verified: sign-ins of this domain's users come to this tenant."
        return ("Publish a DNS TXT record with the name and value above in this domain's zone, then press “Verify "
                "now” below (or choose “Verify the selected domains” in the domain list). Until then it routes no "
                "sign-in.")

    @admin.display(description="Last check")
    def last_check(self, obj):
        if obj.last_check_at is None:
            return "Not checked yet."
        return f"{date_format(localtime(obj.last_check_at), 'DATETIME_FORMAT')}: {obj.last_check_result}"

    @admin.action(description="Verify the selected domains (look up their DNS TXT record)", permissions=["change"])
    def verify(self, request, queryset):
        for domain in queryset.select_related("tenant"):  # already scoped to the administrator's tenant
            self._verify_one(request, domain)


DIRECTORY_PASSWORD = ("{upn} signs in with their Active Directory password, which the portal neither keeps nor "
                      "sets: change it in Active Directory (or the user changes it at sign-in when it has expired).")


class UserCreateForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ["upn"]

    def clean(self):
        if self.cleaned_data.get("source") == User.Source.ON_PREMISES:
            if self.cleaned_data.get("password1") or self.cleaned_data.get("password2"):
                # A password typed for a directory user would be kept and never used: refused, not ignored.
                self.add_error("password1", DIRECTORY_PASSWORD.format(upn="An on-premises user")
                               + " Leave the password empty.")
            self.cleaned_data["usable_password"] = "false"  # no password of the portal's for this user
        return super().clean()


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.source == User.Source.ON_PREMISES:
            self.fields.pop("password", None)  # a declared field, there whatever the fieldsets say


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

    @staticmethod
    def _from_directory(obj) -> bool:
        return obj is not None and obj.source == User.Source.ON_PREMISES

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        # The directory owns a directory user's name and origin: sign-ins find the account by its UPN (and objectGUID).
        if self._from_directory(obj):
            return [*readonly, "upn", "source", "directory_password", "groups_state", "directory_groups"]
        return readonly

    @admin.display(description="Password")
    def directory_password(self, obj) -> str:
        return "In Active Directory: change it there. The portal neither keeps nor sets it."

    @admin.display(description="Groups")
    def directory_groups(self, obj) -> str:
        # Read-only: AD owns them; each sign-in replaces them (tenant/services.py, user_groups_record).
        groups = user_directory_groups(user=obj) if obj is not None and obj.pk else []
        if not groups:
            return "None"
        return format_html("<ul class=\"pta-directory-groups\">{}</ul>", format_html_join(
            "", "<li>{} <small>({})</small></li>", ((group.name, group.dn) for group in groups)))

    def user_change_password(self, request, id, form_url=""):
        user = self.get_object(request, unquote(id))
        if user is not None and self._from_directory(user) and self.has_change_permission(request, user):
            # Django's form would say "Password changed successfully" and AD would keep the old password.
            self.message_user(request, "No password was changed. " + DIRECTORY_PASSWORD.format(upn=user.upn),
                              messages.ERROR)
            return HttpResponseRedirect(reverse(f"{self.admin_site.name}:tenant_user_change", args=[user.pk]))
        return super().user_change_password(request, id, form_url)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if self._from_directory(obj):
            # No password control: the portal holds no password for a directory user, only a word on where it is.
            fieldsets = [(name, {**opts, "fields": ["directory_password" if f == "password" else f
                                                    for f in opts["fields"]]}) for name, opts in fieldsets]
            # The groups AD gave at the last sign-in, and why there are none when the agent gave none.
            fieldsets = [*fieldsets, ("Directory groups", {"fields": ["groups_state", "directory_groups"]})]
        if self.is_platform_admin(request):
            return fieldsets
        # A tenant administrator cannot grant platform rights nor move a user to another tenant.
        hidden = {"is_superuser", "groups", "user_permissions", "tenant"}
        return [(name, {**opts, "fields": [f for f in opts["fields"] if f not in hidden]})
                for name, opts in fieldsets if [f for f in opts["fields"] if f not in hidden]]
