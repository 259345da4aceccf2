"""Guesses at one account beyond its threshold wait for the answers in flight (signin/services/attempt.py): a
burst of right passwords is slowed, never refused; a burst of wrong ones reaches the check at most ``threshold``
times. Cloud accounts: their password is checked here, no agent."""

import asyncio

import pytest
from django.core.cache import cache

from signin.services.attempt import password_sign_in
from signin.services.lockout import lockout_store
from tenant.models import User

PASSWORD = "Cl0ud-burst-pa55"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def clean_state():
    cache.clear()
    lockout_store().clear()
    yield
    lockout_store().clear()


@pytest.fixture
def account(tenant_a, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # the check itself is not timed
    return User.objects.create_user("burst@alpha.example.test", PASSWORD, tenant=tenant_a, source="cloud")


async def burst(upn: str, password: str, n: int) -> list[str]:
    results = await asyncio.gather(*(password_sign_in(username=upn, password=password, ip="203.0.113.8")
                                     for _ in range(n)))
    return sorted(r.outcome.value for r in results)


async def test_a_burst_of_right_passwords_all_sign_in(account):
    assert await burst(account.upn, PASSWORD, 25) == ["success"] * 25


async def test_a_burst_of_wrong_passwords_is_checked_at_most_threshold_times(account):
    outcomes = await burst(account.upn, "Wrong-burst-guess", 25)
    assert outcomes.count("invalid_credentials") == 5 and outcomes.count("cloud_locked") == 20
