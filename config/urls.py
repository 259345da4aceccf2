from django.contrib import admin
from django.urls import include, path
from django.views.decorators.debug import sensitive_variables
from oauth2_provider import urls as oauth2_urls
from oauth2_provider.views import TokenView

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
    # DOT and oauthlib keep the raw form (password grant: the password; client secrets) in their frames' locals:
    # an error report shows every local below this view as stars.
    path("token/", sensitive_variables()(TokenView.as_view()), name="token"),
    *oauth2_urls.base_urlpatterns,
    *oauth2_urls.oidc_urlpatterns,
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("agents.urls")),
    path("", include("signin.urls")),
    path("", include((oauth2_patterns, "oauth2_provider"), namespace="oauth2_provider")),
]
