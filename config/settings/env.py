"""The one place settings read the environment. Each reader names the variable in its error, so a value that
cannot be used stops start-up (ImproperlyConfigured) saying which variable to fix, never later and never as a
bare ValueError. For the typed readers an unset or empty variable means the default."""

import ipaddress
import math
import os
from collections.abc import Callable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_T = TypeVar("_T")


def env(name: str, default: str = "", *, choices: Sequence[str] = ()) -> str:
    """Text; with ``choices``, one of them."""
    value = os.environ.get(name, default)
    if choices and value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value[:40]!r}.")
    return value


def _typed(name: str, default: _T, parse: Callable[[str], _T], expected: str) -> _T:
    """``parse`` of the variable's value; its ValueError becomes an error naming the variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {expected}, not {raw[:40]!r}.") from None


def _check_minimum(name: str, value: float, minimum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}.")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = _typed(name, default, int, "a whole number")
    _check_minimum(name, value, minimum)
    return value


def _finite(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    value = _typed(name, default, _finite, "a number")
    _check_minimum(name, value, minimum)
    return value


def _boolean(raw: str) -> bool:
    if raw.lower() not in _TRUE + _FALSE:
        raise ValueError(raw)
    return raw.lower() in _TRUE


def env_bool(name: str, default: bool) -> bool:
    return _typed(name, default, _boolean, "1 or 0 (or true/false, yes/no, on/off)")


def env_list(name: str, default: Sequence[str] = ()) -> list[str]:
    """Comma-separated entries, blanks dropped."""
    raw = os.environ.get(name, "")
    return [entry.strip() for entry in raw.split(",") if entry.strip()] if raw.strip() else list(default)


def env_url(name: str, *, schemes: Sequence[str]) -> str:
    """A URL of one of ``schemes``, or "" when unset. The value is never quoted in the error: it may hold a
    password."""
    value = os.environ.get(name, "").strip()
    try:
        parts = urlsplit(value)
        usable = parts.scheme in schemes and bool(parts.hostname or parts.path.strip("/"))
    except ValueError:
        usable = False
    if value and not usable:
        raise ImproperlyConfigured(f"{name} must be a URL starting {' or '.join(f'{s}://' for s in schemes)} "
                                   "(its value is not shown here, it may hold a password).")
    return value


DATABASE_URL = env_url("DATABASE_URL", schemes=("postgres", "postgresql"))
REDIS_URL = env_url("REDIS_URL", schemes=("redis", "rediss", "unix"))
PRODUCTION = bool(DATABASE_URL and REDIS_URL)
# The profile is both or neither: one alone would mix, e.g., PostgreSQL with sessions and lockout in one process.
if bool(DATABASE_URL) != bool(REDIS_URL):
    _set, _unset = ("DATABASE_URL", "REDIS_URL") if DATABASE_URL else ("REDIS_URL", "DATABASE_URL")
    raise ImproperlyConfigured(f"{_set} is set but {_unset} is not: set both for the production profile, or "
                               "neither for the embedded one.")


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
        problem = public_url_problem(value, insecure_loopback=env_bool("PTA_INSECURE_COOKIES", False))
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
