"""Reads about applications: which one a request names, and whether a browser origin is registered."""

from __future__ import annotations

import hashlib

from oauth2_provider.models import get_access_token_model

from applications.models import Application
from applications.uris import origin_registered


def application_by_client_id(*, client_id: str) -> Application | None:
    return Application.objects.filter(client_id=client_id).first() if client_id else None


def application_of_access_token(*, token: str) -> Application | None:
    """The application an access token was issued to (whether or not it is still valid)."""
    if not token:
        return None
    checksum = hashlib.sha256(token.encode()).hexdigest()
    found = get_access_token_model().objects.filter(token_checksum=checksum).select_related("application").first()
    return found.application if found else None


def origin_registered_by_any_application(*, origin: str) -> bool:
    """A CORS preflight names no client: it passes for an origin some application registered exactly."""
    if not origin:
        return False
    candidates = Application.objects.filter(allowed_origins__contains=origin).values_list("allowed_origins", flat=True)
    return any(origin_registered(origin, registered) for registered in candidates)
