"""The one place settings read the environment."""

import os

from django.core.exceptions import ImproperlyConfigured

DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")
PRODUCTION = bool(DATABASE_URL and REDIS_URL)


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def required_in_production(name: str, embedded_default: str) -> str:
    """A secret: taken from the environment; in production a missing one stops start-up by name."""
    value = os.environ.get(name, "")
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(
            f"{name} must be set in the production profile (DATABASE_URL and REDIS_URL are set).")
    return embedded_default
