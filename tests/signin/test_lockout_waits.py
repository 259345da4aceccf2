"""Guesses at one account beyond its threshold wait for the answers in flight (signin/services/attempt.py): a
burst of right passwords is slowed, never refused; a burst of wrong ones reaches the check at most ``threshold``
times. Cloud accounts: their password is checked here, no agent."""

import asyncio

import pytest

from signin.services.attempt import password_sign_in
from tenant.models import User

PASSWORD = "Cl0ud-burst-pa55"
pytestmark = pytest.mark.django_db(transaction=True)


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


async def test_a_sign_in_that_breaks_releases_its_guess(account, monkeypatch):
    from signin.services import attempt, lockout

    async def broken(user, password):
        raise ConnectionError("the store went away")

    monkeypatch.setattr(attempt, "_cloud_password_check", broken)
    for _ in range(6):
        with pytest.raises(ConnectionError):
            await password_sign_in(username=account.upn, password=PASSWORD, ip="203.0.113.8")
    account_key = lockout.lockout_account(tenant=account.tenant, user=account, username=account.upn)
    hold = (await asyncio.to_thread(lockout.lockout_reserve, tenant=account.tenant, account=account_key,
                                    familiar=False)).hold
    assert hold is lockout.Hold.GRANTED, "a broken sign-in's guess kept counting"
