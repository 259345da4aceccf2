"""Sealing in the browser: the ticket a sign-in page seals to, and the envelopes it posts back.

A ticket names a request id (unguessable, kept in the sign-in's session, single use), its expiry, the request
kind, the tenant and the candidate agents (the few least loaded that serve the domain): each with its key id,
its public key (SubjectPublicKeyInfo) and the associated data the agent will compute for it
(pta_protocol.associated_data), so that the browser seals to exactly the agent's view of the binding. The page
posts one envelope per candidate; the portal checks their form and binding (it cannot open them), and the hand-off
(dispatch.py) gives each agent asked its own envelope, under the ticket's request id and expiry.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from dataclasses import dataclass

import pta_protocol as protocol
from channels.db import database_sync_to_async
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agents.selectors import agents_connected, agents_named, agents_sampled

_public_keys: dict[str, rsa.RSAPublicKey] = {}


def _load_agent_key(key_id: str) -> rsa.RSAPublicKey | None:
    from agents.models import Agent

    agent = Agent.objects.filter(key_fingerprint=key_id, revoked_at__isnull=True).only("certificate_pem").first()
    if agent is None:
        return None
    key = x509.load_pem_x509_certificate(agent.certificate_pem.encode()).public_key()
    return key if isinstance(key, rsa.RSAPublicKey) else None  # the tenants' CAs certify RSA keys only


async def agent_public_key(key_id: str) -> rsa.RSAPublicKey | None:
    """The RSA key an agent's certificate certifies, by its key id (read once per process)."""
    if key_id not in _public_keys:
        key = await database_sync_to_async(_load_agent_key)(key_id)
        if key is None:
            return None
        _public_keys[key_id] = key
    return _public_keys[key_id]


_spki: dict[str, str] = {}


async def _agent_spki(key_id: str) -> str | None:
    """An agent's public key as the browser imports it (SubjectPublicKeyInfo, base64), made once per process."""
    if key_id not in _spki:
        public_key = await agent_public_key(key_id)
        if public_key is None:
            return None
        _spki[key_id] = protocol.b64e(public_key.public_bytes(serialization.Encoding.DER,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    return _spki[key_id]


# Enough for failover: the first asked, and two more should it not take the request.
CANDIDATES = 3
# The agent refuses a request whose expiry is further off than MAX_REQUEST_AGE_SECONDS (+5): the ticket lives that
# long from its issue; a page about to seal with less than FRESH_SECONDS left asks for a new one.
TICKET_SECONDS = protocol.MAX_REQUEST_AGE_SECONDS
FRESH_SECONDS = 15.0
# A post with less than this left cannot reach an agent in time: the page is told to seal again.
MIN_LEFT_SECONDS = 2.0
MAX_POSTED_BYTES = 16 * 1024
KINDS = (protocol.REQUEST_PASSWORD, protocol.REQUEST_PASSWORD_CHANGE)


@dataclass(frozen=True)
class BrowserSealed:
    """Envelopes sealed in the browser for one ticket: key id → envelope."""

    request_id: str
    expires_at: float
    kind: str
    envelopes: dict[str, dict[str, str]]
    # The agents the envelopes are for (the ticket's candidates'): the hand-off reads their presence only. Empty
    # for a ticket issued before they were recorded: the hand-off reads the tenant's.
    agent_ids: tuple[str, ...] = ()


class SealingRefused(Exception):
    """A post whose envelopes do not fit the sign-in's ticket (``reason`` says how): nothing is asked of an agent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def sealing_ticket_issue(*, tenant_id: str, domain: str, kind: str = protocol.REQUEST_PASSWORD) -> dict | None:
    """A new ticket for the tenant's connected agents that serve ``domain`` (that can change passwords, for a
    change), the CANDIDATES least loaded; None when none is connected (the page then posts the password: there is
    nobody to seal for). JSON-ready: it is kept in the session and drawn into the page."""
    capability = protocol.CAPABILITY_PASSWORD_CHANGE if kind == protocol.REQUEST_PASSWORD_CHANGE else ""
    # The least busy of a sample of the tenant's agents (all of them when it has no more than SAMPLE); every one
    # of them only when the sample holds fewer than CANDIDATES that serve the domain.
    connected, complete = await agents_sampled(tenant_id=str(tenant_id), domain=domain, capability=capability)
    if len(connected) < CANDIDATES and not complete:
        connected = await agents_connected(tenant_id=str(tenant_id), domain=domain, capability=capability)
    request_id = secrets.token_hex(16)
    # Three decimals: what JSON carries to the agent is this very float, and repr() gives it back the same.
    expires_at = round(time.time() + TICKET_SECONDS, 3)
    candidates: list[dict[str, str]] = []
    for agent in connected:
        if len(candidates) >= CANDIDATES:
            break
        spki = await _agent_spki(agent.record.key_id)
        if spki is None:
            continue
        aad = protocol.associated_data(request_id=request_id, tenant=str(tenant_id), key_id=agent.record.key_id,
                                       expires_at=expires_at, kind=kind)
        candidates.append({"key_id": agent.record.key_id, "spki": spki, "aad": protocol.b64e(aad),
                           "agent_id": agent.agent_id})
    if not candidates:
        return None
    # Whether the candidates are every agent that served the domain then: a sign-in that posts the password instead
    # (no JavaScript) asks them first, read by name (agents_named), and gives the only one the whole deadline.
    every_agent = complete and len(candidates) == len(connected)
    return {"request_id": request_id, "expires_at": expires_at, "kind": kind, "tenant": str(tenant_id),
            "domain": domain, "candidates": candidates, "every_agent": every_agent}


def ticket_agents(ticket: dict | None, *, tenant_id: str, kind: str = protocol.REQUEST_PASSWORD) -> AgentsHint | None:
    """The agents a sign-in's ticket named (issued at its username step, moments ago), for the hand-off of a
    password posted as typed: read first by name, one read instead of a new sample of the tenant's. None for a
    ticket of another tenant or kind, or one from before the candidates' agents were recorded."""
    if not ticket or ticket.get("tenant") != str(tenant_id) or ticket.get("kind") != kind:
        return None
    named = tuple(str(c["agent_id"]) for c in ticket.get("candidates", ()) if c.get("agent_id"))
    if not named or len(named) != len(ticket["candidates"]):
        return None
    return AgentsHint(agent_ids=named, every_one=bool(ticket.get("every_agent")))


@dataclass(frozen=True)
class AgentsHint:
    """Agents to ask first, by id, and whether they were every agent of the tenant serving the domain when named
    (then the only one among them may have the whole deadline, as when a sample holds the tenant's every agent)."""

    agent_ids: tuple[str, ...]
    every_one: bool = False


async def sealing_ticket_current(*, ticket: dict | None, tenant_id: str, domain: str, kind: str) -> dict | None:
    """The ticket to seal to now: ``ticket`` while it has FRESH_SECONDS left and one of its candidates at least is
    still connected (the hand-off fails over to the next candidate's envelope), else a new one for the agents
    connected now (None: none is)."""
    if ticket and ticket.get("kind") == kind and ticket.get("tenant") == str(tenant_id) \
            and ticket.get("expires_at", 0) - time.time() >= FRESH_SECONDS:
        capability = protocol.CAPABILITY_PASSWORD_CHANGE if kind == protocol.REQUEST_PASSWORD_CHANGE else ""
        named = [str(c["agent_id"]) for c in ticket["candidates"] if c.get("agent_id")]
        present = (await agents_named(agent_ids=named, tenant_id=str(tenant_id), domain=domain, capability=capability)
                   if len(named) == len(ticket["candidates"]) else
                   await agents_connected(tenant_id=str(tenant_id), domain=domain, capability=capability))
        connected = {a.record.key_id for a in present}
        if any(c["key_id"] in connected for c in ticket["candidates"]):
            return ticket
    return await sealing_ticket_issue(tenant_id=tenant_id, domain=domain, kind=kind)


def ticket_for_page(ticket: dict) -> dict:
    """What the page's script reads: the ticket without its expiry as a time (the browser's clock may be off),
    with the seconds it has left instead."""
    return {"request_id": ticket["request_id"], "kind": ticket["kind"],
            "expires_in": round(ticket["expires_at"] - time.time(), 1),
            # The page needs each candidate's key, not which agent holds it.
            "candidates": [{k: v for k, v in c.items() if k != "agent_id"} for c in ticket["candidates"]]}


def browser_sealed_parse(*, ticket: dict | None, posted: str, kind: str, now: float | None = None) -> BrowserSealed:
    """The posted envelopes, checked against the sign-in's ticket: its request id, kind and expiry, every key id
    one of its candidates', every envelope an envelope's form. SealingRefused otherwise (the page seals again)."""
    now = time.time() if now is None else now
    if not ticket:
        raise SealingRefused("no_ticket")
    if len(posted) > MAX_POSTED_BYTES:
        raise SealingRefused("too_large")
    try:
        data = json.loads(posted)
    except ValueError:
        raise SealingRefused("malformed") from None
    if not isinstance(data, dict) or not isinstance(data.get("request_id"), str) \
            or not isinstance(data.get("envelopes"), dict):
        raise SealingRefused("malformed")
    if not hmac.compare_digest(data["request_id"].encode(), str(ticket["request_id"]).encode()):
        raise SealingRefused("wrong_request")
    if ticket.get("kind") != kind:
        raise SealingRefused("wrong_kind")
    if ticket["expires_at"] - now < MIN_LEFT_SECONDS:
        raise SealingRefused("expired")
    offered = {c["key_id"] for c in ticket["candidates"]}
    envelopes = data["envelopes"]
    if not envelopes or not set(envelopes) <= offered:
        raise SealingRefused("wrong_key")
    if not all(protocol.envelope_well_formed(envelope) for envelope in envelopes.values()):
        raise SealingRefused("malformed")
    agent_ids = tuple(c["agent_id"] for c in ticket["candidates"] if c["key_id"] in envelopes and c.get("agent_id"))
    return BrowserSealed(request_id=ticket["request_id"], expires_at=ticket["expires_at"], kind=kind,
                         envelopes=envelopes,
                         agent_ids=agent_ids if len(agent_ids) == len(envelopes) else ())
