"""One-time keys for the admin console's forms whose answer page shows a secret once (a registration token, a new
application's client secret, a rotated secret).

Such a page answers the form's POST: the browser's reload posts the form again, and a double click posts it twice.
Each form shown carries a fresh key; only the first POST of that key does the work. The key is given to the
administrator's session (a form posted from elsewhere, or a made-up key, never was) and spent atomically in the
cache (``add``: Redis ``SET NX`` in production), not in the session: two POSTs racing each load the session before
either saves it, and both would find their key still listed there.
"""

from __future__ import annotations

import secrets

from django import forms
from django.contrib import messages
from django.core.cache import cache
from django.http import HttpRequest, HttpResponseRedirect

# The keys given out to forms this session was shown, "<purpose>:<key>", newest last.
ONCE_KEYS_SESSION = "pta_once_keys"
ONCE_KEYS_KEPT = 20
# How long a spent key is remembered as spent: longer than any form stays open (the session's list forgets it too).
SPENT_SECONDS = 24 * 3600
FIELD = "once_key"


def once_key_field() -> forms.CharField:
    """The form's hidden field that carries its key back."""
    return forms.CharField(widget=forms.HiddenInput, required=False)


def once_key_issue(request: HttpRequest, *, purpose: str) -> str:
    """A fresh key for a form about to be shown (``purpose``: what it does, and to which object)."""
    key = secrets.token_urlsafe(16)
    kept = [*request.session.get(ONCE_KEYS_SESSION, []), f"{purpose}:{key}"][-ONCE_KEYS_KEPT:]
    request.session[ONCE_KEYS_SESSION] = kept
    return key


def once_key_usable(request: HttpRequest, *, purpose: str, key: str) -> bool:
    """Whether ``key`` was given to a form this session was shown for ``purpose``, and is not spent yet."""
    return bool(key) and f"{purpose}:{key}" in request.session.get(ONCE_KEYS_SESSION, []) and \
        cache.get(_spent(key)) is None


def once_key_spend(request: HttpRequest, *, purpose: str, key: str) -> bool:
    """Spend ``key``: True for exactly one POST of it (of all those racing, on any node), False for the others
    and for a key this session was never given."""
    entry = f"{purpose}:{key}"
    if not key or entry not in request.session.get(ONCE_KEYS_SESSION, []):
        return False
    request.session[ONCE_KEYS_SESSION] = [k for k in request.session.get(ONCE_KEYS_SESSION, []) if k != entry]
    return cache.add(_spent(key), 1, timeout=SPENT_SECONDS)


def _spent(key: str) -> str:
    return f"pta:once-spent:{key}"


def once_key_refused(request: HttpRequest, *, purpose: str, done: str, go_to: str) -> HttpResponseRedirect | None:
    """For a POST: None when its key may still do the work; else (a reload, a second click, a form not shown
    here) a redirect to ``go_to`` with a warning that says what was done (``done``), which is not done again."""
    if once_key_usable(request, purpose=purpose, key=request.POST.get(FIELD, "")):
        return None
    messages.warning(request, done)
    return HttpResponseRedirect(go_to)
