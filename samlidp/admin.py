"""The console's SAML service providers, tenant-scoped: registered from the SP's metadata (pasted or uploaded,
validated) or by hand. Who may use one and whether it needs MFA are its application's settings (linked)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html

from samlidp.models import ServiceProvider
from samlidp.services.idp import idp_entity_id, idp_sso_url
from samlidp.services.registration import MAX_METADATA_BYTES, service_provider_register, sp_metadata_read
from tenant.admin_scoping import TenantScopedAdmin
from tenant.models import Tenant

FROM_METADATA = ("entity_id", "acs_urls", "slo_url", "signing_certificate", "encryption_certificate")


class ServiceProviderForm(forms.ModelForm):
    name = forms.CharField(max_length=255, help_text="The application's name, as users and the console see it.")
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.all(), required=False,
                                    help_text="The organisation whose users sign in to it.")
    metadata_xml = forms.CharField(label="SP metadata (XML)", required=False, widget=forms.Textarea(attrs={"rows": 6}),
                                   help_text="Paste the service provider's metadata, or upload it below: its entity "
                                             "ID, ACS URLs, SLO URL and certificates are taken from it.")
    metadata_file = forms.FileField(label="or upload the metadata file", required=False)

    class Meta:
        model = ServiceProvider
        fields = ["entity_id", "acs_urls", "slo_url", "nameid_format", "signing_certificate",
                  "encryption_certificate", "requests_signed", "sign_response", "allow_idp_initiated", "send_groups"]

    owner_tenant_id = None  # the administrator's tenant (a tenant administrator's form: get_form)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in FROM_METADATA:
            self.fields[name].required = False  # metadata may give them; the model's clean() insists on what it needs
        if self.instance.pk:
            self.fields["name"].initial = self.instance.application.name
        if self.instance.pk or self.owner_tenant_id is not None:  # only a platform administrator's new SP picks one
            self.fields.pop("tenant")

    def clean(self):
        super().clean()
        data = self.cleaned_data
        upload = data.get("metadata_file")
        xml = upload.read(MAX_METADATA_BYTES + 1) if upload else (data.get("metadata_xml") or "").strip()
        if xml:
            try:
                found = sp_metadata_read(xml=xml)
            except ValidationError as exc:
                raise ValidationError({"metadata_xml": exc.messages}) from None
            data.update(entity_id=data.get("entity_id") or found.entity_id,
                        acs_urls=data.get("acs_urls") or "\n".join(found.acs_urls),
                        slo_url=data.get("slo_url") or found.slo_url,
                        signing_certificate=data.get("signing_certificate") or found.signing_certificate,
                        encryption_certificate=data.get("encryption_certificate") or found.encryption_certificate,
                        requests_signed=data.get("requests_signed") or found.requests_signed)
            for name in FROM_METADATA + ("requests_signed",):
                setattr(self.instance, name, data[name])
        if not data.get("entity_id"):
            self.add_error("entity_id", "Give the SP's entity ID, or its metadata.")
        if "tenant" in self.fields and not data.get("tenant"):
            self.add_error("tenant", "Choose the organisation.")
        tenant_id = self.owner_tenant_id or (data["tenant"].pk if data.get("tenant") else None) or (
            self.instance.application.tenant_id if self.instance.pk else None)
        if tenant_id is not None and data.get("entity_id") and ServiceProvider.objects.filter(
                application__tenant_id=tenant_id, entity_id=data["entity_id"]).exclude(pk=self.instance.pk).exists():
            self.add_error("entity_id", "This entity ID is registered already for this organisation.")
        return data


@admin.register(ServiceProvider)
class ServiceProviderAdmin(TenantScopedAdmin):
    form = ServiceProviderForm
    tenant_path = "application__tenant"
    list_display = ["entity_id", "application_name", "nameid_format", "requests_signed", "allow_idp_initiated"]
    search_fields = ["entity_id", "application__name"]
    readonly_fields = ["access_settings", "identity_provider"]

    @admin.display(description="application")
    def application_name(self, obj):
        return obj.application.name

    @admin.display(description="who may use it")
    def access_settings(self, obj):
        if obj is None or obj.pk is None:
            return "Set on its application's page once saved (assignment, groups, MFA)."
        url = reverse("admin:applications_application_change", args=[obj.application_id])
        return format_html('<a href="{}">Assignment, groups and MFA: its application\'s page</a>', url)

    @admin.display(description="give the SP")
    def identity_provider(self, obj):
        if obj is None or obj.pk is None:
            return "Shown once saved."
        tenant = obj.application.tenant
        return format_html("Metadata URL (also the IdP's entity ID): {}<br>SSO URL: {}", idp_entity_id(tenant=tenant),
                           idp_sso_url(tenant=tenant))

    def get_fields(self, request, obj=None):
        fields = ["name", *(["tenant"] if obj is None and self.is_platform_admin(request) else []),
                  *(["metadata_xml", "metadata_file"] if obj is None else []), *ServiceProviderForm.Meta.fields]
        return [*fields, "access_settings", "identity_provider"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if self.is_platform_admin(request):
            return form
        return type("TenantServiceProviderForm", (form,), {"owner_tenant_id": request.user.tenant_id})

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            obj.application.name = data["name"]
            obj.application.save(update_fields=["name", "updated"])
            super().save_model(request, obj, form, change)
            return
        tenant = data.get("tenant") if self.is_platform_admin(request) else request.user.tenant
        created = service_provider_register(
            tenant=tenant, name=data["name"], entity_id=data["entity_id"], acs_urls=data["acs_urls"].splitlines(),
            slo_url=data["slo_url"], nameid=data["nameid_format"], signing_certificate=data["signing_certificate"],
            encryption_certificate=data["encryption_certificate"], requests_signed=data["requests_signed"],
            sign_response=data["sign_response"], allow_idp_initiated=data["allow_idp_initiated"],
            send_groups=data["send_groups"])
        obj.pk, obj.application = created.pk, created.application
        obj.pairwise_secret = created.pairwise_secret
