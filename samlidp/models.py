"""A tenant's SAML 2.0 identity provider: its signing keys, and the service providers (SPs) registered with it.

A service provider is one of the tenant's applications (``applications.Application``): who may use it (assignment),
whether it needs a second factor and which groups it is told are the application's, decided as for OpenID Connect.
The SAML side of it is the ``ServiceProvider`` row beside it."""

from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError
from django.db import models

from applications.models import Application
from samlidp.endpoints import endpoint_problem
from samlidp.pem import certificate_problem
from tenant.models import Tenant

NAMEID_PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
NAMEID_UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"


def _pairwise_secret() -> str:
    return secrets.token_hex(32)


class SigningKey(models.Model):
    """One RSA key and its self-signed certificate that sign a tenant's assertions and metadata. The private key is
    encrypted at rest (AES-GCM under a key derived from PTA_CA_ENCRYPTION_KEY, bound to the tenant and this row).
    Rotation: a NEXT key is published in the metadata first; promoted, it signs and the old one is retired (left
    in the metadata until the SPs have read it again: ``services/keys.py``)."""

    class State(models.TextChoices):
        NEXT = "next", "Published, not signing yet"
        ACTIVE = "active", "Signing"
        RETIRED = "retired", "Retired"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="saml_signing_keys")
    state = models.CharField(max_length=8, choices=State.choices)
    private_key_encrypted = models.BinaryField(editable=False)
    certificate_pem = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    state_changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant"], condition=models.Q(state="active"),
                                    name="saml_one_active_key_per_tenant"),
            models.UniqueConstraint(fields=["tenant"], condition=models.Q(state="next"),
                                    name="saml_one_next_key_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"SAML signing key {self.pk} of {self.tenant_id} ({self.state})"


class ServiceProvider(models.Model):
    """A SAML service provider of a tenant. Assertions go only to its registered ACS URLs (never to a URL a
    request names that is not one of them); its requests must be signed when ``requests_signed``."""

    class NameIdFormat(models.TextChoices):
        PERSISTENT = "persistent", "Persistent (opaque, pairwise per SP)"
        EMAIL = "email", "E-mail address"
        UPN = "upn", "Unspecified (the user principal name)"

    application = models.OneToOneField(Application, on_delete=models.CASCADE, related_name="saml_sp")
    entity_id = models.CharField("SP entity ID", max_length=1024)
    # One URL a line, in index order (index 0 first): the only places an assertion may be sent.
    acs_urls = models.TextField("assertion consumer service URLs",
                                help_text="One URL a line (HTTP-POST binding); the first is the default.")
    slo_url = models.URLField("single logout URL", max_length=1024, blank=True)
    nameid_format = models.CharField("NameID", max_length=16, choices=NameIdFormat.choices,
                                     default=NameIdFormat.PERSISTENT)
    signing_certificate = models.TextField(
        "SP signing certificate (PEM)", blank=True,
        help_text="Verifies the SP's signed requests; required when requests must be signed.")
    encryption_certificate = models.TextField(
        "SP encryption certificate (PEM)", blank=True,
        help_text="When given, its assertions are encrypted for it: AES-256-GCM, the key by RSA-OAEP (docs/saml.md).")
    requests_signed = models.BooleanField(
        "requests must be signed", default=False,
        help_text="An authentication request without a valid signature of the SP's signing certificate is refused.")
    sign_response = models.BooleanField("sign the whole response too", default=False)
    allow_idp_initiated = models.BooleanField(
        "allow IdP-initiated sign-in", default=False,
        help_text="A link /saml/<organisation>/sso/?sp=<entity ID> signs the user in to the SP unasked.")
    send_groups = models.BooleanField("send the groups attribute", default=False)
    # Keys the persistent NameIDs of this SP (HMAC of the user's subject): pairwise, never shown.
    pairwise_secret = models.CharField(max_length=64, default=_pairwise_secret, editable=False)

    class Meta:
        ordering = ["entity_id"]
        verbose_name = "SAML service provider"

    def __str__(self) -> str:
        return self.entity_id

    @property
    def tenant_id(self):
        return self.application.tenant_id

    def acs_url_list(self) -> list[str]:
        return [line.strip() for line in self.acs_urls.splitlines() if line.strip()]

    def clean(self) -> None:
        """Every problem at once, per field: ACS and SLO URLs https (plain http on loopback only), certificates that
        load, a signing certificate when requests must be signed."""
        problems: dict[str, list[str]] = {}
        urls = self.acs_url_list()
        if not urls:
            problems.setdefault("acs_urls", []).append("At least one assertion consumer service URL.")
        for url in [*urls, *([self.slo_url] if self.slo_url else [])]:
            if problem := endpoint_problem(url):
                problems.setdefault("slo_url" if url == self.slo_url else "acs_urls", []).append(problem)
        for field in ("signing_certificate", "encryption_certificate"):
            text = getattr(self, field)
            if text and (problem := certificate_problem(text)):
                problems.setdefault(field, []).append(problem)
        if self.requests_signed and not self.signing_certificate:
            problems.setdefault("signing_certificate", []).append(
                "Requests must be signed: give the SP's signing certificate.")
        if problems:
            raise ValidationError(problems)
