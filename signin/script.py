"""The sign-in pages' one script, as the browser must find it: its Subresource Integrity hash and the pages'
Content Security Policy. The hash is in the script tag's ``integrity``, in every sign-in page's
SCRIPT_HASH_HEADER, and in docs/SECURITY.md (a test keeps the three the same), so that an organisation can
compare the script its people run with the one published."""

from __future__ import annotations

import base64
import functools
import hashlib
from pathlib import Path

from django.contrib.staticfiles import finders

SCRIPT = "signin/signin.js"
SCRIPT_HASH_HEADER = "PTA-Script-Integrity"
# Scripts from the portal only, no inline script, no eval; connections (the sealing ticket) to the portal only;
# nothing may frame the pages. Inline styles stay allowed: the pages' stylesheet and the branding's colour.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self'; "
                           "style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'")


@functools.cache
def script_integrity() -> str:
    """sha384-<base64>: the Subresource Integrity of the script the portal serves (read once per process)."""
    found = finders.find(SCRIPT)
    if not found:
        raise FileNotFoundError(SCRIPT)
    digest = hashlib.sha384(Path(str(found)).read_bytes()).digest()
    return "sha384-" + base64.b64encode(digest).decode("ascii")
