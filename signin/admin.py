from django.contrib import admin

from signin.models import SignInEvent
from tenant.admin_scoping import ReadOnlyAdmin, TenantScopedAdmin


@admin.register(SignInEvent)
class SignInEventAdmin(ReadOnlyAdmin, TenantScopedAdmin):
    list_display = ["created_at", "username", "outcome", "ad_subcode", "agent", "ip_address", "total_ms",
                    "mfa_decision", "mfa_result"]
    list_filter = ["outcome", "agent", "user", "channel", "password_change", "mfa_decision",
                   ("created_at", admin.DateFieldListFilter)]
    search_fields = ["username", "user__upn", "ip_address"]
    date_hierarchy = "created_at"
    list_select_related = ["agent", "user"]
