"""Forwarded headers are believed from the trusted proxies only (PTA_TRUSTED_PROXIES).

Django trusts SECURE_PROXY_SSL_HEADER from whoever sends it, and anything reading X-Forwarded-For would too:
this ASGI wrapper removes the forwarded headers of every request (HTTP and WebSocket) whose direct peer is not
a trusted proxy, before Django, the password consumer or the agent consumer see it. Daphne's own
``--proxy-headers`` must stay off: it takes the left-most X-Forwarded-For from any peer.
"""

from __future__ import annotations

from collections.abc import Iterable

from signin.services.client import address_parse, client_address_from
from tenant.locations import IPNetwork, address_in_ranges

FORWARDED_HEADERS = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
                               b"x-forwarded-prefix", b"x-real-ip", b"forwarded"})


def scope_from_trusted_proxy(scope: dict, trusted: Iterable[IPNetwork]) -> bool:
    client = scope.get("client")
    if not client:
        return False
    return address_in_ranges(address_parse(str(client[0])), trusted)


def scope_client_address(scope: dict) -> str:
    """The client's address of an ASGI scope, as ``signin.services.client.client_address`` reads a request's: the
    peer, or the forwarded address when the peer is a trusted proxy (run after TrustedProxyHeaders)."""
    from django.conf import settings

    client = scope.get("client") or ("",)
    forwarded = ",".join(value.decode("latin-1") for name, value in scope.get("headers", ())
                         if name.lower() == b"x-forwarded-for")
    return client_address_from(peer=str(client[0] or ""), forwarded_for=forwarded,
                               trusted=settings.PTA_TRUSTED_PROXIES)


class TrustedProxyHeaders:
    def __init__(self, app, *, trusted: Iterable[IPNetwork]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and not scope_from_trusted_proxy(scope, self.trusted):
            headers = [(name, value) for name, value in scope.get("headers", ())
                       if name.lower() not in FORWARDED_HEADERS]
            if len(headers) != len(scope.get("headers", ())):
                scope = {**scope, "headers": headers}
        return await self.app(scope, receive, send)
