"""Platform administrators (accounts of no tenant) sign in through the same pages, with cloud lockout and the
second factor like everyone (docs/SECURITY.md, finding 3)."""

from __future__ import annotations

import pytest
from django.test import Client

from signin.models import SignInEvent
from tenant.models import User
from tests.signin.test_mfa import PASSWORD, enrol, is_signed_in, outcome, pages, password_step


@pytest.fixture
def root(transactional_db):
    return User.objects.create_superuser("root@platform.example.test", PASSWORD)


@pages
def test_guesses_at_a_platform_account_are_locked_out(root):
    client = Client(REMOTE_ADDR="203.0.113.40")
    outcomes = [outcome(password_step(client, root.upn, f"Wrong-guess-{i}")) for i in range(12)]
    assert outcomes == ["invalid_credentials"] * 5 + ["cloud_locked"] * 7
    # Locked: the right password is not even checked now.
    assert outcome(password_step(client, root.upn)) == "cloud_locked"
    assert not is_signed_in(client)
    assert SignInEvent.objects.filter(username=root.upn, outcome="invalid_credentials").count() == 5


@pages
def test_a_platform_account_is_asked_for_a_second_factor(root):
    client = Client(REMOTE_ADDR="198.51.100.40")
    response = password_step(client, root.upn, next_url="/admin/")
    assert outcome(response) == "mfa_required" and response["Location"] == "/login/mfa/"
    assert not is_signed_in(client)
    _, done = enrol(client)
    assert outcome(done) == "success" and is_signed_in(client)
    assert client.get("/admin/").status_code == 200


@pages
def test_unknown_names_in_a_platform_domain_are_answered_as_a_wrong_password(root):
    # No account existence oracle (docs/SECURITY.md, 5a): on to the password page, which ends as a wrong password.
    client = Client()
    response = password_step(client, "nobody@platform.example.test", PASSWORD)
    assert outcome(response) == "invalid_credentials"
    assert not is_signed_in(client)
