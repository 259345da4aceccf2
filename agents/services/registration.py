"""Registration tokens, agent registration, renewal and revocation."""

import datetime
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import pta_protocol as protocol
from cryptography.hazmat.primitives import serialization
from django.db import transaction
from django.utils import timezone

from agents.models import Agent, RegistrationToken
from agents.services.authority import authority_get_or_create, certificate_issue, csr_load
from tenant.models import Domain, Tenant

TOKEN_PREFIX = "pta_"
DEFAULT_TOKEN_TTL_SECONDS = 3600
MAX_TOKEN_TTL_SECONDS = 7 * 24 * 3600


class RegistrationError(Exception):
    """Registration refused; the message is safe to show the agent's operator."""


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()


@transaction.atomic
def registration_token_issue(
    *, tenant: Tenant, domains: Iterable[Domain] = (), ttl_seconds: int = DEFAULT_TOKEN_TTL_SECONDS, issued_by=None
) -> tuple[RegistrationToken, str]:
    """A new one-time token; the raw value is returned once and only its hash is kept."""
    if not 60 <= ttl_seconds <= MAX_TOKEN_TTL_SECONDS:
        raise ValueError(f"The token lifetime must be between 60 and {MAX_TOKEN_TTL_SECONDS} seconds.")
    domains = list(domains)
    foreign = [d.name for d in domains if d.tenant_id != tenant.pk]
    if foreign:
        raise ValueError(f"Domain(s) not of tenant {tenant.slug}: {', '.join(foreign)}")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = RegistrationToken(
        tenant=tenant, token_hash=token_hash(raw), hint=raw[-4:],
        expires_at=timezone.now() + datetime.timedelta(seconds=ttl_seconds), issued_by=issued_by,
    )
    token.full_clean()
    token.save()
    token.domains.set(domains)
    return token, raw


@dataclass(frozen=True)
class Registration:
    agent: Agent
    certificate_pem: str
    ca_certificate_pem: str
    signing_public_key_pem: str


def agent_register(*, token: str, csr_pem: str, name: str = "", hostname: str = "", version: str = "") -> Registration:
    """Consume a token (exactly once, even under concurrent use) and issue the agent's certificate."""
    csr = csr_load(csr_pem)  # CertificateRequestError before the token is touched
    candidate = RegistrationToken.objects.filter(token_hash=token_hash(token)).select_related("tenant").first()
    if candidate is None or not candidate.usable:
        raise RegistrationError("The registration token is unknown, expired or already used.")
    with transaction.atomic():
        now = timezone.now()
        # The conditional UPDATE is the lock: of two concurrent uses exactly one changes the row.
        won = RegistrationToken.objects.filter(pk=candidate.pk, used_at__isnull=True, expires_at__gt=now).update(
            used_at=now)
        if won != 1:
            raise RegistrationError("The registration token is unknown, expired or already used.")
        tenant = candidate.tenant
        domains = list(candidate.domains.all()) or list(tenant.domains.filter(verified=True))
        agent = Agent(tenant=tenant, name=(name or hostname or "agent")[:200], hostname=hostname[:253],
                      version=version[:64])
        certificate = certificate_issue(tenant=tenant, agent_id=agent.pk, agent_name=agent.name, csr=csr)
        _agent_set_certificate(agent, certificate)
        agent.full_clean()
        agent.save()
        agent.domains.set(domains)
        RegistrationToken.objects.filter(pk=candidate.pk).update(used_by=agent)
    authority = authority_get_or_create(tenant=tenant)
    return Registration(
        agent=agent,
        certificate_pem=agent.certificate_pem,
        ca_certificate_pem=authority.ca_certificate_pem,
        signing_public_key_pem=authority.signing_public_key_pem,
    )


def _agent_set_certificate(agent: Agent, certificate) -> None:
    agent.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    agent.certificate_serial = format(certificate.serial_number, "x")
    agent.key_fingerprint = protocol.key_fingerprint(certificate.public_key())
    agent.certificate_not_after = certificate.not_valid_after_utc


def registration_tokens_purge(*, older_than: datetime.timedelta = datetime.timedelta(days=7)) -> int:
    """Delete tokens that were used or expired more than ``older_than`` ago; returns how many."""
    cutoff = timezone.now() - older_than
    stale = RegistrationToken.objects.filter(expires_at__lt=cutoff) | RegistrationToken.objects.filter(
        used_at__lt=cutoff)
    deleted, _ = stale.delete()
    return deleted
