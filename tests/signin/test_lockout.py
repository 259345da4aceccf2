"""Cloud smart lockout: reservations before the password is checked, on this profile's store (in process for
the embedded profile, Redis for the production one). The tenant need not be saved: only its policy and id are
read."""

import threading
import time
import uuid

import pytest

from signin.services import lockout
from signin.services.lockout import Verdict
from tenant.models import Tenant, User


@pytest.fixture
def tenant():
    return Tenant(pk=uuid.uuid4(), name="Alpha", slug="alpha")


def account(tenant, username="a@alpha.example.test", user=None):
    return lockout.lockout_account(tenant=tenant, user=user, username=username)


def guess(tenant, acct, verdict=Verdict.FAILED, *, familiar=False, times=1):
    """Reserve and settle ``times`` guesses; the reservations and what settling the last one said."""
    granted, settled = [], None
    for _ in range(times):
        reservation = lockout.lockout_reserve(tenant=tenant, account=acct, familiar=familiar)
        granted.append(reservation.granted)
        settled = lockout.lockout_settle(reservation=reservation, verdict=verdict)
    return granted, settled


def test_threshold_locks_and_success_forgives(tenant):
    acct = account(tenant)
    granted, settled = guess(tenant, acct, times=tenant.lockout_threshold - 1)
    assert all(granted) and not settled.locked
    guess(tenant, acct, Verdict.SUCCEEDED)  # the right password forgives the failures so far
    granted, _ = guess(tenant, acct, times=tenant.lockout_threshold - 1)
    assert all(granted) and not lockout.lockout_active(account=acct, familiar=False)
    _, settled = guess(tenant, acct)
    assert settled.locked and lockout.lockout_active(account=acct, familiar=False)
    assert lockout.lockout_reserve(tenant=tenant, account=acct, familiar=False).hold is lockout.Hold.LOCKED


def test_names_that_ad_folds_together_are_one_account(tenant):
    assert account(tenant, "A@Alpha.Example.Test") == account(tenant, "a@alpha.example.test")
    assert account(tenant, "ａ@alpha.example.test ") == account(tenant, "a@alpha.example.test")
    user = User(pk=42, upn="a@alpha.example.test")
    # A known account is keyed on the user, whatever name reached it (Alternate ID).
    assert account(tenant, "a.mail@mail.alpha.example.test", user) == account(tenant, "a@alpha.example.test", user)
    assert account(Tenant(pk=uuid.uuid4()), "a@alpha.example.test") != account(tenant, "a@alpha.example.test")


def test_guesses_in_flight_count_until_answered(tenant):
    acct = account(tenant)
    reservations = [lockout.lockout_reserve(tenant=tenant, account=acct, familiar=False)
                    for _ in range(tenant.lockout_threshold)]
    assert all(r.granted for r in reservations)
    # Not locked: busy. The guess waits for those answers (signin.services.attempt) instead of being refused.
    assert lockout.lockout_reserve(tenant=tenant, account=acct, familiar=False).hold is lockout.Hold.BUSY
    lockout.lockout_settle(reservation=reservations[0], verdict=Verdict.RELEASED)  # e.g. the agent timed out
    assert lockout.lockout_reserve(tenant=tenant, account=acct, familiar=False).granted


def test_a_burst_of_concurrent_guesses_reserves_at_most_the_threshold(tenant):
    acct = account(tenant)
    start, granted = threading.Barrier(50), []

    def one():
        start.wait()
        granted.append(lockout.lockout_reserve(tenant=tenant, account=acct, familiar=False).granted)

    threads = [threading.Thread(target=one) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(granted) == 50 and granted.count(True) == tenant.lockout_threshold


def test_unfamiliar_failures_do_not_lock_familiar_places(tenant):
    acct = account(tenant)
    guess(tenant, acct, familiar=False, times=20)
    assert lockout.lockout_active(account=acct, familiar=False)
    assert not lockout.lockout_active(account=acct, familiar=True)
    assert guess(tenant, acct, familiar=True)[0] == [True]


def test_lockout_grows_on_repeats(tenant):
    tenant.lockout_duration_seconds = 1
    acct = account(tenant)
    _, first = guess(tenant, acct, times=tenant.lockout_threshold)
    assert first.locked and first.lockouts == 1
    wait_until_unlocked(acct)
    _, second = guess(tenant, acct, times=tenant.lockout_threshold)
    assert second.locked and second.lockouts == 2  # twice as long as the first


def wait_until_unlocked(acct, timeout=5.0):
    import time

    deadline = time.monotonic() + timeout
    while lockout.lockout_active(account=acct, familiar=False):
        assert time.monotonic() < deadline, "the lockout did not end"
        time.sleep(0.1)


def test_a_reservation_whose_answer_never_came_stops_counting(tenant, monkeypatch):
    """A node that died between reserving and settling leaves its reservations behind: they hold the account's
    way for RESERVATION_SECONDS, then no longer count (on Redis: left out by their expiry, not swept)."""
    acct, clock = account(tenant), [time.time()]
    monkeypatch.setattr(lockout.time, "time", lambda: clock[0])
    held = [lockout.lockout_reserve(tenant=tenant, account=acct, familiar=False)
            for _ in range(tenant.lockout_threshold)]
    assert all(r.granted for r in held)
    assert lockout.lockout_reserve(tenant=tenant, account=acct, familiar=False).hold is lockout.Hold.BUSY
    clock[0] += lockout.RESERVATION_SECONDS + 1
    assert lockout.lockout_reserve(tenant=tenant, account=acct, familiar=False).granted


def test_a_spray_of_names_leaves_no_bucket_behind_in_the_process(tenant, monkeypatch):
    """The embedded store: a guess at a new name each time (an attacker spraying usernames) keeps its bucket only
    while it counts (its failure window), not for the process's life."""
    store = lockout.LocalLockoutStore()
    policy, clock = lockout.lockout_policy(tenant=tenant), [1_800_000_000.0]
    monkeypatch.setattr(lockout.time, "time", lambda: clock[0])
    for n in range(3 * store.SWEEP_EVERY):
        bucket = f"sprayed-{n}:u"
        store.reserve(bucket=bucket, attempt_id="a", threshold=policy.threshold)
        store.settle(bucket=bucket, attempt_id="a", verdict=Verdict.FAILED, policy=policy)
        clock[0] += lockout.FAILURE_WINDOW_SECONDS / store.SWEEP_EVERY
    assert store.buckets_held <= 2 * store.SWEEP_EVERY  # the last window's, never all 3,000
    assert store._live_failures(f"sprayed-{3 * store.SWEEP_EVERY - 1}:u", clock[0]) == 1  # a live one still counts


def test_platform_accounts_have_a_policy(settings):
    settings.PTA_PLATFORM_LOCKOUT_THRESHOLD = 3
    acct = lockout.lockout_account(tenant=None, user=User(pk=7, upn="root@platform.test"), username="root@x")
    granted, settled = guess(None, acct, times=3)
    assert all(granted) and settled.locked
    assert guess(None, acct)[0] == [False]


def test_familiar_address_and_device_are_remembered(tenant):
    username, ip, device = "a@alpha.example.test", "198.51.100.7", "browser-1"
    place = lockout.place_recognised(tenant=tenant, username=username, ip=ip, device=device)
    assert not place.familiar_address and not place.known_device
    lockout.place_remember(tenant=tenant, username=username, ip=ip, device=device)
    assert lockout.place_recognised(tenant=tenant, username=username, ip=ip, device=device) == lockout.Place(
        familiar_address=True, known_device=True)
    assert lockout.place_recognised(tenant=tenant, username=username, ip="203.0.113.9", device="browser-2") == \
        lockout.Place(familiar_address=False, known_device=False)
    assert lockout.place_recognised(tenant=tenant, username="b@alpha.example.test", ip=ip, device=device) == \
        lockout.Place(familiar_address=False, known_device=False)
    lockout.place_remember(tenant=tenant, username=username, ip="", device="")  # nothing to remember
    assert lockout.place_recognised(tenant=tenant, username=username, ip="", device="") == lockout.Place(
        familiar_address=False, known_device=False)


def test_an_account_keeps_its_newest_devices_only(tenant, monkeypatch):
    """A script signing in without cookies (a new device each time) leaves one record of bounded size, not a key
    per sign-in for 90 days: the newest FAMILIAR_PLACES_KEPT devices are known, the older ones forgotten (the
    cache's record keeps those only; the lockout record drops the oldest once it holds twice as many)."""
    username, kept = "a@alpha.example.test", lockout.FAMILIAR_PLACES_KEPT
    clock = [1_800_000_000.0]
    monkeypatch.setattr(lockout.time, "time", lambda: clock[0])
    signins = 2 * kept + 5
    for n in range(signins):
        clock[0] += 1
        lockout.place_remember(tenant=tenant, username=username, ip="198.51.100.7", device=f"browser-{n}")
        assert len(lockout.places_of(tenant=tenant, username=username).devices) <= 2 * kept
    known = [lockout.place_recognised(tenant=tenant, username=username, ip="", device=f"browser-{n}").known_device
             for n in range(signins)]
    assert known == [False] * (signins - kept) + [True] * kept
    record = lockout.places_of(tenant=tenant, username=username)
    assert kept <= len(record.devices) < 2 * kept and len(record.addresses) == 1
    assert "browser-9" not in repr(record) and "198.51.100.7" not in repr(record)  # digests only
    # A device seen again (a day later: sooner, its mark is left as it is) becomes the newest: it outlives the
    # ones remembered after its first sign-in.
    clock[0] += lockout.PLACE_REFRESH_SECONDS
    lockout.place_remember(tenant=tenant, username=username, ip="", device="browser-5")
    clock[0] += 1
    lockout.place_remember(tenant=tenant, username=username, ip="", device="browser-new")
    assert lockout.place_recognised(tenant=tenant, username=username, ip="", device="browser-5").known_device
    assert not lockout.place_recognised(tenant=tenant, username=username, ip="", device="browser-6").known_device


def test_a_place_older_than_its_time_is_unfamiliar(tenant, monkeypatch):
    username, clock = "a@alpha.example.test", [1_800_000_000.0]
    monkeypatch.setattr(lockout.time, "time", lambda: clock[0])
    lockout.place_remember(tenant=tenant, username=username, ip="198.51.100.7", device="browser-1")
    clock[0] += lockout.FAMILIAR_TTL_SECONDS - 1
    assert lockout.place_recognised(tenant=tenant, username=username, ip="198.51.100.7", device="browser-1") == \
        lockout.Place(familiar_address=True, known_device=True)
    clock[0] += 2  # the record itself lives on (another place refreshed it); this mark has expired
    lockout.place_remember(tenant=tenant, username=username, ip="203.0.113.9", device="")
    assert lockout.place_recognised(tenant=tenant, username=username, ip="198.51.100.7", device="browser-1") == \
        lockout.Place(familiar_address=False, known_device=False)


def test_a_usual_place_is_written_once_a_day_at_most(tenant, monkeypatch):
    """Signing in again from the usual browser and network writes nothing for a day (one write less per
    sign-in); the mark is refreshed after that, so it never runs out while the place is used."""
    username, clock = "a@alpha.example.test", [1_800_000_000.0]
    monkeypatch.setattr(lockout.time, "time", lambda: clock[0])

    def sign_in() -> None:
        seen = lockout.place_recognised(tenant=tenant, username=username, ip="198.51.100.7", device="browser-1")
        lockout.place_remember(tenant=tenant, username=username, ip="198.51.100.7", device="browser-1", seen=seen)

    sign_in()
    first = lockout.places_of(tenant=tenant, username=username)
    clock[0] += lockout.PLACE_REFRESH_SECONDS - 1
    sign_in()
    assert lockout.places_of(tenant=tenant, username=username) == first
    clock[0] += 2
    sign_in()
    assert set(lockout.places_of(tenant=tenant, username=username).devices.values()) == {clock[0]}
    # A record read under another name is not taken for this one's.
    other = lockout.place_recognised(tenant=tenant, username="b@alpha.example.test", ip="198.51.100.7", device="")
    lockout.place_remember(tenant=tenant, username="c@alpha.example.test", ip="198.51.100.7", device="", seen=other)
    assert lockout.place_recognised(tenant=tenant, username="c@alpha.example.test", ip="198.51.100.7",
                                    device="").familiar_address


def test_marks_of_before_the_record_are_still_familiar(tenant):
    """Keys written one per place before the per-account record stay familiar until they expire."""
    from django.core.cache import cache

    username = "a@alpha.example.test"
    cache.set(lockout._familiar_key(tenant, username, "198.51.100.7"), 1)
    cache.set(lockout._device_key(tenant, username, "browser-1"), 1)
    assert lockout.place_recognised(tenant=tenant, username=username, ip="198.51.100.7", device="browser-1") == \
        lockout.Place(familiar_address=True, known_device=True)


def test_keys_hold_no_username_or_address(tenant):
    assert "secret.person" not in account(tenant, "secret.person@alpha.example.test")
    assert "198.51.100.7" not in lockout._familiar_key(tenant, "x@alpha.example.test", "198.51.100.7")
    assert "x@alpha" not in lockout._device_key(tenant, "x@alpha.example.test", "browser-1")


def test_a_locked_guess_knows_when_the_lock_ends(tenant):
    import time

    tenant.lockout_duration_seconds = 120
    acct = account(tenant)
    granted = lockout.lockout_reserve(tenant=tenant, account=acct, familiar=False)
    assert lockout.lockout_ends(reservation=granted) is None  # not locked: nothing to tell
    lockout.lockout_settle(reservation=granted, verdict=Verdict.RELEASED)
    before = time.time()
    guess(tenant, acct, times=tenant.lockout_threshold)
    refused = lockout.lockout_reserve(tenant=tenant, account=acct, familiar=False)
    ends = lockout.lockout_ends(reservation=refused)
    assert refused.hold is lockout.Hold.LOCKED and ends is not None
    assert before + 118 <= ends <= time.time() + 121  # this profile's store: its clock or Redis's TTL
    # The familiar bucket is not locked: nothing to tell there.
    familiar = lockout.lockout_reserve(tenant=tenant, account=acct, familiar=True)
    assert familiar.granted and lockout.lockout_ends(reservation=familiar) is None


def test_failures_after_a_lock_start_a_window_of_their_own(monkeypatch, settings):
    """Both stores (found in review: the record kept the window of before the lock): the failures that follow a
    lock count for a whole FAILURE_WINDOW_SECONDS of their own, so a lock is followed by the threshold, not by
    more guesses before the old window ends."""
    settings.PTA_LOCKOUT_UPGRADE_SECONDS = 0
    tenant = Tenant(pk=uuid.uuid4(), name="Alpha", slug="alpha", lockout_threshold=5, lockout_duration_seconds=60)
    lockout.lockout_store().clear()
    account = lockout.lockout_account(tenant=tenant, user=None, username=f"w{uuid.uuid4().hex[:6]}@alpha.test")
    clock = [time.time()]
    monkeypatch.setattr(lockout.time, "time", lambda: clock[0])

    def wrong() -> lockout.Settled | None:
        reservation = lockout.lockout_reserve(tenant=tenant, account=account, familiar=False)
        return lockout.lockout_settle(reservation=reservation, verdict=Verdict.FAILED) if reservation.granted \
            else None

    start = clock[0]
    for _ in range(5):
        wrong()
    clock[0] = start + 61  # the lock is over
    assert not lockout.lockout_active(account=account, familiar=False)
    for _ in range(4):
        settled = wrong()
        assert settled is not None and not settled.locked
    clock[0] = start + lockout.FAILURE_WINDOW_SECONDS + 5  # the window of before the lock has ended
    settled = wrong()
    assert settled is not None and settled.locked
