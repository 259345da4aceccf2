"""What an SP's endpoint (ACS, SLO) may be: an absolute https URL without a fragment; plain http on loopback only
(the assertion would cross the network in clear)."""

from __future__ import annotations

from urllib.parse import urlsplit

from applications.uris import LOOPBACK_HOSTS

MAX_URL_CHARS = 1024


def endpoint_problem(url: str) -> str | None:
    """Why ``url`` may not be registered as an SP endpoint, or None."""
    if len(url) > MAX_URL_CHARS:
        return f"{url[:60]}…: longer than {MAX_URL_CHARS} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # a port that is no number raises here
    except ValueError:
        return f"{url}: not a URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"{url}: an absolute https:// URL"
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        return f"{url}: http:// is for loopback only (localhost, 127.0.0.1, [::1]); use https://"
    if parts.fragment or "#" in url:
        return f"{url}: no fragment (#…)"
    if any(ord(c) < 33 or c in '"<>\\^`{|}' for c in url):
        return f"{url}: characters a URL may not hold"
    return None
