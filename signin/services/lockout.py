"""Cloud smart lockout: the cloud account locks before AD's does, so attackers lock the cloud account only.

Failures are counted per user in two buckets: from familiar addresses (that signed this user in before) and
from all others, so an attacker elsewhere cannot lock the user out of their usual places. Each lockout of a
bucket lasts twice as long as the one before, up to MAX_LOCKOUT_SECONDS.

Synchronous on purpose: the sign-in calls these inside its one thread hop before, and its one after, the agent.
"""

import hashlib
import time
from dataclasses import dataclass

from django.core.cache import cache

from tenant.models import Tenant

MAX_LOCKOUT_SECONDS = 3600
FAMILIAR_TTL_SECONDS = 90 * 24 * 3600
# Failures older than this no longer count towards a lockout.
FAILURE_WINDOW_SECONDS = 15 * 60


def _digest(*parts: str) -> str:
    # Usernames and addresses are hashed in cache keys: Redis holds no directory data in clear.
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "replace")).hexdigest()[:32]


def _bucket_key(tenant: Tenant, username: str, familiar: bool) -> str:
    return f"lockout:{tenant.pk}:{_digest(username.lower())}:{'f' if familiar else 'u'}"


def _familiar_key(tenant: Tenant, username: str, ip: str) -> str:
    return f"familiar:{tenant.pk}:{_digest(username.lower(), ip)}"


@dataclass(frozen=True)
class LockoutState:
    failures: int = 0
    locked_until: float = 0.0
    lockouts: int = 0
    first_failure: float = 0.0

    def locked(self, now: float) -> bool:
        return self.locked_until > now


def address_is_familiar(*, tenant: Tenant, username: str, ip: str) -> bool:
    return bool(ip) and bool(cache.get(_familiar_key(tenant, username, ip)))


def lockout_active(*, tenant: Tenant, username: str, familiar: bool) -> bool:
    state = cache.get(_bucket_key(tenant, username, familiar))
    return bool(state) and LockoutState(**state).locked(time.time())


def lockout_record_failure(*, tenant: Tenant, username: str, familiar: bool) -> LockoutState:
    key = _bucket_key(tenant, username, familiar)
    now = time.time()
    raw = cache.get(key)
    state = LockoutState(**raw) if raw else LockoutState()
    if state.first_failure and now - state.first_failure > FAILURE_WINDOW_SECONDS and not state.locked(now):
        state = LockoutState(lockouts=state.lockouts)
    failures = state.failures + 1
    locked_until, lockouts = state.locked_until, state.lockouts
    if failures >= tenant.lockout_threshold:
        duration = min(tenant.lockout_duration_seconds * 2 ** state.lockouts, MAX_LOCKOUT_SECONDS)
        locked_until, lockouts, failures = now + duration, state.lockouts + 1, 0
    state = LockoutState(failures=failures, locked_until=locked_until, lockouts=lockouts,
                         first_failure=state.first_failure or now)
    cache.set(key, state.__dict__, timeout=MAX_LOCKOUT_SECONDS + FAILURE_WINDOW_SECONDS)
    return state


def lockout_record_success(*, tenant: Tenant, username: str, ip: str, familiar: bool,
                                 remember_address: bool = True) -> None:
    cache.delete(_bucket_key(tenant, username, familiar))
    if remember_address:
        address_remember(tenant=tenant, username=username, ip=ip)


def address_remember(*, tenant: Tenant, username: str, ip: str) -> None:
    """This address has completed a sign-in of this user (second factor included, when one was asked)."""
    if ip:
        cache.set(_familiar_key(tenant, username, ip), 1, timeout=FAMILIAR_TTL_SECONDS)
