"""The one place settings read the environment."""

import os
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")
PRODUCTION = bool(DATABASE_URL and REDIS_URL)


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
