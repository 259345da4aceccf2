from django.contrib import admin
from django.urls import include, path
from oauth2_provider import urls as oauth2_urls

from signin.oidc import TenantAuthorizationView
from signin.views import admin_login

admin.site.site_header = "Pass-through authentication"
admin.site.site_title = "PTA admin"
admin.site.index_title = "Administration"
# The admin console signs in through the portal's own pages, second factor included.
admin.site.login = admin_login

# Only DOT's protocol endpoints: its full urls also hold application management views that would let any
# signed-in user register clients. Our authorize view (tenant check) goes first and takes its name.
oauth2_patterns = [
    path("authorize/", TenantAuthorizationView.as_view(), name="authorize"),
    *oauth2_urls.base_urlpatterns,
    *oauth2_urls.oidc_urlpatterns,
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("agents.urls")),
    path("", include("signin.urls")),
    path("", include((oauth2_patterns, "oauth2_provider"), namespace="oauth2_provider")),
]
