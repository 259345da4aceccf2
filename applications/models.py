from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse
from oauth2_provider.models import AbstractApplication

from applications.uris import loopback_port_registered, redirect_uri_problem
from tenant.models import DirectoryGroup, Tenant, User


class Application(AbstractApplication):
    """An application that signs its users in through the portal (OpenID Connect), owned by one tenant: only
    that tenant's users get codes or tokens for it. DOT's swappable OAUTH2_PROVIDER_APPLICATION_MODEL; it lives
    in an app of its own because DOT's migrations depend on this app's first migration."""

    # What the portal offers (docs/oidc.md, discovery): the code flow, and the password grant for legacy clients
    # (tenant-gated). Implicit, hybrid, client credentials and the device flow are not; nor HS256 ID tokens.
    OFFERED_GRANT_TYPES = (
        (AbstractApplication.GRANT_AUTHORIZATION_CODE, "Authorization code (with PKCE)"),
        (AbstractApplication.GRANT_PASSWORD, "Resource owner password (legacy clients)"),
    )
    OFFERED_ALGORITHMS = ((AbstractApplication.RS256_ALGORITHM, "RS256 (RSA with SHA-256)"),)

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="applications")
    # When an administrator or the operator last replaced the client secret (None: the one issued at creation).
    secret_rotated_at = models.DateTimeField("client secret last rotated", null=True, blank=True, editable=False)
    # A second factor for this application whatever the tenant's MFA policy (signin/services/mfa.py).
    require_mfa = models.BooleanField(
        "require MFA", default=False,
        help_text="Users need a second factor in the sign-in that gets them into this application, whatever the "
                  "organisation's MFA policy.")
    # A passkey for this application's sign-ins, whatever the tenant's settings (signin/services/passkeys.py).
    phishing_resistant_required = models.BooleanField(
        "phishing-resistant factor required", default=False, db_default=False,
        help_text="The sign-in that gets users into this application needs a passkey: authenticator-app and "
                  "recovery codes are refused.")

    # Who may use it (docs/oidc.md, "Who may use an application"): with assignment required, only the users
    # assigned directly and the members (transitive, as of their last sign-in) of its assigned groups get a code or
    # tokens for it; anyone else gets app_not_assigned. Groups and users are the application's tenant's only
    # (applications/services.py checks; the admin lists no others).
    assignment_required = models.BooleanField(
        "assignment required", default=False,
        help_text="Only the users and members of the groups assigned below may sign in to this application.")
    assigned_groups = models.ManyToManyField(
        DirectoryGroup, blank=True, related_name="applications", verbose_name="assigned groups",
        help_text="Directory groups seen at sign-ins; their members, directly or through nested groups, may use it.")
    assigned_users = models.ManyToManyField(
        User, blank=True, related_name="assigned_applications", verbose_name="assigned users",
        help_text="Users who may use it whatever their groups.")

    # The `groups` claim (scope "groups"; docs/oidc.md, "Groups"): which of the user's directory groups, named how,
    # and how many at most before the claim gives way to the overage marker.
    class GroupsClaim(models.TextChoices):
        ALL = "all", "All the user's groups"
        ASSIGNED = "assigned", "Only the user's groups assigned to the application"

    class GroupsFormat(models.TextChoices):
        NAME = "name", "Names (sAMAccountName)"
        ID = "id", "objectGUIDs"

    groups_claim = models.CharField("groups in tokens", max_length=16, choices=GroupsClaim.choices,
                                    default=GroupsClaim.ALL)
    groups_claim_format = models.CharField("groups named by", max_length=8, choices=GroupsFormat.choices,
                                           default=GroupsFormat.NAME)
    groups_claim_limit = models.PositiveSmallIntegerField(
        "most groups in a token", default=200, validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="A user in more groups gets groups_overage: true instead of the list (tokens must fit a header).")

    class Meta(AbstractApplication.Meta):
        swappable = "OAUTH2_PROVIDER_APPLICATION_MODEL"
        ordering = ["name"]

    def clean(self) -> None:
        """DOT's checks, and plain http only on loopback (``applications/uris.py``), per field, all at once. Only
        the grants the portal offers; the password grant is for confidential clients only; ID tokens are signed
        with RS256 only (discovery); a client secret is kept hashed only."""
        problems: dict[str, list[ValidationError]] = {}
        offered = dict(self.OFFERED_GRANT_TYPES)
        if self.authorization_grant_type not in offered:
            problems["authorization_grant_type"] = [ValidationError(
                f"Not offered by this portal: {self.authorization_grant_type or 'none'}. Choose one of: "
                f"{', '.join(offered.values())}.")]
        if not self.hash_client_secret:
            # Not under the field: the console's form has no such field (a field's error there was a 500). Only an
            # application saved in clear since migration 0004 (which hashed those before it) can be one.
            problems[NON_FIELD_ERRORS] = [ValidationError(
                "This application's client secret is stored in clear, and the portal keeps client secrets hashed "
                "only. Rotate the client secret (the link under Client secret), then save again.", code="clear")]
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

    def get_absolute_url(self) -> str:
        # DOT's names its own application-management views, which the portal does not serve: the admin's "view on
        # site" shortcut answered 500. The console's page for the application instead.
        return reverse("admin:applications_application_change", args=[self.pk])

    def redirect_uri_allowed(self, uri: str) -> bool:
        # A confidential client's loopback callback matches its registered port only (DOT allows any port).
        return super().redirect_uri_allowed(uri) and (
            self.client_type != self.CLIENT_CONFIDENTIAL or loopback_port_registered(uri, self.redirect_uris.split()))

    def post_logout_redirect_uri_allowed(self, uri: str) -> bool:
        return super().post_logout_redirect_uri_allowed(uri) and (
            self.client_type != self.CLIENT_CONFIDENTIAL
            or loopback_port_registered(uri, self.post_logout_redirect_uris.split()))


class PendingGroupAssignment(models.Model):
    """A group an administrator assigned by name (sAMAccountName) before any sign-in reported it: the first sign-in
    in the application's tenant that reports a group of that name (AD compares it case-insensitively) turns this
    into an assigned group (applications/services.py, application_pending_groups_resolve)."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="pending_groups")
    name = models.CharField("group name (sAMAccountName)", max_length=256,
                            help_text="Matched at the next sign-in that reports a group of this name.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(Lower("name"), "application", name="pending_group_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} (pending)"
