from django.contrib import admin
from django.contrib.admin.exceptions import NotRegistered

from applications.models import Application
from tenant.admin_scoping import TenantScopedAdmin, mask

try:  # DOT registers its own, unscoped admin for the application model
    admin.site.unregister(Application)
except NotRegistered:
    pass


@admin.register(Application)
class ApplicationAdmin(TenantScopedAdmin):
    list_display = ["name", "tenant", "client_id", "client_type", "authorization_grant_type", "algorithm"]
    list_filter = ["client_type", "authorization_grant_type"]
    search_fields = ["name", "client_id"]
    readonly_fields = ["client_id", "secret_hint", "created", "updated"]
    fields = ["name", "tenant", "client_id", "client_type", "authorization_grant_type", "redirect_uris",
              "post_logout_redirect_uris", "allowed_origins", "algorithm", "skip_authorization", "secret_hint",
              "client_secret", "hash_client_secret", "groups_claim", "groups_claim_format", "groups_claim_limit",
              "created", "updated"]

    @admin.display(description="client secret")
    def secret_hint(self, obj):
        # Only its hash is stored: this shows which hash, never the secret.
        return mask(obj.client_secret) if obj and obj.client_secret else ""

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        if obj is not None:  # the secret is shown once, on creation
            fields.remove("client_secret")
        return fields

    def get_changeform_initial_data(self, request):
        return {**super().get_changeform_initial_data(request), "algorithm": Application.RS256_ALGORITHM,
                "skip_authorization": True, "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE}
