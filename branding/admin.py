from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from branding.images import MAX_LOGO_BYTES, MAX_LOGO_SIDE, logo_normalised
from branding.models import Branding
from branding.selectors import logo_url
from branding.services import branding_set
from tenant.admin_scoping import TenantScopedAdmin


class BrandingForm(forms.ModelForm):
    logo_upload = forms.FileField(
        label="New logo", required=False,
        widget=forms.FileInput(attrs={"accept": "image/png,image/jpeg,image/webp"}),
        help_text=f"PNG, JPEG or WebP (not SVG), at most {MAX_LOGO_BYTES // 1024} KB and {MAX_LOGO_SIDE} × "
                  f"{MAX_LOGO_SIDE} pixels. Shown at most 60 pixels high; a wide logo (about 280 × 60) reads best. "
                  "Leave empty to keep the current one.")
    remove_logo = forms.BooleanField(label="Remove the logo", required=False)

    class Meta:
        model = Branding
        fields = ["tenant", "accent_colour", "signin_text"]
        widgets = {"accent_colour": forms.TextInput(attrs={"placeholder": "#0b5cad", "size": 9,
                                                           "pattern": "#[0-9a-fA-F]{6}"})}

    def clean_logo_upload(self):
        upload = self.cleaned_data.get("logo_upload")
        if not upload:
            return None
        if upload.size > MAX_LOGO_BYTES:  # before reading it
            raise ValidationError(f"The logo is {upload.size // 1024} KB; at most {MAX_LOGO_BYTES // 1024} KB is "
                                  "accepted.")
        return logo_normalised(upload.read())

    def clean_accent_colour(self):
        return (self.cleaned_data.get("accent_colour") or "").strip().lower()


@admin.register(Branding)
class BrandingAdmin(TenantScopedAdmin):
    """Each tenant's administrators set their own tenant's branding (one per tenant); platform administrators
    any tenant's."""

    form = BrandingForm
    list_display = ["tenant", "accent_colour", "has_logo", "updated_at"]
    fields = ["tenant", "current_logo", "logo_upload", "remove_logo", "accent_colour", "signin_text", "updated_at"]
    readonly_fields = ["current_logo", "updated_at"]

    @admin.display(description="current logo")
    def current_logo(self, obj: Branding):
        if not obj.logo_sha256:
            return "none: the sign-in pages show no logo"
        return format_html('<img src="{}" width="{}" height="{}" alt="Current logo" style="max-height:60px;'
                           'width:auto;background:#fff;padding:4px;border:1px solid #ccc">',
                           logo_url(obj.logo_sha256), obj.logo_width, obj.logo_height)

    @admin.display(description="logo", boolean=True)
    def has_logo(self, obj: Branding) -> bool:
        return bool(obj.logo_sha256)

    def has_add_permission(self, request, obj=None) -> bool:
        if not super().has_add_permission(request):
            return False
        # One branding per tenant: a tenant administrator whose tenant has it edits that one.
        return self.is_platform_admin(request) or not self.get_queryset(request).exists()

    def changelist_view(self, request, extra_context=None):
        if self.is_platform_admin(request):
            return super().changelist_view(request, extra_context)
        # A tenant administrator has one branding at most: straight to its form.
        own = self.get_queryset(request).only("pk").first()
        if own is not None and self.has_view_or_change_permission(request, own):
            return HttpResponseRedirect(reverse("admin:branding_branding_change", args=[own.pk]))
        if own is None and self.has_add_permission(request):
            return HttpResponseRedirect(reverse("admin:branding_branding_add"))
        return super().changelist_view(request, extra_context)

    def get_readonly_fields(self, request, obj=None):
        # A branding stays its tenant's: the tenant is chosen on the add page only (changed, the save made a second
        # row for the other tenant and left the logo with the first).
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "tenant"] if obj is not None and "tenant" not in fields else fields

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        saved = branding_set(tenant=obj.tenant, accent_colour=data.get("accent_colour") or "",
                             signin_text=data.get("signin_text") or "", logo=data.get("logo_upload"),
                             remove_logo=bool(data.get("remove_logo")))
        for field in saved._meta.concrete_fields:  # the admin logs and redirects with the object it passed in
            setattr(obj, field.attname, getattr(saved, field.attname))
