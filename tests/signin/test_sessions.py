"""The sessions' store: a new session never takes a key in use, though it no longer asks first."""

from django.conf import settings
from django.utils.module_loading import import_string

from signin import sessions


def test_a_new_session_never_takes_the_key_of_one_in_use(monkeypatch):
    store = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    existing = store()
    existing["who"] = "the first browser"
    existing.save()
    keys = iter([existing.session_key, "k" * 32])
    monkeypatch.setattr(sessions, "get_random_string", lambda length, chars: next(keys))

    new = store()
    new["who"] = "another browser"
    new.save()

    assert new.session_key == "k" * 32
    assert store(session_key=existing.session_key).load() == {"who": "the first browser"}
    assert store(session_key=new.session_key).load() == {"who": "another browser"}
