"""The sessions' store (SESSION_ENGINE): Django's cache sessions, Redis in production, less one round trip per
new session key. A sign-in renews its key at the username step, after the password and at login() (against
session fixation: signin/views.py); each renewal is one delete of the old key, the new one being stored by the
response's save() with add(), as any new session."""

import base64
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from django.contrib.sessions.backends.cache import SessionStore as CacheSessionStore


class SessionStore(CacheSessionStore):
    # Django's own (SessionBase); django-stubs leave these private members out.
    _session: dict[str, Any]
    _session_cache: dict[str, Any]
    _aget_session: Callable[[], Awaitable[dict[str, Any]]]

    def _get_new_session_key(self) -> str:
        """A fresh key, without Django's EXISTS on it first: create() stores a new session with add() (Redis
        SET NX), which refuses a key in use, and then draws another. 160 random bits in one read of the
        system's generator, as 32 characters of base32 (a-z, 2-7: Django's own key characters); Django's
        get_random_string draws one character per read, 32 reads."""
        return base64.b32encode(secrets.token_bytes(20)).decode("ascii").lower()

    async def _aget_new_session_key(self) -> str:
        return self._get_new_session_key()

    def cycle_key(self) -> None:
        """Django's, without storing the data under the new key at once (create()) and again when the response
        saves it: the old key stops working now, the data get their new key at the response's save() (no key,
        so create(): add() under a fresh one), and the cookie names it."""
        data = self._session
        old = self.session_key
        self._session_key = None
        self._session_cache = data
        self.modified = True
        if old:
            self.delete(old)

    async def acycle_key(self) -> None:
        data = await self._aget_session()
        old = self.session_key
        self._session_key = None
        self._session_cache = data
        self.modified = True
        if old:
            await self.adelete(old)
