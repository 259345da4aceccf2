import re
import uuid
from typing import ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from tenant.domain_proof import record_name, record_value, verification_token_new
from tenant.locations import RangeError, ranges_parse, ranges_split

domain_name_validator = RegexValidator(
    r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
    "Enter a lower-case DNS domain name such as corp.example.com.",
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A URL's scheme: "Helpdesk: 555 0100" and "Phone:+1 555 0100" are labels, not schemes.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(?![\s+\d(])")


def helpdesk_contact_validate(value: str) -> None:
    """One short line the sign-in pages show: a link only when it is an http(s) URL, an e-mail address or a phone
    number (signin/helpdesk.py). Any other scheme (javascript:, data:, ftp:) is refused here, so the administrator
    learns at once that it would never be a link."""
    if _CONTROL.search(value):
        raise ValidationError("Enter the contact on one line.")
    scheme = _SCHEME.match(value.strip())
    if scheme and scheme.group(1).lower() not in ("http", "https", "mailto", "tel"):
        raise ValidationError("Enter a phone number, an e-mail address, or a web address starting with https://.")


class Tenant(models.Model):
    class MfaPolicy(models.TextChoices):
        OFF = "off", "Off"
        ALL = "all", "All users"
        PER_USER = "per-user", "Users with MFA enforced"
        UNFAMILIAR = "unfamiliar", "Unfamiliar sign-ins only"
        UNTRUSTED = "untrusted", "Outside trusted locations"

    id = models.UUIDField("ID", primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=63, unique=True)
    pass_through_enabled = models.BooleanField("pass-through enabled", default=True)
    # Cloud smart lockout: below AD's threshold so attackers lock the cloud account, not the AD one.
    lockout_threshold = models.PositiveSmallIntegerField(default=5)
    lockout_duration_seconds = models.PositiveIntegerField("lockout duration (seconds)", default=60)
    mfa_policy = models.CharField("MFA policy", max_length=16, choices=MfaPolicy.choices, default=MfaPolicy.OFF)
    password_grant_enabled = models.BooleanField(default=False)
    # Passkeys only, when a second factor is asked: authenticator-app codes and recovery codes are refused
    # (signin/services/passkeys.py). Asking for it asks for a second factor at every sign-in.
    phishing_resistant_required = models.BooleanField(
        "phishing-resistant factor required", default=False, db_default=False,
        help_text="Every sign-in needs a passkey as its second factor; authenticator-app and recovery codes are "
                  "refused, and users without a passkey enrol one after their current factor.")
    # Each refresh of an OAuth token asks an agent whether the account is still enabled in AD (no password).
    refresh_checks_directory = models.BooleanField(
        "refresh asks the directory", default=False,
        help_text="Each token refresh asks an agent (with a service account) whether the account is still enabled.")
    # What the sign-in pages tell a person who cannot sign in (disabled, locked, expired, …): set by the tenant's
    # administrator, shown escaped (signin/helpdesk.py).
    helpdesk_contact = models.CharField(
        max_length=200, blank=True, validators=[helpdesk_contact_validate],
        help_text="Shown on the sign-in pages when someone can't sign in: a phone number, an e-mail address or a "
                  "web address (https://…).")
    help_text = models.TextField(
        "sign-in help text", max_length=2000, blank=True,
        help_text="Plain text on the sign-in pages' \"Can't access your account?\" page. Empty: a generic text "
                  "with the helpdesk contact.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Domain(models.Model):
    """A UPN suffix of a tenant. Once verified (DNS TXT proof, or the operator) it routes sign-ins to that
    tenant; unverified, it routes nothing. Several tenants may claim a name, only one may hold it verified."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="domains")
    name = models.CharField(max_length=253, validators=[domain_name_validator])
    verified = models.BooleanField(default=False)
    verified_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The value the tenant publishes in DNS (tenant/domain_proof.py); random, so only this claim can prove it.
    verification_token = models.CharField(max_length=64, default=verification_token_new, editable=False)
    # The last look-up of its TXT record (tenant.services.domain_verify): when, and what it found, for its page.
    last_check_at = models.DateTimeField("last checked", null=True, blank=True, editable=False)
    last_check_result = models.TextField("last check's result", blank=True, default="", editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="domain_unique_name_per_tenant",
                                    violation_error_message="This tenant already has this domain."),
            # The database's last word on routing: one tenant per verified name, even under concurrent verifies.
            models.UniqueConstraint(fields=["name"], condition=models.Q(verified=True),
                                    name="domain_unique_verified_name",
                                    violation_error_message="Another tenant has already verified this domain."),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def record_name(self) -> str:
        return record_name(self.name)

    @property
    def record_value(self) -> str:
        return record_value(self.verification_token)

    def verified_elsewhere(self) -> bool:
        return Domain.objects.filter(name=self.name, verified=True).exclude(tenant_id=self.tenant_id).exists()

    def clean(self) -> None:
        # Errors are the form's, not a field's: the admin shows `name` and `tenant` read-only or not at all.
        self.name = (self.name or "").strip().lower()
        self.verified_at = (self.verified_at or timezone.now()) if self.verified else None
        if not self._state.adding:
            # A verification belongs to its name: renaming would carry it to a name nobody proved.
            stored = Domain.objects.filter(pk=self.pk).values_list("name", flat=True).first()
            if stored is not None and stored != self.name:
                raise ValidationError({NON_FIELD_ERRORS: "A domain cannot be renamed; add the new name as a new "
                                                         "domain."})
        if self.tenant_id is None:
            return
        if Domain.objects.filter(tenant_id=self.tenant_id, name=self.name).exclude(pk=self.pk).exists():
            raise ValidationError({NON_FIELD_ERRORS: f"This tenant already has the domain {self.name}."})
        if (self._state.adding or self.verified) and self.verified_elsewhere():
            raise ValidationError({NON_FIELD_ERRORS: f"{self.name} is already verified by another tenant; it "
                                                     "cannot be added or verified here."})


class Location(models.Model):
    """A named set of the tenant's networks (IPv4 and IPv6 ranges), trusted or blocked. A sign-in from a blocked
    location is refused before any agent is asked or any guess counted; a trusted one needs no second factor under
    the "untrusted" MFA policy and counts as familiar under "unfamiliar" (signin/services/attempt.py, mfa.py)."""

    class Kind(models.TextChoices):
        TRUSTED = "trusted", "Trusted"
        BLOCKED = "blocked", "Blocked"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="locations")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    ranges = models.TextField(help_text="IPv4 and IPv6 networks, one a line (203.0.113.0/24, 2001:db8:1::/48); "
                                        "a single address is a /32 or /128.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="location_unique_name_per_tenant",
                                    violation_error_message="This tenant already has a location of this name."),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        self.name = (self.name or "").strip()
        try:
            networks = ranges_parse(ranges_split(self.ranges or ""))
        except RangeError as exc:
            raise ValidationError({"ranges": str(exc)}) from None
        self.ranges = "\n".join(str(network) for network in networks)  # one canonical form, one a line
        if self.tenant_id is not None and \
                Location.objects.filter(tenant_id=self.tenant_id, name=self.name).exclude(pk=self.pk).exists():
            raise ValidationError({NON_FIELD_ERRORS: f"This tenant already has a location named {self.name}."})


class GroupsState(models.TextChoices):
    """Where a user's stored directory groups come from. Only CURRENT and TRUNCATED hold groups (TRUNCATED: the
    agent sent those that fit its frame, so the list is incomplete); the others hold none, and say why."""

    NOT_READ = "not_read", "Not read yet: the user has not signed in since groups are read"
    CURRENT = "current", "As the directory gave them at the user's last sign-in"
    TRUNCATED = "truncated", "Incomplete: the user is in more groups than an agent's answer can carry"
    AGENT_UNSUPPORTED = "unsupported", ("Absent: the agent that answered the last sign-in does not read groups "
                                        "(an older pta-agent, or directory.groups = false)")
    FAILED = "failed", "Absent: the agent could not read them at the last sign-in (see the agent's log)"


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, upn: str, password: str | None = None, **fields):
        user = self.model(upn=upn.strip().lower(), **fields)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.full_clean(exclude=["password"])
        user.save(using=self._db)
        return user

    def create_superuser(self, upn: str, password: str | None = None, **fields):
        fields.update(is_staff=True, is_superuser=True, tenant=None, source=User.Source.CLOUD)
        return self.create_user(upn, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    class Source(models.TextChoices):
        CLOUD = "cloud", "Cloud only"
        ON_PREMISES = "on-premises", "On-premises (pass-through)"

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="users", null=True, blank=True,
        help_text="Empty for platform administrators.",
    )
    upn = models.CharField("user principal name", max_length=320, unique=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.ON_PREMISES)
    # objectGUID from AD: the account's identity survives a rename of its UPN.
    immutable_id = models.CharField("immutable ID (objectGUID)", max_length=64, blank=True, default="", editable=False)
    display_name = models.CharField(max_length=256, blank=True, default="")
    email = models.EmailField(blank=True, default="")
    # The mail as the directory gave it when the agent that answered serves its domain: OpenID Connect's
    # email_verified holds only while `email` is still this address (an administrator's edit is not vouched for).
    directory_verified_email = models.EmailField("e-mail as the directory gave it", blank=True, default="",
                                                 editable=False)
    is_staff = models.BooleanField("tenant administrator", default=False)
    is_active = models.BooleanField("active", default=True)
    mfa_enforced = models.BooleanField("MFA enforced", default=False)
    date_joined = models.DateTimeField(default=timezone.now)
    # OpenID Connect's `sub`: opaque, never reused, never moved to another person (a new person is a new user).
    subject = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Why the directory made this user inactive (account_disabled, account_expired, account_locked), or
    # "departed" (AD names another person by the UPN now); empty when active or deactivated by an administrator.
    directory_state = models.CharField(max_length=32, blank=True, default="", editable=False)
    # Whether the stored directory groups (DirectoryGroupMembership) are the user's current ones: see
    # GroupsState. Set at each sign-in (and account-state refresh) from what the answering agent reported.
    groups_state = models.CharField("directory groups", max_length=16, choices=GroupsState.choices,
                                    default=GroupsState.NOT_READ, editable=False)

    objects = UserManager()

    USERNAME_FIELD = "upn"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ["upn"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "immutable_id"],
                condition=~models.Q(immutable_id=""),
                name="user_unique_immutable_id_per_tenant",
            )
        ]

    def __str__(self) -> str:
        return self.upn

    def clean(self) -> None:
        self.upn = (self.upn or "").strip().lower()
        if not self.is_superuser and self.tenant_id is None:
            raise ValidationError({"tenant": "Every user but a platform administrator belongs to a tenant."})
        # A tenant's users live in its own verified domains: a UPN elsewhere would squat another's account.
        domain = self.upn.rpartition("@")[2]
        if self.tenant_id is not None and not Domain.objects.filter(tenant_id=self.tenant_id, name=domain,
                                                                     verified=True).exists():
            raise ValidationError({"upn": f"The UPN must be in one of the organisation's verified domains, "
                                          f"not {domain or 'an empty domain'}."})

    def get_full_name(self) -> str:
        return self.display_name or self.upn

    def get_short_name(self) -> str:
        return self.display_name or self.upn.split("@")[0]


class DirectoryGroup(models.Model):
    """A group of a tenant's Active Directory, as an agent last reported it: known by its objectGUID (a rename or a
    move keeps it), with its sAMAccountName and distinguished name of the last report."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="directory_groups")
    object_guid = models.CharField("objectGUID", max_length=64)
    name = models.CharField("sAMAccountName", max_length=256)
    dn = models.CharField("distinguished name", max_length=2048)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "object_guid"], name="directory_group_unique_guid")]

    def __str__(self) -> str:
        return self.name or self.object_guid


class DirectoryGroupMembership(models.Model):
    """User U is in group G, directly or through nested groups (AD's tokenGroups, as of U's last sign-in): one
    row per (user, group), so "is U a member of G" is one indexed lookup."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="group_memberships")
    group = models.ForeignKey(DirectoryGroup, on_delete=models.CASCADE, related_name="memberships")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "group"], name="directory_group_membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.group}"
