from django.core.exceptions import ValidationError
from django.db import models
from oauth2_provider.models import AbstractApplication

from applications.uris import loopback_port_registered, redirect_uri_problem
from tenant.models import Tenant


class Application(AbstractApplication):
    """An application that signs its users in through the portal (OpenID Connect), owned by one tenant: only
    that tenant's users get codes or tokens for it. DOT's swappable OAUTH2_PROVIDER_APPLICATION_MODEL; it lives
    in an app of its own because DOT's migrations depend on this app's first migration."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="applications")
    # A second factor for this application whatever the tenant's MFA policy (signin/services/mfa.py).
    require_mfa = models.BooleanField(
        "require MFA", default=False,
        help_text="Users need a second factor in the sign-in that gets them into this application, whatever the "
                  "organisation's MFA policy.")

    class Meta(AbstractApplication.Meta):
        swappable = "OAUTH2_PROVIDER_APPLICATION_MODEL"
        ordering = ["name"]

    def clean(self) -> None:
        """DOT's checks, and plain http only on loopback (``applications/uris.py``), per field, all at once. The
        password grant is for confidential clients only, and ID tokens are signed with RS256 only (discovery)."""
        problems: dict[str, list[ValidationError]] = {}
        if self.authorization_grant_type == self.GRANT_PASSWORD and self.client_type == self.CLIENT_PUBLIC:
            problems["client_type"] = [ValidationError("The password grant is for confidential clients only: a public "
                                                       "client cannot keep a secret.")]
        if self.algorithm != self.RS256_ALGORITHM:
            problems["algorithm"] = [ValidationError("ID tokens are signed with RS256 only.")]
        for field in ("redirect_uris", "post_logout_redirect_uris"):
            for uri in getattr(self, field).split():
                if problem := redirect_uri_problem(uri):
                    problems.setdefault(field, []).append(ValidationError(problem))
        try:
            super().clean()
        except ValidationError as exc:
            for field, errors in exc.error_dict.items():
                problems.setdefault(field, []).extend(errors)
        if problems:
            raise ValidationError(problems)

    def redirect_uri_allowed(self, uri: str) -> bool:
        # A confidential client's loopback callback matches its registered port only (DOT allows any port).
        return super().redirect_uri_allowed(uri) and (
            self.client_type != self.CLIENT_CONFIDENTIAL or loopback_port_registered(uri, self.redirect_uris.split()))

    def post_logout_redirect_uri_allowed(self, uri: str) -> bool:
        return super().post_logout_redirect_uri_allowed(uri) and (
            self.client_type != self.CLIENT_CONFIDENTIAL
            or loopback_port_registered(uri, self.post_logout_redirect_uris.split()))
