"""Cloud smart lockout; the tenant need not be saved: only its policy and id are read."""

import pytest
from django.core.cache import cache

from signin.services import lockout
from tenant.models import Tenant


@pytest.fixture(autouse=True)
def clean_cache():
    cache.clear()
    yield
    cache.clear()


def fail(tenant, username="a@alpha.example.test", *, familiar=False, times=1):
    state = None
    for _ in range(times):
        state = lockout.lockout_record_failure(tenant=tenant, username=username, familiar=familiar)
    return state


def test_threshold_locks_and_success_clears():
    tenant = Tenant(name="Alpha", slug="alpha")
    fail(tenant, times=tenant.lockout_threshold - 1)
    assert not lockout.lockout_active(tenant=tenant, username="a@alpha.example.test", familiar=False)
    fail(tenant)
    assert lockout.lockout_active(tenant=tenant, username="a@alpha.example.test", familiar=False)
    # Usernames are matched case-insensitively: a different spelling is the same account.
    assert lockout.lockout_active(tenant=tenant, username="A@Alpha.Example.Test", familiar=False)


def test_unfamiliar_failures_do_not_lock_familiar_places():
    tenant = Tenant(name="Alpha", slug="alpha")
    fail(tenant, familiar=False, times=20)
    assert lockout.lockout_active(tenant=tenant, username="a@alpha.example.test", familiar=False)
    assert not lockout.lockout_active(tenant=tenant, username="a@alpha.example.test", familiar=True)


def test_lockout_grows_on_repeats():
    tenant = Tenant(name="Alpha", slug="alpha")
    first = fail(tenant, times=tenant.lockout_threshold)
    second = fail(tenant, times=tenant.lockout_threshold)
    assert second.lockouts == 2
    first_duration = tenant.lockout_duration_seconds
    assert second.locked_until - first.locked_until >= first_duration  # twice as long, measured from later


def test_familiar_address_is_remembered_after_success():
    tenant = Tenant(name="Alpha", slug="alpha")
    username, ip = "a@alpha.example.test", "198.51.100.7"
    assert not lockout.address_is_familiar(tenant=tenant, username=username, ip=ip)
    lockout.lockout_record_success(tenant=tenant, username=username, ip=ip, familiar=False)
    assert lockout.address_is_familiar(tenant=tenant, username=username, ip=ip)
    assert not lockout.address_is_familiar(tenant=tenant, username=username, ip="203.0.113.9")


def test_cache_keys_hold_no_username_or_address():
    tenant = Tenant(name="Alpha", slug="alpha")
    key = lockout._bucket_key(tenant, "secret.person@alpha.example.test", False)
    assert "secret.person" not in key
    assert "198.51.100.7" not in lockout._familiar_key(tenant, "x@alpha.example.test", "198.51.100.7")
