"""Who is on the other end: the client's address, behind trusted proxies or not.

Lockout's familiar/unfamiliar split, the "unfamiliar" MFA policy and the sign-in records all key on it, so
every reader of the address goes through ``client_address``. ``X-Forwarded-For`` is believed only when the
direct peer is one of ``PTA_TRUSTED_PROXIES``, and then only as far as the chain of trusted hops goes: the
answer is the right-most address that is not a trusted proxy (the left-most value is whatever the client
sent). config/proxy.py also strips the forwarded headers from untrusted peers before Django sees them.

The core (``client_address_from``, ``address_parse``) is plain Python: no Django, tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# One reading of an address and of "in these networks" for proxies and named locations alike.
from tenant.locations import IPAddress, IPNetwork, address_in_ranges, address_normalised


def address_parse(value: str) -> IPAddress | None:
    """One hop of a forwarded chain or a peer address: ``203.0.113.7``, ``2001:db8::1``, with a port
    (``203.0.113.7:5123``, ``[2001:db8::1]:443``) as some proxies write them; an IPv4-mapped IPv6 address is
    its IPv4 address. Anything else (``unknown``, obfuscated identifiers, garbage) is None."""
    value = value.strip().strip('"')
    if value.startswith("["):  # [v6] or [v6]:port
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:  # v4:port (a bare v6 address has at least two colons)
        value = value.split(":", 1)[0]
    return address_normalised(value)


def client_address_from(*, peer: str, forwarded_for: str, trusted: Iterable[IPNetwork]) -> str:
    """The client's address: the peer itself unless it is a trusted proxy; then, walking ``forwarded_for``
    (comma-separated, each proxy appends the address it saw) from the right, the first hop that is not a
    trusted proxy. When every hop is trusted, the left-most one; when the first untrusted hop is not an
    address, the trusted hop that reported it (the furthest that can be named). "" when the peer is unknown."""
    trusted = tuple(trusted)
    nearest = address_parse(peer) if peer else None
    if nearest is None:
        return ""
    if not address_in_ranges(nearest, trusted) or not forwarded_for:
        return str(nearest)
    for hop in reversed([part for part in forwarded_for.split(",") if part.strip()]):
        address = address_parse(hop)
        if address is None:
            break
        nearest = address
        if not address_in_ranges(address, trusted):
            break
    return str(nearest)


def client_address(meta: Mapping[str, Any]) -> str:
    """The client's address of a request, from its META: Django's ``request.META``, or oauthlib's
    ``request.headers``, which django-oauth-toolkit copies from it."""
    from django.conf import settings

    return client_address_from(peer=str(meta.get("REMOTE_ADDR") or ""),
                               forwarded_for=str(meta.get("HTTP_X_FORWARDED_FOR") or ""),
                               trusted=settings.PTA_TRUSTED_PROXIES)
