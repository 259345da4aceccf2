from asgiref.sync import async_to_sync
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from agents.models import Agent, RegistrationToken
from agents.selectors import agent_statuses
from agents.services.registration import DEFAULT_TOKEN_TTL_SECONDS, registration_token_issue
from tenant.admin_once import FIELD as ONCE_KEY
from tenant.admin_once import once_key_field, once_key_issue, once_key_refused, once_key_spend
from tenant.admin_scoping import TenantScopedAdmin, mask


@admin.register(Agent)
class AgentAdmin(TenantScopedAdmin):
    list_display = ["name", "tenant", "hostname", "status_badge", "version", "certificate_not_after", "last_seen"]
    list_filter = ["tenant", "revoked_at"]
    search_fields = ["name", "hostname"]
    readonly_fields = ["id", "status_badge", "tenant", "hostname", "version", "certificate_serial", "fingerprint",
                       "certificate_not_after", "registered_at", "last_seen", "revoked_at", "revoked_by"]
    fields = ["id", "name", "status_badge", "tenant", "domains", "hostname", "version", "certificate_serial",
              "fingerprint", "certificate_not_after", "registered_at", "last_seen", "revoked_at", "revoked_by"]
    actions = ["revoke_selected"]
    autocomplete_fields = ["domains"]

    def has_add_permission(self, request):
        return False  # agents register themselves with a token

    def save_related(self, request, form, formsets, change):
        from agents.services.lifecycle import agent_rights_changed

        super().save_related(request, form, formsets, change)
        agent_rights_changed(agent_ids=[form.instance.pk])  # its live connection stops serving a removed domain

    def delete_model(self, request, obj):
        from agents.services.lifecycle import agent_delete

        agent_delete(agent=obj, by=request.user)

    def delete_queryset(self, request, queryset):
        from agents.services.lifecycle import agent_delete

        for agent in queryset:
            agent_delete(agent=agent, by=request.user)

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        # The page's agents' statuses in one pass, as the health view reads them (not last_seen, which lags).
        agents = list(changelist.result_list)
        statuses = async_to_sync(agent_statuses)(agents=agents)
        for agent in agents:
            agent.live_status = statuses[str(agent.pk)]
        return changelist

    @admin.display(description="status")
    def status_badge(self, obj: Agent) -> str:
        status = getattr(obj, "live_status", None)
        if status is None:  # the change page: one agent
            status = async_to_sync(agent_statuses)(agents=[obj])[str(obj.pk)]
        return Agent.Status(status).label

    @admin.display(description="key fingerprint")
    def fingerprint(self, obj: Agent) -> str:
        return mask(obj.key_fingerprint, 8)

    @admin.action(description="Revoke selected agents (closes their connections now)", permissions=["change"])
    def revoke_selected(self, request, queryset):
        from agents.services.lifecycle import agent_revoke

        count = 0
        for agent in queryset.filter(revoked_at__isnull=True):
            agent_revoke(agent=agent, by=request.user)
            count += 1
        self.message_user(request, f"Revoked {count} agent(s).", messages.SUCCESS)


# What a registration token add form's one-time key is for (tenant/admin_once.py).
TOKEN_ADD = "token-add"


class RegistrationTokenForm(forms.ModelForm):
    ttl_seconds = forms.IntegerField(initial=DEFAULT_TOKEN_TTL_SECONDS, min_value=60, max_value=7 * 24 * 3600,
                                     label="Valid for (seconds)")
    # Each rendered add form may issue one token: a reload of the answer page (the browser posts the form again)
    # finds its key spent and issues nothing.
    once_key = once_key_field()

    class Meta:
        model = RegistrationToken
        fields = ["tenant", "domains"]


@admin.register(RegistrationToken)
class RegistrationTokenAdmin(TenantScopedAdmin):
    form = RegistrationTokenForm
    list_display = ["masked", "tenant", "created_at", "expires_at", "used_at", "issued_by"]
    list_filter = ["tenant"]
    readonly_fields = ["masked", "created_at", "expires_at", "used_at", "used_by", "issued_by"]

    def has_change_permission(self, request, obj=None):
        return False  # a token is issued, used or left to expire; never edited

    @admin.display(description="token")
    def masked(self, obj: RegistrationToken) -> str:
        return f"…{obj.hint}"

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["domains", "ttl_seconds", ONCE_KEY] if not self.is_platform_admin(request) else [
                "tenant", "domains", "ttl_seconds", ONCE_KEY]
        return ["masked", "tenant", "domains", "created_at", "expires_at", "used_at", "used_by", "issued_by"]

    def get_changeform_initial_data(self, request):
        # A fresh key for each add form shown (GET only: a POST's form carries the key it was shown with).
        return {**super().get_changeform_initial_data(request), ONCE_KEY: once_key_issue(request, purpose=TOKEN_ADD)}

    def add_view(self, request, form_url="", extra_context=None):
        changelist = reverse(f"{self.admin_site.name}:agents_registrationtoken_changelist")
        if request.method == "POST" and (refused := once_key_refused(
                request, purpose=TOKEN_ADD, go_to=changelist,
                done="This form has already issued its token, which was shown once and is not shown again. Issue a "
                     "new token if it was not copied.")):
            # A reload of the answer page posts the same form again: no second token, and the first is not shown
            # again (the portal no longer has it).
            return refused
        return super().add_view(request, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        if not once_key_spend(request, purpose=TOKEN_ADD, key=form.cleaned_data.get(ONCE_KEY, "")):
            raise PermissionDenied("This form has already issued its token.")  # two posts racing with one key
        tenant = obj.tenant if self.is_platform_admin(request) else request.user.tenant
        token, raw = registration_token_issue(
            tenant=tenant, domains=form.cleaned_data.get("domains") or [],
            ttl_seconds=form.cleaned_data["ttl_seconds"], issued_by=request.user,
        )
        form.instance = token
        # The admin logs and answers for the object it passed in: make it the issued token.
        for model_field in token._meta.concrete_fields:
            setattr(obj, model_field.attname, getattr(token, model_field.attname))
        obj.raw_token = raw  # in memory for response_add's page only: never a message (a readable cookie)

    def response_add(self, request, obj, post_url_continue=None):
        # The notice names the token by its last characters only: a message may be kept in a readable cookie.
        self.message_user(request, f"Registration token …{obj.hint} issued. Copy it now: it is shown on this page "
                                   "only, and the portal keeps only its hash.", messages.SUCCESS)
        domains = [domain.name for domain in obj.domains.all()]
        context = {
            **self.admin_site.each_context(request), "title": "Registration token issued", "opts": self.opts,
            "token": obj, "raw_token": obj.raw_token, "domains": domains,
            "portal_url": settings.PTA_PUBLIC_URL.rstrip("/"), "config_path": "/etc/pta-agent/agent.toml",
        }
        response = TemplateResponse(request, "admin/agents/registrationtoken/issued.html", context)
        add_never_cache_headers(response)  # no-store: no cache nor back button keeps the token
        return response

    def save_related(self, request, form, formsets, change):
        pass  # domains were set by registration_token_issue
