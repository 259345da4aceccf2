from django.contrib import admin
from django.urls import include, path, re_path, reverse_lazy
from django.views.decorators.debug import sensitive_variables
from oauth2_provider import urls as oauth2_urls
from oauth2_provider.views import RevokeTokenView

from signin.cors import TokenEndpoint, UserInfoEndpoint
from signin.oidc import DiscoveryView, TenantAuthorizationView
from signin.views import admin_login

admin.site.site_header = "Pass-through authentication"
admin.site.site_title = "PTA admin"
admin.site.index_title = "Administration"
# The console's "View site" link (named "Agent health" in templates/admin/base_site.html): the page administrators
# keep open, rather than the portal's root, which signs people in.
admin.site.site_url = reverse_lazy("agent-health-page")  # type: ignore[assignment]  # a str once rendered
# The admin console signs in through the portal's own pages, second factor included. AdminSite has no setting for
# its login view, so this one site's method is replaced; Django calls it with the request alone.
admin.site.login = admin_login  # type: ignore[method-assign,assignment]

# Only the protocol endpoints we offer, listed one by one: DOT's full urls also hold application management
# views that would let any signed-in user register clients, its base_urlpatterns /introspect/ (any client's
# credentials got any tenant's token described) and the device flow. Our views go first and take DOT's names.
oauth2_patterns = [
    path("authorize/", TenantAuthorizationView.as_view(), name="authorize"),
    # DOT and oauthlib keep the raw form (password grant: the password; client secrets) in their frames' locals:
    # an error report shows every local below this view as stars. CORS for registered origins (signin/cors.py).
    path("token/", sensitive_variables()(TokenEndpoint.as_view()), name="token"),
    path("revoke_token/", RevokeTokenView.as_view(), name="revoke-token"),  # a client revokes only its own tokens
    path("userinfo/", UserInfoEndpoint.as_view(), name="user-info"),
    # Discovery and the JWKS (public, any origin); /logout/ is signin's LogoutView, mounted first in signin.urls.
    re_path(r"^\.well-known/openid-configuration/?$", DiscoveryView.as_view(), name="oidc-connect-discovery-info"),
    *oauth2_urls.oidc_urlpatterns,
]

urlpatterns = [
    # health/ first: its page sits among the agents' admin pages, where the admin's own patterns would take it.
    path("", include("health.urls")),
    path("admin/", admin.site.urls),
    path("", include("agents.urls")),
    path("", include("branding.urls")),
    path("", include("signin.urls")),
    path("", include("samlidp.urls")),
    path("", include((oauth2_patterns, "oauth2_provider"), namespace="oauth2_provider")),
]
