"""The rules over an application's URIs and origins, plain functions over strings: what may be registered, and
how a loopback redirect URI is matched for a confidential client. DOT's own match is
``oauth2_provider.models.redirect_to_uri_allowed``: exact, except that a loopback IP (``http://127.0.0.1``,
``http://[::1]``) matches on any port, as RFC 8252 §7.3 asks for native apps."""

from __future__ import annotations

from urllib.parse import urlsplit

from oauth2_provider.models import redirect_to_uri_allowed

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def redirect_uri_problem(uri: str) -> str | None:
    """Why ``uri`` may not be registered, or None. Plain http only on loopback (RFC 9700 §2.6, RFC 8252 §7.3):
    anywhere else the code and the browser's cookies would cross the network in clear. DOT's validator checks
    the rest (scheme list, fragment)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None  # DOT's validator reports a URI that does not parse
    if parts.scheme.lower() == "http" and (parts.hostname or "") not in LOOPBACK_HOSTS:
        return f"{uri}: http:// is for loopback only (localhost, 127.0.0.1, [::1]); use https://"
    return None


def _port(uri: str) -> int | str | None:
    try:
        return urlsplit(uri).port
    except ValueError:
        return "invalid"


def loopback_port_registered(uri: str, registered: list[str]) -> bool:
    """``uri`` matches a registered URI that names the same port: DOT's any-port loopback rule is for native
    apps (public clients); a confidential client's callback is a server, whose port is known."""
    return redirect_to_uri_allowed(uri, [candidate for candidate in registered if _port(candidate) == _port(uri)])


def origin_registered(origin: str, registered: str) -> bool:
    """The browser's ``Origin`` is exactly one of the application's registered origins (space separated)."""
    return bool(origin) and origin in registered.split()
