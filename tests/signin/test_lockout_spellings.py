"""Many spellings of one name, one lockout bucket (docs/SECURITY.md, second review, finding 1): through the pages
(Django's test client), the OAuth password grant and the service itself, with the directory faked at the
hand-off as Windows AD answers (every spelling it compares equal is bob, and a wrong password counts on bob).
Against the real Samba DC and pta-agent: tests/integration/test_lockout_spellings.py."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from pta_protocol import Outcome

from agents.services.dispatch import Validation
from applications.services import application_register
from signin.services import attempt
from signin.services.attempt import password_sign_in
from signin.services.names import username_folded
from tenant.models import User
from tenant.services import tenant_policy_set
from tests.fixtures.http import found

pytestmark = pytest.mark.django_db(transaction=True)
BOB = "bob@alpha.example.test"
THRESHOLD = 5  # the tenant's default
# Spellings an attacker types: Windows AD binds every one as bob (case, width, the full-width @, diacritics).
FOLDED = ["bob@alpha.example.test", "BOB@ALPHA.EXAMPLE.TEST", "Bob@Alpha.Example.Test", "ｂｏｂ@alpha.example.test",
          "ＢＯＢ＠alpha.example.test", "böb@alpha.example.test", "bo\u0301b@alpha.example.test"]
# Spellings Samba (and AD) bind as bob, which no real UPN has: refused on the username page.
SPACED = ["bob @alpha.example.test", "bob   @alpha.example.test", "bob@ alpha.example.test",
          "bob\u3000@alpha.example.test", "bob\u00a0@alpha.example.test"]


class WindowsDirectory:
    """The hand-off, faked: a wrong password for any spelling AD compares equal to bob counts on bob."""

    def __init__(self, monkeypatch) -> None:
        self.asked: list[str] = []

        async def password_validate(*, tenant_id, domain, username, password, hint=None):
            self.asked.append(username)
            return Validation(outcome=Outcome.INVALID_CREDENTIALS, request_id=uuid.uuid4().hex, ad_subcode="52e")

        monkeypatch.setattr(attempt, "password_validate", password_validate)

    @property
    def bad_password_count(self) -> int:
        return sum(username_folded(upn=name) == username_folded(upn=BOB) for name in self.asked)


@pytest.fixture
def tenant(tenant_factory):
    return tenant_factory("Alpha Corp", ["alpha.example.test"])


@pytest.fixture
def directory(monkeypatch):
    return WindowsDirectory(monkeypatch)


def token(response) -> str:
    return found(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.content.decode())


def guess(username: str, password: str = "Wrong-guess-1"):
    """A fresh browser: the username page, then the password page. Returns the answer that ended it."""
    client = Client()
    page = client.get("/login/")
    answer = client.post("/login/", {"username": username, "csrfmiddlewaretoken": token(page)})
    if answer.status_code != 302:
        return answer
    page = client.get("/login/password/")
    return client.post("/login/password/", {"password": password, "csrfmiddlewaretoken": token(page)})


@pytest.mark.parametrize("known", [False, True], ids=["account-not-met-yet", "account-known-to-the-portal"])
def test_every_spelling_of_one_name_counts_in_one_bucket(tenant, directory, known):
    if known:
        User.objects.create_user(BOB, tenant=tenant, source=User.Source.ON_PREMISES)
    outcomes = [guess(name).headers.get("PTA-Outcome") for name in FOLDED for _ in range(THRESHOLD)]
    assert outcomes[:THRESHOLD] == ["invalid_credentials"] * THRESHOLD
    assert outcomes[THRESHOLD:] == ["cloud_locked"] * (len(outcomes) - THRESHOLD)
    assert directory.bad_password_count == len(directory.asked) == THRESHOLD


def test_spaces_in_a_name_are_refused_on_the_username_page(tenant, directory):
    for name in SPACED:
        answer = guess(name)
        assert answer.status_code == 400, name
        assert "A username has no spaces." in answer.content.decode()
    invisible = guess("bob\u200b@alpha.example.test")
    assert invisible.status_code == 400 and "an invisible or control character" in invisible.content.decode()
    assert directory.asked == []
    # Nothing was spent: bob's bucket still takes its whole threshold.
    assert [guess(BOB).headers["PTA-Outcome"] for _ in range(THRESHOLD)] == ["invalid_credentials"] * THRESHOLD


async def test_the_service_refuses_what_the_username_page_refuses(tenant, directory):
    # However a name reaches the sign-in (a session's state, the admin console's login, a future caller).
    for name in SPACED:
        result = await password_sign_in(username=name, password="Wrong-guess-1", ip="203.0.113.8")
        assert result.outcome.value == "unknown_domain"
    assert directory.asked == []


def test_the_password_grant_counts_in_the_same_bucket(tenant, directory, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # the client secret's check
    tenant_policy_set(tenant=tenant, password_grant_enabled=True)
    application, secret = application_register(tenant=tenant, name="Legacy", grant="password")

    def grant(username: str):
        answer = Client().post("/token/", {"grant_type": "password", "username": username,
                                           "password": "Wrong-guess-1", "scope": "openid",
                                           "client_id": application.client_id, "client_secret": secret})
        assert answer.status_code == 400, answer.content
        return answer.json()["outcome"]

    assert [guess(BOB).headers["PTA-Outcome"] for _ in range(THRESHOLD - 2)] == ["invalid_credentials"] * 3
    assert [grant(name) for name in SPACED] == ["unknown_domain"] * len(SPACED)  # no agent, no guess spent
    assert [grant(name) for name in FOLDED] == ["invalid_credentials"] * 2 + ["cloud_locked"] * (len(FOLDED) - 2)
    assert directory.bad_password_count == len(directory.asked) == THRESHOLD
