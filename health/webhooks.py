"""The webhook signature, and which addresses a webhook may reach. Plain Python, no Django.

The signature: HMAC-SHA256 with the tenant's secret over ``"<unix time>." + body``, sent as
``PTA-Signature: t=<unix time>,v1=<hex>``. The time is signed so a receiver can refuse a replayed request, and
the raw body is signed so a receiver checks exactly the bytes it got."""

import hashlib
import hmac
import ipaddress

SIGNATURE_HEADER = "PTA-Signature"
# NAT64's well-known prefix: the last 32 bits are an IPv4 address the gateway forwards to.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def address_public(address: str) -> bool:
    """Whether ``address`` is on the public internet: not loopback, private, link-local (where clouds serve
    instance metadata), carrier NAT, reserved, multicast or unspecified, nor such an IPv4 address carried inside
    an IPv6 one (mapped, NAT64, 6to4)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (
            ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF) if ip in _NAT64 else None)
        if inner is not None:
            return address_public(str(inner))
        if ip.is_site_local:
            return False
    return ip.is_global and not ip.is_multicast
