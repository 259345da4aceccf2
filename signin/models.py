import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django_otp.models import Device, TimestampMixin
from oauth2_provider.settings import oauth2_settings

from signin.outcomes import Outcome
from tenant.models import Location, Tenant


class SignInEvent(models.Model):
    """One sign-in attempt, whatever its end. Never the password, nor anything derived from it."""

    class MfaDecision(models.TextChoices):
        NOT_EVALUATED = "", "Not evaluated"
        NOT_REQUIRED = "not_required", "Not required"
        REQUIRED = "required", "Required"

    class SealedBy(models.TextChoices):
        NONE = "", "Not sealed (no agent asked)"
        BROWSER = "browser", "The browser (the portal never held the password)"
        PORTAL = "portal", "The portal (no JavaScript, or the password grant)"

    id = models.BigAutoField("ID", primary_key=True)
    created_at = models.DateTimeField("time", default=timezone.now, db_index=True)
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    username = models.CharField("username as typed", max_length=320)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="sign_ins")
    ip_address = models.GenericIPAddressField("IP address", null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True, default="")
    agent = models.ForeignKey("agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    request_id = models.UUIDField("request ID", default=uuid.uuid4, editable=False, db_index=True)
    outcome = models.CharField(max_length=32, choices=[(o.value, o.value) for o in Outcome], db_index=True)
    ad_subcode = models.CharField("AD sub-code", max_length=16, blank=True, default="")
    familiar = models.BooleanField(default=False, help_text="From an address that signed this user in before.")
    total_ms = models.FloatField("total time (ms)", null=True, blank=True)
    agent_ms = models.FloatField("agent time (ms)", null=True, blank=True)
    queued_ms = models.FloatField("queued (ms)", null=True, blank=True,
                                  help_text="Waited for an agent slot (every agent busy).")
    mfa_decision = models.CharField("MFA decision", max_length=16, choices=MfaDecision.choices, blank=True, default="")
    mfa_reason = models.CharField("MFA reason", max_length=64, blank=True, default="")
    mfa_result = models.CharField("MFA result", max_length=32, blank=True, default="")
    # The second factor that completed the sign-in (passkey, totp, recovery_code; blank: none).
    mfa_factor = models.CharField("MFA factor", max_length=16, blank=True, default="", db_default="")
    channel = models.CharField(max_length=16, default="web", help_text="web, admin or oauth")
    # Access by network: the tenant's named location the client's address was in, as it was then (blank: none).
    location = models.CharField(max_length=100, blank=True, default="",
                                help_text="The tenant's named location the client's address was in.")
    location_kind = models.CharField("location kind", max_length=16, choices=Location.Kind.choices, blank=True,
                                     default="")
    # The application the sign-in was for (the authorize request it came from, or the password grant's client).
    application = models.ForeignKey("applications.Application", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+",
                                    help_text="The application the sign-in was for, when known.")
    password_change = models.BooleanField(
        default=False, help_text="An attempt to change an expired or must-change password on the sign-in page "
        "(outcome success or mfa_required: it was changed).")
    detail = models.CharField(max_length=32, blank=True, default="",
                              help_text="Why the directory refused a new password (e.g. history, complexity).")
    sealed_by = models.CharField("password sealed by", max_length=8, choices=SealedBy.choices, blank=True,
                                 default="", db_default="",
                                 help_text="Who sealed the password for the agent: the browser or the portal.")

    class Meta:
        verbose_name = "sign-in record"
        verbose_name_plural = "sign-in records"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.username} {self.outcome} {self.created_at:%Y-%m-%d %H:%M:%S}"


class IdTokenAuthTime(models.Model):
    """When and how the sign-in behind an ID token completed (its ``auth_time`` and ``amr``), so that an ID token
    issued on refresh repeats them (OpenID Connect Core 12.2). DOT's IDToken has no such fields; this row goes
    with it."""

    id_token = models.OneToOneField(oauth2_settings.ID_TOKEN_MODEL, on_delete=models.CASCADE, primary_key=True,
                                    related_name="+")
    auth_time = models.DateTimeField()
    # RFC 8176 methods (["pwd", "hwk", "mfa"]…); null for a row of a release that did not keep them.
    amr = models.JSONField("authentication methods (amr)", null=True, blank=True, default=None)

    def __str__(self) -> str:
        return f"ID token {self.id_token_id} signed in at {self.auth_time:%Y-%m-%d %H:%M:%S}"


class RecoveryCode(models.Model):
    """One unused recovery code of a user's recovery-code device (django-otp's StaticDevice, whose throttling
    and last use are kept), as a salted keyed hash (signin/recovery_codes.py): django-otp's StaticToken keeps
    the code itself, and is not used. Deleted when used."""

    device = models.ForeignKey("otp_static.StaticDevice", on_delete=models.CASCADE, related_name="recovery_codes")
    digest = models.CharField(max_length=128, editable=False)

    def __str__(self) -> str:
        return f"recovery code #{self.pk}"


class PasskeyDevice(TimestampMixin, Device):
    """A passkey (a WebAuthn public-key credential) as a django-otp device: its user, the name its user gave it,
    created and last used (TimestampMixin), and the persistent id that marks a verified session. The ceremonies are
    py_webauthn's, called by signin/services/passkeys.py; verify_token is not used (an assertion is no token)."""

    credential_id = models.CharField("credential ID", max_length=1400, unique=True, editable=False,
                                     help_text="base64url, as the authenticator made it")
    public_key = models.BinaryField(editable=False, help_text="COSE_Key")
    # The authenticator's signature counter as last seen: an assertion that does not raise it (from a non-zero
    # start) comes from a copy of the key.
    sign_count = models.PositiveBigIntegerField(default=0, editable=False)
    # Synced across the user's devices (a multi-device passkey: RFC 8176 swk) or bound to one authenticator (hwk).
    backup_eligible = models.BooleanField(default=False, editable=False)
    transports = models.CharField(max_length=200, blank=True, default="", editable=False)

    class Meta:
        verbose_name = "passkey"
        verbose_name_plural = "passkeys"

    def verify_token(self, token) -> bool:  # django-otp's token API: a passkey has no token
        return False
