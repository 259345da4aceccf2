import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from tenant.models import Domain, Tenant


class TenantAuthority(models.Model):
    """A tenant's certificate authority and request-signing key. Private keys are encrypted at rest."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="authority")
    ca_certificate_pem = models.TextField()
    ca_private_key_encrypted = models.BinaryField(editable=False)
    # Ed25519: the portal signs every request it sends to this tenant's agents.
    signing_public_key_pem = models.TextField()
    signing_private_key_encrypted = models.BinaryField(editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name_plural = "tenant authorities"

    def __str__(self) -> str:
        return f"CA of {self.tenant}"


class Agent(models.Model):
    # Computed, not stored: agents.selectors.agent_status (presence, revocation, certificate expiry).
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        INACTIVE = "inactive", "Inactive"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"

    id = models.UUIDField("ID", primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="agents")
    domains = models.ManyToManyField(Domain, related_name="agents")
    name = models.CharField(max_length=200)
    hostname = models.CharField(max_length=253, blank=True, default="")
    version = models.CharField(max_length=64, blank=True, default="")
    certificate_pem = models.TextField("certificate (PEM)", editable=False)
    certificate_serial = models.CharField(max_length=64, editable=False)
    # SHA-256 of the agent's public key (SubjectPublicKeyInfo DER): the key id in every sealed request.
    key_fingerprint = models.CharField(max_length=64, db_index=True, editable=False)
    certificate_not_after = models.DateTimeField("certificate valid until", editable=False)
    registered_at = models.DateTimeField(default=timezone.now, editable=False)
    last_seen = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        editable=False,
    )

    class Meta:
        ordering = ["tenant__name", "name"]

    def __str__(self) -> str:
        return self.name


class RegistrationToken(models.Model):
    """A one-time, expiring token that lets one agent register. Only its SHA-256 is stored."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="registration_tokens")
    domains = models.ManyToManyField(Domain, related_name="+", blank=True,
                                     help_text="Empty: every domain of the tenant.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(max_length=8, editable=False, help_text="The last characters of the token.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        editable=False,
    )
    used_at = models.DateTimeField(null=True, blank=True, editable=False)
    used_by = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"token …{self.hint}"

    @property
    def usable(self) -> bool:
        return self.used_at is None and self.expires_at > timezone.now()
