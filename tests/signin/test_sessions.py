"""The sessions' store: a new session never takes a key in use, though it no longer asks first."""

from django.conf import settings
from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.utils.module_loading import import_string

from signin import sessions


def test_a_new_session_never_takes_the_key_of_one_in_use(monkeypatch):
    store = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    existing = store()
    existing["who"] = "the first browser"
    existing.save()
    keys = iter([existing.session_key, "k" * 32])
    monkeypatch.setattr(sessions.SessionStore, "_get_new_session_key", lambda self: next(keys))

    new = store()
    new["who"] = "another browser"
    new.save()

    assert new.session_key == "k" * 32
    assert store(session_key=existing.session_key).load() == {"who": "the first browser"}
    assert store(session_key=new.session_key).load() == {"who": "another browser"}


def test_a_new_key_is_32_of_djangos_key_characters_and_never_repeats():
    keys = [sessions.SessionStore()._get_new_session_key() for _ in range(2000)]
    assert all(len(key) == 32 and set(key) <= set(VALID_KEY_CHARS) for key in keys)
    assert len(set(keys)) == len(keys)
    # 160 bits: every base32 character (a-z, 2-7) turns up at every position over enough keys
    assert {key[0] for key in keys} == set("abcdefghijklmnopqrstuvwxyz234567")
