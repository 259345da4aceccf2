"""An agent's life after registration: authenticating its connection, renewal, last seen, revocation."""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import pta_protocol as protocol
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from django.db import transaction
from django.utils import timezone

from agents.handoff.messages import CloseConnection, NodeMessage, RefreshRights, agent_group
from agents.models import Agent
from agents.presence import presence_registry
from agents.services.authority import (
    RENEWAL_WINDOW_DAYS,
    CertificateRequestError,
    certificate_issue,
    certificate_verify,
    csr_load,
)
from agents.services.registration import _agent_set_certificate

logger = logging.getLogger(__name__)
CloseCode = protocol.CloseCode


class ConnectionRefused(Exception):
    """The hello does not authenticate an agent; ``code`` is the close code to send."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class RenewalRefused(Exception):
    """A renewal the portal will not perform; ``code`` goes into the error frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AgentIdentity:
    """What a connection knows about its agent after the handshake: enough to serve without the database."""

    agent_id: str
    tenant_id: str
    name: str
    domains: tuple[str, ...]
    key_fingerprint: str
    not_after: datetime.datetime
    renewal_due: bool


def renewal_due(*, not_after: datetime.datetime, now: datetime.datetime | None = None) -> bool:
    """Inside the last RENEWAL_WINDOW_DAYS of the certificate's life."""
    now = now or timezone.now()
    return not_after - now <= datetime.timedelta(days=RENEWAL_WINDOW_DAYS)


def agent_authenticate(*, certificate_pem: str, nonce: str, signature: str, hostname: str = "",
                       version: str = "") -> AgentIdentity:
    """Check a hello: the agent's CURRENT certificate, issued by its tenant's CA, and the nonce signed by its key.

    Proof of possession is checked before revocation and expiry are told, so only the key holder learns them.
    """
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode("ascii"))
        public_key = certificate.public_key()
    except (ValueError, UnicodeEncodeError, TypeError):
        raise ConnectionRefused(CloseCode.UNKNOWN_CERTIFICATE, "certificate cannot be read") from None
    if not isinstance(public_key, rsa.RSAPublicKey):  # the tenants' CAs certify agents' RSA keys only
        raise ConnectionRefused(CloseCode.UNKNOWN_CERTIFICATE, "not an RSA key")
    fingerprint = protocol.key_fingerprint(public_key)
    agent = Agent.objects.filter(key_fingerprint=fingerprint).select_related("tenant").first()
    if agent is None:  # never registered, or a key replaced by renewal
        raise ConnectionRefused(CloseCode.UNKNOWN_CERTIFICATE, "no agent has this key")
    if format(certificate.serial_number, "x") != agent.certificate_serial:
        raise ConnectionRefused(CloseCode.UNKNOWN_CERTIFICATE, "not the agent's current certificate")
    if not certificate_verify(tenant_id=agent.tenant_id, certificate=certificate):
        raise ConnectionRefused(CloseCode.UNKNOWN_CERTIFICATE, "not issued by the tenant's CA")
    if not protocol.verify_challenge(public_key, nonce, signature):
        raise ConnectionRefused(CloseCode.BAD_SIGNATURE, "challenge signature does not verify")
    if agent.revoked_at is not None:
        raise ConnectionRefused(CloseCode.REVOKED, "agent revoked")
    now = timezone.now()
    if agent.certificate_not_after <= now or certificate.not_valid_after_utc <= now:
        raise ConnectionRefused(CloseCode.CERTIFICATE_EXPIRED, "certificate expired")
    Agent.objects.filter(pk=agent.pk).update(last_seen=now, hostname=hostname[:253] or agent.hostname,
                                             version=version[:64] or agent.version)
    return AgentIdentity(
        agent_id=str(agent.pk),
        tenant_id=str(agent.tenant_id),
        name=agent.name,
        domains=_served_domains(agent.pk),
        key_fingerprint=fingerprint,
        not_after=agent.certificate_not_after,
        renewal_due=renewal_due(not_after=agent.certificate_not_after, now=now),
    )


def agent_renew(*, agent: Agent, csr_pem: str, signature: str) -> Agent:
    """Issue a certificate for the agent's new key. The CSR must be signed with the CURRENT key; from the
    moment this commits the old key no longer authenticates (the agent row names only the new one)."""
    with transaction.atomic():
        agent = Agent.objects.select_for_update().select_related("tenant").get(pk=agent.pk)
        if agent.revoked_at is not None:
            raise RenewalRefused("revoked", "The agent is revoked.")
        current_key = x509.load_pem_x509_certificate(agent.certificate_pem.encode()).public_key()
        signed = isinstance(current_key, rsa.RSAPublicKey) and protocol.verify_renewal(current_key, csr_pem, signature)
        if not signed:
            raise RenewalRefused("bad_signature", "The renewal is not signed with the agent's current key.")
        try:
            csr = csr_load(csr_pem)
        except CertificateRequestError as exc:
            raise RenewalRefused("bad_csr", str(exc)) from None
        if csr.public_key() == current_key:
            raise RenewalRefused("bad_csr", "Renewal needs a new key pair.")
        certificate = certificate_issue(tenant=agent.tenant, agent_id=agent.pk, agent_name=agent.name, csr=csr)
        _agent_set_certificate(agent, certificate)
        agent.full_clean()
        agent.save(update_fields=["certificate_pem", "certificate_serial", "key_fingerprint",
                                  "certificate_not_after"])
    logger.info("agent %s renewed its certificate (serial %s)", agent.pk, agent.certificate_serial)
    return agent


def agent_last_seen_touch(*, agent_ids: Iterable[str | uuid.UUID], seen_at: datetime.datetime | None = None) -> int:
    """One UPDATE for all agents that beat since the last write (called at most every PTA_LAST_SEEN_SECONDS)."""
    agent_ids = list(agent_ids)
    if not agent_ids:
        return 0
    return Agent.objects.filter(pk__in=agent_ids).update(last_seen=seen_at or timezone.now())


def _served_domains(agent_id) -> tuple[str, ...]:
    """What an agent may be sent: its domains that its tenant has verified (an unverified one routes nothing)."""
    return tuple(sorted(Agent.domains.through.objects.filter(agent_id=agent_id, domain__verified=True)
                        .values_list("domain__name", flat=True)))


def agents_current(*, agent_ids: Iterable[str | uuid.UUID]) -> dict[str, CloseCode | tuple[str, ...]]:
    """For each of these connected agents, as the database says now: the close code it must get (revoked,
    deleted, expired), or the domains it serves."""
    ids = [str(a) for a in agent_ids]
    now = timezone.now()
    rows = {str(pk): (revoked_at, not_after) for pk, revoked_at, not_after in
            Agent.objects.filter(pk__in=ids).values_list("pk", "revoked_at", "certificate_not_after")}
    served: dict[str, list[str]] = {}
    for served_id, name in Agent.domains.through.objects.filter(agent_id__in=list(rows), domain__verified=True) \
            .values_list("agent_id", "domain__name"):
        served.setdefault(str(served_id), []).append(name)
    current: dict[str, CloseCode | tuple[str, ...]] = {}
    for agent_id in ids:
        key = str(uuid.UUID(agent_id))
        if key not in rows or rows[key][0] is not None:
            current[agent_id] = CloseCode.REVOKED  # a deleted agent is as gone as a revoked one
        elif rows[key][1] <= now:
            current[agent_id] = CloseCode.CERTIFICATE_EXPIRED
        else:
            current[agent_id] = tuple(sorted(served.get(key, ())))
    return current


def agent_rights_changed(*, agent_ids: Iterable[str | uuid.UUID]) -> None:
    """An agent's domains changed (edited, a domain deleted or unverified): its live connection, on whichever
    node, re-reads them now. Call inside the transaction that changed them; the broadcast goes on commit."""
    targets = [str(a) for a in agent_ids]

    def broadcast() -> None:
        for agent_id in targets:
            _group_send(agent_id=agent_id, message=RefreshRights())

    transaction.on_commit(broadcast, robust=True)


def agents_serving(*, domain_ids: Iterable[int]) -> list[str]:
    """The agents whose rights include these domains (read before a domain is deleted or its proof changes)."""
    return [str(a) for a in Agent.domains.through.objects.filter(domain_id__in=list(domain_ids))
            .values_list("agent_id", flat=True).distinct()]


@transaction.atomic
def agent_delete(*, agent: Agent, by=None) -> None:
    """Delete an agent: its live connection closes as a revoked one's does, and it can never connect again."""
    agent_id, tenant_id = str(agent.pk), str(agent.tenant_id)
    Agent.objects.filter(pk=agent.pk).delete()
    transaction.on_commit(lambda: agent_disconnect(agent_id=agent_id, tenant_id=tenant_id, code=CloseCode.REVOKED),
                          robust=True)
    logger.info("agent %s deleted by %s", agent_id, by or "the command line")


def agent_revoke(*, agent: Agent, by=None) -> Agent:
    """Revoke an agent: refused from now on, and its live connection, on whichever node, closed within a second."""
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        if agent.revoked_at is None:
            agent.revoked_at = timezone.now()
            agent.revoked_by = by
            agent.save(update_fields=["revoked_at", "revoked_by"])
        agent_id, tenant_id = str(agent.pk), str(agent.tenant_id)
        transaction.on_commit(lambda: agent_disconnect(agent_id=agent_id, tenant_id=tenant_id,
                                                       code=CloseCode.REVOKED), robust=True)
    logger.info("agent %s revoked by %s", agent.pk, by or "the command line")
    return agent


def agent_disconnect(*, agent_id: str, tenant_id: str, code: CloseCode) -> None:
    """Withdraw the agent's presence and tell its connection, wherever it is, to close with ``code``.

    Sync callers only (admin actions, commands, Celery). A lost message is caught by the node's presence
    keeper, which re-checks revocation every PTA_LAST_SEEN_SECONDS.
    """
    try:
        async_to_sync(agent_disconnect_broadcast)(agent_id=agent_id, tenant_id=tenant_id, code=code)
    except Exception:
        logger.exception("could not broadcast the disconnect of agent %s; its node will close it on its next check",
                         agent_id)


async def agent_disconnect_broadcast(*, agent_id: str, tenant_id: str, code: CloseCode) -> None:
    await presence_registry().withdraw(agent_id=agent_id, tenant_id=tenant_id)
    await _agroup_send(agent_id=agent_id, message=CloseConnection(code=int(code)))


def _group_send(*, agent_id: str, message: NodeMessage) -> None:
    try:
        async_to_sync(_agroup_send)(agent_id=agent_id, message=message)
    except Exception:
        logger.exception("could not send %s to agent %s; its node applies it on its next check",
                         type(message).__name__, agent_id)


async def _agroup_send(*, agent_id: str, message: NodeMessage) -> None:
    layer = get_channel_layer()
    assert layer is not None  # both profiles configure one (config/settings/channels.py)
    # RedisPubSubChannelLayer publishes to every node subscribed to the agent's group.
    await layer.group_send(agent_group(agent_id), message.to_message())
