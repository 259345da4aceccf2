"""OpenID Connect provider glue for django-oauth-toolkit: the ID token's claims, the password grant through
pass-through validation, and the authorize endpoint limited to the application's own tenant."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.views.decorators.debug import sensitive_variables
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.views import AuthorizationView
from oauthlib.oauth2.rfc6749 import errors

from agents.protocol import Outcome
from applications.models import Application
from signin.services.attempt import password_sign_in
from tenant.selectors import tenant_for_username

# Outcomes that say the portal or the directory could not answer: not the caller's fault, try again later.
UNAVAILABLE = {Outcome.NO_AGENT_AVAILABLE, Outcome.AGENT_TIMEOUT, Outcome.AGENT_ERROR, Outcome.DIRECTORY_UNAVAILABLE}


class OutcomeError(errors.OAuth2Error):
    """An OAuth error whose JSON body also carries the sign-in outcome code (INTERFACES.md):
    ``{"error": …, "error_description": …, "outcome": "<code>"}``; ``outcome`` is null when the request was
    refused before any sign-in was attempted (a client or tenant that may not use the grant)."""

    def __init__(self, error: str, description: str, *, outcome: Outcome | None, status_code: int = 400,
                 request=None):
        self.error = error
        self.outcome = outcome
        super().__init__(description=description, status_code=status_code, request=request)

    @property
    def twotuples(self):
        return [*super().twotuples, ("outcome", self.outcome.value if self.outcome else None)]


class PortalOAuth2Validator(OAuth2Validator):
    # DOT keeps only the claims whose scope was granted: ours come with "openid" itself.
    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "tid": "openid", "upn": "openid", "name": "openid"}

    def get_additional_claims(self):
        # The request-agnostic form (callables): DOT then also lists these claims in discovery.
        return {
            "tid": lambda request: str(request.user.tenant_id) if request.user.tenant_id else "",
            "upn": lambda request: request.user.upn,
            "name": lambda request: request.user.get_full_name(),
            "preferred_username": lambda request: request.user.upn,
            "email": lambda request: request.user.email,
        }

    @sensitive_variables("password")
    def validate_user(self, username, password, client, request, *args, **kwargs):
        """The password grant. oauthlib calls this before it checks the client's grant type, so everything that
        can refuse without a password check comes first: the client's grant type, the tenant (the client's own,
        and it must allow the grant); then pass-through, which checks cloud lockout before any agent."""
        if client is None or client.authorization_grant_type != Application.GRANT_PASSWORD:
            raise OutcomeError("unauthorized_client", "This client is not registered for the password grant.",
                               outcome=None, request=request)
        upn = (username or "").strip().lower()
        tenant = tenant_for_username(username=upn)
        if tenant is None or tenant.pk != client.tenant_id:
            raise OutcomeError("invalid_grant", Outcome.UNKNOWN_DOMAIN.message, outcome=Outcome.UNKNOWN_DOMAIN,
                               request=request)
        if not tenant.password_grant_enabled:
            raise OutcomeError("unauthorized_client", "Your organisation does not allow the password grant.",
                               outcome=None, request=request)
        headers = request.headers or {}
        result = async_to_sync(password_sign_in)(
            username=username, password=password or "", ip=headers.get("REMOTE_ADDR", ""),
            user_agent=headers.get("HTTP_USER_AGENT", ""), channel="oauth",
        )
        if result.outcome is Outcome.MFA_REQUIRED:
            # As the commercial systems do: a legacy client cannot show a second factor.
            raise OutcomeError("interaction_required", "Your organisation requires a second factor: sign in "
                               "through the browser.", outcome=Outcome.MFA_REQUIRED, request=request)
        if not result.succeeded:
            if result.outcome in UNAVAILABLE:
                raise OutcomeError("temporarily_unavailable", result.outcome.message, outcome=result.outcome,
                                   status_code=503, request=request)
            raise OutcomeError("invalid_grant", result.outcome.message, outcome=result.outcome, request=request)
        request.user = result.user
        return True


def _same_tenant(request, credentials: dict) -> None:
    """A user gets codes only for the applications of their own tenant."""
    application = Application.objects.filter(client_id=credentials.get("client_id")).only("tenant_id").first()
    user = request.user
    if application is None or not user.is_authenticated or user.tenant_id == application.tenant_id:
        return
    raise OAuthToolkitError(
        error=errors.AccessDeniedError(description="This application belongs to another organisation.",
                                       state=credentials.get("state")),
        redirect_uri=credentials.get("redirect_uri"),
    )


class TenantAuthorizationView(AuthorizationView):
    """DOT's authorize endpoint; unauthenticated users go through /login/ (LOGIN_URL) and back."""

    def validate_authorization_request(self, request):
        scopes, credentials = super().validate_authorization_request(request)
        _same_tenant(request, credentials)
        return scopes, credentials

    def create_authorization_response(self, request, scopes, credentials, allow):
        _same_tenant(request, credentials)
        return super().create_authorization_response(request, scopes, credentials, allow)
