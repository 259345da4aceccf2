from django import forms
from django.contrib import admin, messages
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timezone import localtime
from django.views.decorators.debug import sensitive_variables

from applications.models import Application, PendingGroupAssignment
from applications.services import (
    application_groups_check,
    application_pending_groups_settle,
    application_secret_issue,
    application_secret_rotate,
    application_users_check,
)
from tenant.admin_once import FIELD as ONCE_KEY
from tenant.admin_once import once_key_field, once_key_issue, once_key_refused, once_key_spend
from tenant.admin_scoping import TenantScopedAdmin

# What a form's one-time key is for (tenant/admin_once.py): each form shown registers, or rotates, once.
APPLICATION_ADD = "application-add"


def _rotation(application_pk) -> str:
    return f"application-rotate:{application_pk}"

try:  # DOT registers its own, unscoped admin for the application model
    admin.site.unregister(Application)
except NotRegistered:
    pass


class ApplicationForm(forms.ModelForm):
    """Only what the portal offers (docs/oidc.md): DOT's model lists implicit, hybrid, client credentials, the
    device flow and HS256 too. A posted value outside these lists is a form error ("Select a valid choice")."""

    authorization_grant_type = forms.ChoiceField(
        label="Authorization grant type", choices=Application.OFFERED_GRANT_TYPES,
        initial=Application.GRANT_AUTHORIZATION_CODE,
        help_text="The password grant also needs the tenant's policy (tenant_policy SLUG --password-grant on) and a "
                  "confidential client.")
    algorithm = forms.ChoiceField(label="ID token signing algorithm", choices=Application.OFFERED_ALGORITHMS,
                                  initial=Application.RS256_ALGORITHM)
    # The add form only: its answer page shows the secret, and a reload (the form posted again) registers nothing.
    once_key = once_key_field()

    class Meta:
        model = Application
        fields = ["name", "tenant", "client_type", "authorization_grant_type", "redirect_uris",
                  "post_logout_redirect_uris", "allowed_origins", "algorithm", "skip_authorization"]

    def clean(self):
        cleaned = super().clean() or {}
        # Only the application's own tenant's groups and users: a tenant administrator is offered no others (the
        # admin's scoped choices); a platform administrator picks the tenant and the assignments on one form.
        tenant = cleaned.get("tenant") if "tenant" in self.fields else None
        owner = Application(tenant_id=tenant.pk if tenant is not None else self.instance.tenant_id)
        checks = (("assigned_groups", application_groups_check), ("assigned_users", application_users_check))
        for field, check in checks:
            chosen = cleaned.get(field)
            if chosen is None or owner.tenant_id is None:
                continue
            try:
                check(application=owner, **{field.removeprefix("assigned_"): chosen})
            except ValidationError as exc:
                self.add_error(field, exc)
        return cleaned


class PendingGroupInline(admin.TabularInline):
    """Group names typed before any sign-in reported the group: matched (case-insensitively) at the next sign-in
    that does, then listed with the assigned groups."""

    model = PendingGroupAssignment
    fields = ["name"]
    extra = 1
    verbose_name = "group not seen at a sign-in yet"
    verbose_name_plural = "Groups assigned by name, not seen at a sign-in yet"

    # Part of the application's access settings: whoever may change the application may change these (tenant
    # administrators hold no permission of this model of its own; the parent admin is tenant-scoped).
    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("applications.view_application") or self._may_change(request)

    def has_add_permission(self, request, obj=None) -> bool:
        return self._may_change(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._may_change(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._may_change(request)

    @staticmethod
    def _may_change(request) -> bool:
        return request.user.has_perm("applications.change_application")


@admin.register(Application)
class ApplicationAdmin(TenantScopedAdmin):
    form = ApplicationForm
    view_on_site = False  # the site has no page of its own for an application
    list_display = ["name", "tenant", "client_id", "client_type", "authorization_grant_type", "require_mfa",
                    "assignment_required", "secret_rotated_at"]
    list_filter = ["client_type", "authorization_grant_type", "require_mfa", "assignment_required"]
    # Groups: the tenant's, known from sign-ins, picked by name (the picker filters as you type); users by UPN
    # through the user admin's search. Both tenant-scoped (TenantScopedAdmin: choices, and the user admin's
    # queryset behind the autocomplete endpoint).
    filter_horizontal = ["assigned_groups"]
    autocomplete_fields = ["assigned_users"]
    inlines = [PendingGroupInline]
    search_fields = ["name", "client_id"]
    readonly_fields = ["client_id", "client_secret_status", "created", "updated"]
    # No client_secret field: the portal generates it on save and shows it once on the next page (response_add).
    # Not on the add page: an unsaved form would show a client id that the save replaces.
    after_save_only = ("client_id", "created", "updated")
    fields = ["name", "tenant", "client_id", "client_type", "authorization_grant_type", "redirect_uris",
              "post_logout_redirect_uris", "allowed_origins", "algorithm", "skip_authorization", "require_mfa",
              "phishing_resistant_required", "assignment_required", "assigned_groups", "assigned_users",
              "groups_claim", "groups_claim_format", "groups_claim_limit", "client_secret_status", "created", "updated"]

    @admin.display(description="client secret")
    def client_secret_status(self, obj):
        """Whether a secret is set and when it was last replaced; never the secret nor any part of its hash."""
        if obj is None or obj.pk is None:
            return ("Generated when you save (confidential clients) and shown once, on the next page: copy it "
                    "then. The portal keeps only its hash. A public client has none.")
        if obj.client_type == Application.CLIENT_PUBLIC:
            return "None: a public client has no secret (it uses PKCE alone)."
        rotate = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_rotate_secret", args=[quote(obj.pk)])
        if not obj.client_secret:
            return format_html('None set. <a href="{}">Generate a client secret</a>', rotate)
        when = (f"last rotated {date_format(localtime(obj.secret_rotated_at), 'DATETIME_FORMAT')}"
                if obj.secret_rotated_at else "issued at registration, never rotated")
        return format_html('Set ({}). Stored hashed: it cannot be shown. <a href="{}">Rotate the client secret</a>',
                           when, rotate)

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if obj is None:
            return [*(name for name in fields if name not in self.after_save_only), ONCE_KEY]
        return fields

    def get_changeform_initial_data(self, request):
        return {**super().get_changeform_initial_data(request), "algorithm": Application.RS256_ALGORITHM,
                "skip_authorization": True, "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
                "client_type": Application.CLIENT_CONFIDENTIAL,
                ONCE_KEY: once_key_issue(request, purpose=APPLICATION_ADD)}

    def add_view(self, request, form_url="", extra_context=None):
        changelist = reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_changelist")
        if request.method == "POST" and (refused := once_key_refused(
                request, purpose=APPLICATION_ADD, go_to=changelist,
                done="This form has already registered its application, whose client secret was shown once and is "
                     "not shown again. If it was not copied, rotate the application's client secret.")):
            return refused  # a reload of the answer page: no second application
        return super().add_view(request, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        if not change and not once_key_spend(request, purpose=APPLICATION_ADD, key=form.cleaned_data.get(ONCE_KEY)
                                             or ""):
            raise PermissionDenied("This form has already registered its application.")  # two posts racing
        if not change or "client_type" in form.changed_data:
            # A public client's stored "secret" is the hash of "" (DOT hashes whatever is there): made confidential,
            # it would accept an empty secret, so a client type change always issues a new one (none for public).
            # In memory for the answer page only: never a message (a readable cookie), never the log.
            obj.new_client_secret = application_secret_issue(application=obj)
            if change and obj.new_client_secret:
                obj.secret_rotated_at = timezone.now()
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # A typed name of a group a sign-in has reported already is that group: assigned now.
        application_pending_groups_settle(application=form.instance)

    @sensitive_variables("secret")
    def response_add(self, request, obj, post_url_continue=None):
        secret = getattr(obj, "new_client_secret", "")
        if not secret:
            return super().response_add(request, obj, post_url_continue)
        return self._secret_page(request, obj, secret, title="Application registered: copy its client secret")

    @sensitive_variables("secret")
    def response_change(self, request, obj):
        secret = getattr(obj, "new_client_secret", "")
        if not secret:
            return super().response_change(request, obj)
        return self._secret_page(request, obj, secret, title="Now a confidential client: copy its client secret")

    def get_urls(self):
        rotate = path("<path:object_id>/rotate-secret/", self.admin_site.admin_view(self.rotate_secret_view),
                      name=f"{self.opts.app_label}_{self.opts.model_name}_rotate_secret")
        return [rotate, *super().get_urls()]

    @sensitive_variables("secret")
    def rotate_secret_view(self, request, object_id):
        """GET: what rotating does, and a button; POST: a new secret, shown once on the answer page."""
        obj = self.get_object(request, unquote(object_id))  # tenant-scoped: another tenant's is None
        if obj is None:
            raise Http404
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        change_url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[quote(obj.pk)])
        if obj.client_type != Application.CLIENT_CONFIDENTIAL:
            self.message_user(request, "A public client has no client secret to rotate.", messages.ERROR)
            return HttpResponseRedirect(change_url)
        if request.method == "POST":
            # Each confirmation page shown rotates once: a reload of the answer page (the form posted again) would
            # otherwise rotate again, and the secret just copied would stop working.
            if refused := once_key_refused(
                    request, purpose=_rotation(obj.pk), go_to=change_url,
                    done="This form has already rotated the client secret; the new one was shown once and is not "
                         "shown again. Rotate the client secret again if it was not copied."):
                return refused
            if not once_key_spend(request, purpose=_rotation(obj.pk), key=request.POST.get(ONCE_KEY, "")):
                raise PermissionDenied("This form has already rotated the client secret.")  # two posts racing
            try:
                secret = application_secret_rotate(application=obj, actor=request.user.get_username())
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), messages.ERROR)
                return HttpResponseRedirect(change_url)
            self.log_change(request, obj, [{"changed": {"fields": ["client secret (rotated)"]}}])
            return self._secret_page(request, obj, secret, title="Client secret rotated: copy the new one")
        context = {**self.admin_site.each_context(request), "title": "Rotate the client secret", "opts": self.opts,
                   "application": obj, "change_url": change_url,
                   "once_key": once_key_issue(request, purpose=_rotation(obj.pk))}
        return TemplateResponse(request, "admin/applications/application/rotate_secret.html", context)

    @sensitive_variables("secret")
    def _secret_page(self, request, obj, secret: str, *, title: str):
        context = {**self.admin_site.each_context(request), "title": title, "opts": self.opts, "application": obj,
                   "secret": secret,
                   "change_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                                         args=[quote(obj.pk)])}
        response = TemplateResponse(request, "admin/applications/application/secret.html", context)
        add_never_cache_headers(response)  # no-store: no cache nor back button keeps the secret
        return response
