"""The sessions' store (SESSION_ENGINE): Django's cache sessions, Redis in production, less one round trip per
new session key. A sign-in makes two (the username step, then login()'s new key against session fixation)."""

import base64
import secrets

from django.contrib.sessions.backends.cache import SessionStore as CacheSessionStore


class SessionStore(CacheSessionStore):
    def _get_new_session_key(self) -> str:
        """A fresh key, without Django's EXISTS on it first: create() stores a new session with add() (Redis
        SET NX), which refuses a key in use, and then draws another. 160 random bits in one read of the
        system's generator, as 32 characters of base32 (a-z, 2-7: Django's own key characters); Django's
        get_random_string draws one character per read, 32 reads."""
        return base64.b32encode(secrets.token_bytes(20)).decode("ascii").lower()

    async def _aget_new_session_key(self) -> str:
        return self._get_new_session_key()
