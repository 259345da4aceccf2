"""A rolling upgrade to the per-account lockout record: nodes of the previous release (four keys per bucket,
tests/signin/previous_lockout.py) and of this one share the Redis. For PTA_LOCKOUT_UPGRADE_SECONDS after this layout
first met the Redis, this release reads the previous keys and writes every reservation, failure, lock and
forgiveness to them too, so whichever node a guess reaches, at most the threshold reach the directory; the places
of before (the cache's record) are copied into an account's record at its first reservation."""

import time
import uuid

import pytest
from django.conf import settings
from django.core.cache import cache

from signin.services import lockout
from signin.services.lockout import Hold, Verdict
from tenant.models import Tenant
from tests.signin.previous_lockout import PreviousRedisLockoutStore

pytestmark = pytest.mark.redis


@pytest.fixture
def tenant():
    return Tenant(pk=uuid.uuid4(), name="Alpha", slug="alpha")


@pytest.fixture
def upgrading(settings):
    settings.PTA_LOCKOUT_UPGRADE_SECONDS = 7200
    store = lockout.lockout_store()
    assert isinstance(store, lockout.RedisLockoutStore)
    store.clear()  # the layout's marker too: it first meets this Redis now
    assert store.upgrading()
    return store


@pytest.fixture
def previous():
    """A node of the previous release on the same Redis."""
    return PreviousRedisLockoutStore(settings.PTA_REDIS_URL, settings.PTA_REDIS_PREFIX)


def old_guess(previous, bucket, policy, verdict=Verdict.FAILED):
    attempt = uuid.uuid4().hex
    hold, clean = previous.reserve(bucket=bucket, attempt_id=attempt, threshold=policy.threshold)
    if hold is Hold.GRANTED:
        previous.settle(bucket=bucket, attempt_id=attempt, verdict=verdict, policy=policy, clean=clean)
    return hold


def new_guess(tenant, account, verdict=Verdict.FAILED):
    reservation = lockout.lockout_reserve(tenant=tenant, account=account, familiar=False)
    if reservation.granted:
        return reservation.hold, lockout.lockout_settle(reservation=reservation, verdict=verdict)
    return reservation.hold, None


def test_failures_on_either_release_lock_the_account_on_both(tenant, upgrading, previous):
    policy, account = lockout.lockout_policy(tenant=tenant), lockout.lockout_account(
        tenant=tenant, user=None, username="a@alpha.example.test")
    bucket = f"{account}:u"
    for _ in range(policy.threshold - 1):
        assert old_guess(previous, bucket, policy) is Hold.GRANTED
    hold, settled = new_guess(tenant, account)  # the threshold's last, on this release: it locks
    assert hold is Hold.GRANTED and settled.locked
    assert old_guess(previous, bucket, policy) is Hold.LOCKED  # and the previous release's nodes see the lock
    assert lockout.lockout_active(account=account, familiar=False)

    other = lockout.lockout_account(tenant=tenant, user=None, username="b@alpha.example.test")
    for _ in range(policy.threshold - 1):
        assert new_guess(tenant, other)[0] is Hold.GRANTED
    assert old_guess(previous, f"{other}:u", policy) is Hold.GRANTED  # the last on the previous release
    assert new_guess(tenant, other)[0] is Hold.LOCKED
    assert lockout.lockout_ends(reservation=lockout.lockout_reserve(tenant=tenant, account=other, familiar=False))


def test_guesses_in_flight_on_either_release_hold_the_other(tenant, upgrading, previous):
    policy = lockout.lockout_policy(tenant=tenant)
    account = lockout.lockout_account(tenant=tenant, user=None, username="a@alpha.example.test")
    bucket = f"{account}:u"
    held = [lockout.lockout_reserve(tenant=tenant, account=account, familiar=False)
            for _ in range(policy.threshold)]
    assert all(r.granted for r in held)
    assert previous.reserve(bucket=bucket, attempt_id="x", threshold=policy.threshold)[0] is Hold.BUSY
    for reservation in held:
        lockout.lockout_settle(reservation=reservation, verdict=Verdict.RELEASED)
    for n in range(policy.threshold):
        assert previous.reserve(bucket=bucket, attempt_id=f"old-{n}", threshold=policy.threshold)[0] \
            is Hold.GRANTED
    assert lockout.lockout_reserve(tenant=tenant, account=account, familiar=False).hold is Hold.BUSY


def test_a_right_password_forgives_on_both(tenant, upgrading, previous):
    policy = lockout.lockout_policy(tenant=tenant)
    account = lockout.lockout_account(tenant=tenant, user=None, username="a@alpha.example.test")
    for _ in range(policy.threshold - 1):
        old_guess(previous, f"{account}:u", policy)
    assert new_guess(tenant, account, Verdict.SUCCEEDED)[0] is Hold.GRANTED
    for _ in range(policy.threshold - 1):  # a fresh threshold on either release
        assert old_guess(previous, f"{account}:u", policy) is Hold.GRANTED
    assert not lockout.lockout_active(account=account, familiar=False)


def test_after_the_upgrade_the_previous_keys_are_left_to_expire(tenant, upgrading, previous, settings):
    policy = lockout.lockout_policy(tenant=tenant)
    account = lockout.lockout_account(tenant=tenant, user=None, username="a@alpha.example.test")
    for _ in range(policy.threshold):
        old_guess(previous, f"{account}:u", policy)
    assert new_guess(tenant, account)[0] is Hold.LOCKED
    settings.PTA_LOCKOUT_UPGRADE_SECONDS = 0  # the period is over: every node runs this release
    assert new_guess(tenant, account, Verdict.RELEASED)[0] is Hold.GRANTED


def test_the_places_of_before_are_copied_at_the_first_reservation(tenant, upgrading):
    username, ip, device = "a@alpha.example.test", "198.51.100.7", "browser-1"
    address, known = lockout._place_marks(username, ip, device)
    cache.set(lockout._places_key(tenant, username), {"a": {address: time.time() - 60}, "d": {}},
              timeout=60)
    account = lockout.lockout_account(tenant=tenant, user=None, username=username)
    place, reservation = lockout.lockout_reserve_at(tenant=tenant, account=account, username=username, ip=ip,
                                                    device=device)
    assert place.familiar_address and not place.known_device and reservation.bucket == f"{account}:f"
    record = lockout.places_of(tenant=tenant, username=username)
    assert record.seeded and address in record.addresses
    cache.delete(lockout._places_key(tenant, username))  # read once: the record has it now
    place, _ = lockout.lockout_reserve_at(tenant=tenant, account=account, username=username, ip=ip, device=device)
    assert place.familiar_address


# --- found in review (the record's first version) --------------------------------------------------------------

def test_a_node_of_the_previous_release_seen_during_the_period_keeps_it_on_after_its_end(tenant, upgrading, previous,
                                                                                         monkeypatch):
    """A node of the previous release left serving past PTA_LOCKOUT_UPGRADE_SECONDS (a failed or a canary node):
    guesses alternating between it and this release's nodes reached the directory twice the threshold, each release
    counting on its own keys. A guess only the previous keys hold, seen while upgrading, keeps the period on."""
    policy = lockout.lockout_policy(tenant=tenant)
    account = lockout.lockout_account(tenant=tenant, user=None, username="left@alpha.example.test")
    old_guess(previous, f"{account}:u", policy)
    new_guess(tenant, account, Verdict.RELEASED)  # this release sees a guess it did not make
    upgrading._layout_since -= 7200 + 1  # the period is over
    upgrading._previous_checked = 0.0
    assert upgrading.upgrading()
    reached = 1
    for n in range(3 * policy.threshold):
        hold = old_guess(previous, f"{account}:u", policy) if n % 2 else new_guess(tenant, account)[0]
        reached += hold is Hold.GRANTED
    assert reached <= policy.threshold


def test_without_a_previous_release_the_period_ends_and_the_scripts_touch_one_cluster_slot(tenant, upgrading,
                                                                                           monkeypatch):
    """The record's scripts were always given the previous keys (three hash tags: CROSSSLOT on a Redis Cluster).
    After the period, with no node of the previous release seen, they are given the record alone."""
    from redis.crc import key_slot

    upgrading._layout_since -= 7200 + 1
    upgrading._previous_checked = 0.0
    assert not upgrading.upgrading()
    seen: list[list[str]] = []

    def watched(script):
        def run(keys, args):
            seen.append(keys)
            return script(keys=keys, args=args)
        return run

    for name in ("_reserve", "_fail"):
        monkeypatch.setattr(upgrading, name, watched(getattr(upgrading, name)))
    account = lockout.lockout_account(tenant=tenant, user=None, username="slot@alpha.example.test")
    new_guess(tenant, account)
    assert len(seen) == 2 and all(len({key_slot(key.encode()) for key in keys}) == 1 for keys in seen)


def test_a_record_first_written_while_upgrading_always_expires(tenant, upgrading, previous):
    """A name locked on a node of the previous release, then one guess at it on this release's: the record's first
    write (its seeded marker alone) had no TTL, a key for ever per sprayed name."""
    policy = lockout.lockout_policy(tenant=tenant)
    username = f"spray-{uuid.uuid4().hex[:8]}@alpha.example.test"
    account = lockout.lockout_account(tenant=tenant, user=None, username=username)
    for _ in range(policy.threshold):
        old_guess(previous, f"{account}:u", policy)
    _, reservation = lockout.lockout_reserve_at(tenant=tenant, account=account, username=username,
                                                ip="203.0.113.9", device="")
    assert reservation.hold is Hold.LOCKED
    assert upgrading.client.ttl(upgrading.record_key(account)) > 0


def test_a_reservation_asked_again_with_its_attempt_id_counts_once(tenant, upgrading):
    """redis-py retries a script whose answer was lost, with the same attempt id: the retry found its own
    reservation and answered BUSY at the threshold's last place, holding it for two minutes."""
    policy = lockout.lockout_policy(tenant=tenant)
    account = lockout.lockout_account(tenant=tenant, user=None, username="retry@alpha.example.test")
    for n in range(policy.threshold - 1):
        assert upgrading.reserve(bucket=f"{account}:u", attempt_id=f"held-{n}", threshold=policy.threshold)[0] \
            is Hold.GRANTED
    for _ in range(2):
        assert upgrading.reserve(bucket=f"{account}:u", attempt_id="last", threshold=policy.threshold)[0] \
            is Hold.GRANTED
