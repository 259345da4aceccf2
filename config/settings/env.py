"""The one place settings read the environment."""

import ipaddress
import os
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")
PRODUCTION = bool(DATABASE_URL and REDIS_URL)
# The profile is both or neither: one alone would mix, e.g., PostgreSQL with sessions and lockout in one process.
if bool(DATABASE_URL) != bool(REDIS_URL):
    _set, _unset = ("DATABASE_URL", "REDIS_URL") if DATABASE_URL else ("REDIS_URL", "DATABASE_URL")
    raise ImproperlyConfigured(f"{_set} is set but {_unset} is not: set both for the production profile, or "
                               "neither for the embedded one.")


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def public_url_problem(value: str, *, insecure_loopback: bool) -> str | None:
    """Why ``value`` cannot be the production portal's public URL (the OpenID issuer), or None: https://, or
    plain http on loopback only with PTA_INSECURE_COOKIES=1 (the tests)."""
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return None
    if insecure_loopback and parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return None
    return (f"must be an https:// URL in the production profile, not {value!r} (http://127.0.0.1 or "
            "http://localhost only together with PTA_INSECURE_COOKIES=1, for tests on loopback)")


def https_in_production(name: str, value: str) -> str:
    """A public URL read from ``name``: in production a plain-http one stops start-up by name."""
    if PRODUCTION:
        problem = public_url_problem(value, insecure_loopback=os.environ.get("PTA_INSECURE_COOKIES", "") == "1")
        if problem:
            raise ImproperlyConfigured(f"{name} {problem}.")
    return value


def required_in_production(name: str, embedded_default: str) -> str:
    """A secret: taken from the environment; in production a missing one stops start-up by name."""
    value = os.environ.get(name, "")
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(
            f"{name} must be set in the production profile (DATABASE_URL and REDIS_URL are set).")
    return embedded_default


def ip_networks(name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated addresses or networks (IPv4 or IPv6, ``10.0.0.5``, ``10.0.0.0/24``, ``fd00::/64``); a
    malformed entry stops start-up, naming the variable and the entry."""
    networks = []
    for entry in (part.strip() for part in os.environ.get(name, "").split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {entry!r} is not an IPv4 or IPv6 address or network "
                                       "(e.g. 10.0.0.5, 10.0.0.0/24, fd00::/64).") from None
    return tuple(networks)
