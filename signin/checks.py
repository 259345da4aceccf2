"""Start-up checks for the framework hooks the OpenID provider's protections override (STYLE: guard the clever
parts). Were DOT or oauthlib to rename one, our override would silently stop running: logout would revoke the
hint's user's tokens everywhere again, a replayed code or a wrong PKCE verifier would go unnoticed."""

from django.core import checks
from django.utils.module_loading import import_string

HOOKS = {
    # signin/views.py LogoutView
    "oauth2_provider.views.RPInitiatedLogoutView": (
        "validate_logout_request", "validate_post_logout_redirect_uri", "do_logout", "error_response", "must_prompt"),
    # signin/oidc.py PortalOAuth2Validator: one try per code, replay revocation, PKCE values
    "oauth2_provider.oauth2_validators.OAuth2Validator": (
        "validate_code", "save_token", "invalidate_authorization_code", "save_authorization_code"),
    # applications/models.py Application: a confidential client's loopback port
    "oauth2_provider.models.AbstractApplication": ("redirect_uri_allowed", "post_logout_redirect_uri_allowed"),
}


@checks.register()
def oidc_hooks_present(app_configs, **kwargs):
    errors = []
    for path, names in HOOKS.items():
        base = import_string(path)
        errors += [checks.Error(f"{path}.{name} is gone: the override of it no longer runs.", id="signin.E001",
                                hint="Re-read django-oauth-toolkit's source for where this moved.")
                   for name in names if not callable(getattr(base, name, None))]
    return errors
