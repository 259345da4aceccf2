"""The sessions' store (SESSION_ENGINE): Django's cache sessions, Redis in production, less one round trip per
new session key. A sign-in makes two (the username step, then login()'s new key against session fixation)."""

from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.backends.cache import SessionStore as CacheSessionStore
from django.utils.crypto import get_random_string


class SessionStore(CacheSessionStore):
    def _get_new_session_key(self) -> str:
        """A fresh key, without Django's EXISTS on it first: create() stores a new session with add() (Redis
        SET NX), which refuses a key in use, and then draws another."""
        return get_random_string(32, VALID_KEY_CHARS)

    async def _aget_new_session_key(self) -> str:
        return self._get_new_session_key()
