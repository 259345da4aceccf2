"""Start-up checks for the clever parts (STYLE: guard them where failure is cheapest).

- The framework hooks the OpenID provider's protections override: were DOT or oauthlib to rename one, our override
  would silently stop running (logout would revoke the hint's user's tokens everywhere again, a replayed code or a
  wrong PKCE verifier would go unnoticed).
- The sign-in's consumers (signin/consumers.py) run settings.MIDDLEWARE's hooks by hand: a middleware with hooks
  they do not run, or a page whose URL now routes to another view than the consumer serves, must stop start-up,
  not answer 500s or answer otherwise than Django would.
- The lockout counters' Redis must never evict: they share it with the sessions, and an eviction policy would drop
  a lock to make room for a flood of usernames' sessions (``manage.py migrate`` and ``check`` run this).
"""

from django.core import checks
from django.utils.module_loading import import_string

HOOKS = {
    # signin/oidc.py TenantAuthorizationView: every code passes the session's checks (create_authorization_response
    # refuses one that did not), the consent POST answered only where a consent page exists
    "oauth2_provider.views.AuthorizationView": (
        "validate_authorization_request", "create_authorization_response", "form_valid", "handle_no_permission",
        "redirect"),
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


@checks.register()
def signin_consumers_fit(app_configs, **kwargs):
    from django.core.exceptions import ImproperlyConfigured
    from django.urls import Resolver404, resolve

    from signin.consumers import PAGES, MiddlewareHooks

    errors = []
    try:
        MiddlewareHooks()
    except ImproperlyConfigured as exc:
        errors.append(checks.Error(str(exc), id="signin.E002",
                                   hint="The sign-in consumers run only process_request/process_view/"
                                        "process_response hooks: give the middleware those alone, or route the "
                                        "sign-in pages to Django's own handler."))
    from django.conf import settings

    from signin.consumers import SignInPageConsumer

    if SignInPageConsumer.channel_layer_alias in getattr(settings, "CHANNEL_LAYERS", {}):
        errors.append(checks.Error("The sign-in consumers would get a channel of their own on every request.",
                                   id="signin.E004", hint="Keep their channel_layer_alias out of CHANNEL_LAYERS."))
    for (method, path), consumer in PAGES.items():
        try:
            routed = resolve(path).func
        except Resolver404:
            routed = None
        if routed is not consumer.view:
            errors.append(checks.Error(
                f"{method} {path} is served by {consumer.__name__} as {consumer.view.__name__}, but the URL "
                f"routes to {getattr(routed, '__name__', 'no view')}.", id="signin.E003",
                hint="Keep signin.consumers.PAGES in step with signin/urls.py."))
    return errors


@checks.register()
def lockout_store_never_evicts(app_configs, **kwargs):
    from signin.services.lockout import RedisLockoutStore, lockout_store

    store = lockout_store()
    if not isinstance(store, RedisLockoutStore):  # the embedded profile: counters in the process
        return []
    hint = ("Set maxmemory-policy noeviction on that Redis (redis.conf, or CONFIG SET): a full Redis then refuses "
            "new sessions instead of dropping a lock. Sessions expire within PTA_SIGNIN_SESSION_SECONDS until "
            "a sign-in completes.")
    try:
        policy = store.eviction_policy()
    except Exception as exc:  # noqa: BLE001 - Redis away or INFO not allowed: say so, do not stop migrate
        return [checks.Warning(f"Could not read the lockout store's Redis eviction policy: {exc}.",
                               id="signin.W005", hint=hint)]
    if policy != "noeviction":
        return [checks.Error(f"The lockout counters' Redis evicts keys (maxmemory-policy {policy}): a flood of "
                             "sessions could make it drop a lock.", id="signin.E005", hint=hint)]
    return []
