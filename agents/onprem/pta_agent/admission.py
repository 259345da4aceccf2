"""Which portal requests this agent accepts: signed by the portal, fresh, for its tenant, domain and key, once."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pta_protocol as protocol
from cryptography.hazmat.primitives.asymmetric import ed25519
from pta_protocol import ProtocolError


@dataclass
class RequestAdmission:
    """Refuses a request with a ProtocolError (its code goes into the error frame), before any decryption."""

    tenant: str
    domains: frozenset[str]
    key_id: str
    portal_signing_key: ed25519.Ed25519PublicKey
    replay_guard: protocol.ReplayGuard = field(default_factory=protocol.ReplayGuard)

    def check(self, request: protocol.Request, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        protocol.verify_request(request, self.portal_signing_key, now=now)  # signature first, then expiry
        if request.tenant != self.tenant:
            raise ProtocolError("wrong_tenant", "This agent does not serve that tenant.", request.request_id)
        if request.domain.lower() not in self.domains:
            raise ProtocolError("wrong_domain", "This agent does not serve that domain.", request.request_id)
        if request.key_id != self.key_id:
            raise ProtocolError("wrong_key", "The request was sealed for another key of this agent.",
                                request.request_id)

    def remember(self, request: protocol.Request, *, now: float | None = None) -> None:
        """Called last, once the agent will serve the request: a request it was too busy for may come again."""
        if not self.replay_guard.check_and_remember(request.request_id, request.expires_at, now=now):
            raise ProtocolError("replay", "This request id was already received.", request.request_id)


def admission_for(*, tenant: str, domains: list[str], key_id: str,
                  portal_signing_key: ed25519.Ed25519PublicKey) -> RequestAdmission:
    return RequestAdmission(tenant=tenant, domains=frozenset(d.lower() for d in domains), key_id=key_id,
                            portal_signing_key=portal_signing_key)
