"""Cloud smart lockout: the cloud account locks before AD's does, so attackers lock the cloud account only.

Every account has it: directory users, cloud-only accounts and platform administrators (whose policy is
PTA_PLATFORM_LOCKOUT_THRESHOLD). Failures are counted per account in two buckets: from familiar addresses (that
signed this account in before) and from all others, so an attacker elsewhere cannot lock the user out of their
usual places. Each lockout of a bucket lasts twice as long as the one before, up to MAX_LOCKOUT_SECONDS.

A guess is *reserved* before any agent is asked, atomically, and guesses still in flight count as failures
until their answer comes: whatever the concurrency, and on whichever nodes, at most ``threshold`` guesses per
window reach the directory. A guess that finds the threshold taken by guesses in flight waits for their answers
(BUSY): wrong ones lock the account, right ones free the way, so a burst of right passwords is slowed, not
refused. The counters live in Redis in production (one Lua script per step, so every node
sees the same state) and in this process in the embedded profile. That Redis must never evict keys
(maxmemory-policy noeviction, signin/checks.py): the sessions and the cache share it, and a lock dropped to make
room for a flood of sessions would give an attacker a fresh threshold of guesses.

    reservation = lockout_reserve(tenant=..., account=..., familiar=...)  # before the agent
    lockout_settle(reservation=reservation, verdict=Verdict.FAILED)        # after its answer

Synchronous on purpose: the sign-in calls these inside its one thread hop before, and its one after, the agent.
"""

from __future__ import annotations

import enum
import hashlib
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings
from django.core.cache import cache

from signin.services.names import username_folded
from tenant.models import Tenant, User

MAX_LOCKOUT_SECONDS = 3600
FAMILIAR_TTL_SECONDS = 90 * 24 * 3600
# An account's familiar addresses and devices kept, each (the newest): a person's browsers and networks, not every
# cookie-less script's.
FAMILIAR_PLACES_KEPT = 20
# A place marked this recently is not written again at the next sign-in from it: its 90 days hardly move.
PLACE_REFRESH_SECONDS = 24 * 3600
# Failures older than this no longer count towards a lockout.
FAILURE_WINDOW_SECONDS = 15 * 60
# A reservation whose answer never came (its node died) stops counting after this.
RESERVATION_SECONDS = 120


def _digest(*parts: str) -> str:
    # Usernames and addresses are hashed in keys: Redis holds no directory data in clear.
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "replace")).hexdigest()[:32]


@dataclass(frozen=True)
class LockoutPolicy:
    threshold: int
    duration_seconds: int


def lockout_policy(*, tenant: Tenant | None) -> LockoutPolicy:
    """The tenant's policy; platform accounts (no tenant) get the platform's."""
    if tenant is None:
        return LockoutPolicy(settings.PTA_PLATFORM_LOCKOUT_THRESHOLD, settings.PTA_PLATFORM_LOCKOUT_SECONDS)
    return LockoutPolicy(max(1, tenant.lockout_threshold), max(1, tenant.lockout_duration_seconds))


def lockout_account(*, tenant: Tenant | None, user: User | None, username: str) -> str:
    """The key of the account a guess is aimed at: the portal's user's UPN when the user is known (whatever
    name reached it: Alternate ID, a remembered alias), else the canonical name typed; either folded as AD
    compares names (signin/services/names.py), so every spelling of one account is one bucket, whether or not
    the portal has met the account yet."""
    scope = str(tenant.pk) if tenant is not None else "platform"
    return _digest(scope, f"name:{username_folded(upn=user.upn if user is not None else username)}")


class Verdict(enum.Enum):
    FAILED = "failed"  # a wrong guess: counts
    SUCCEEDED = "succeeded"  # the password was right: the bucket's failures are forgiven
    RELEASED = "released"  # no verdict on the password (agent away, account disabled, …): does not count


class Hold(enum.IntEnum):
    LOCKED = 0  # the bucket is locked: cloud_locked, no agent
    GRANTED = 1  # this guess may go to the directory
    BUSY = 2  # failures and guesses in flight already reach the threshold: wait for their answers, then ask again


@dataclass(frozen=True)
class Reservation:
    hold: Hold
    bucket: str
    attempt_id: str
    policy: LockoutPolicy
    # The bucket had no failures and no lockouts to forgive when this guess was reserved: a right password then
    # only ends the reservation (one command, not a script). A wrong guess at the same account in flight at the
    # same moment is then not forgiven by this one's success: stricter, never looser.
    clean: bool = False

    @property
    def granted(self) -> bool:
        return self.hold is Hold.GRANTED


@dataclass(frozen=True)
class Settled:
    locked: bool = False
    lockouts: int = 0


class LockoutStore(Protocol):
    def reserve(self, *, bucket: str, attempt_id: str, threshold: int) -> tuple[Hold, bool]:
        """The hold, and whether the bucket had nothing to forgive (no failures, no lockouts)."""
        ...

    def settle(self, *, bucket: str, attempt_id: str, verdict: Verdict, policy: LockoutPolicy,
               clean: bool = False) -> Settled:
        """``clean``: the reservation found nothing to forgive (a success then only ends it)."""
        ...

    def locked(self, *, bucket: str) -> bool: ...

    def locked_until(self, *, bucket: str) -> float | None: ...

    def clear(self) -> None: ...


class LocalLockoutStore:
    """The embedded profile's store: one process, so dicts under a lock do."""

    # Every this many reservations the tables drop what has run out (expired windows, locks and reservations):
    # a guess at a new name each time (a spray of usernames) must not leave a bucket behind for the process's life.
    SWEEP_EVERY = 1000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}  # bucket → (count, window end)
        self._in_flight: dict[str, dict[str, float]] = {}  # bucket → attempt id → expiry
        self._locked_until: dict[str, float] = {}
        self._lockouts: dict[str, tuple[int, float]] = {}  # bucket → (count, forgotten at)
        self._reservations = 0

    @property
    def buckets_held(self) -> int:
        with self._lock:
            return len(set(self._failures) | set(self._in_flight) | set(self._locked_until) | set(self._lockouts))

    def _sweep(self, now: float) -> None:  # under the lock
        self._failures = {b: entry for b, entry in self._failures.items() if entry[1] > now}
        self._locked_until = {b: until for b, until in self._locked_until.items() if until > now}
        self._lockouts = {b: entry for b, entry in self._lockouts.items() if entry[1] > now}
        in_flight = {}
        for bucket, flying in self._in_flight.items():
            if live := {a: exp for a, exp in flying.items() if exp > now}:
                in_flight[bucket] = live
        self._in_flight = in_flight

    def _live_failures(self, bucket: str, now: float) -> int:
        count, until = self._failures.get(bucket, (0, 0.0))
        return count if until > now else 0

    def reserve(self, *, bucket: str, attempt_id: str, threshold: int) -> tuple[Hold, bool]:
        now = time.time()
        with self._lock:
            self._reservations += 1
            if self._reservations % self.SWEEP_EVERY == 0:
                self._sweep(now)
            if self._locked_until.get(bucket, 0.0) > now:
                return Hold.LOCKED, False
            flying = {a: exp for a, exp in self._in_flight.get(bucket, {}).items() if exp > now}
            self._in_flight[bucket] = flying
            failures = self._live_failures(bucket, now)
            clean = not failures and self._lockouts.get(bucket, (0, 0.0))[1] <= now
            if failures + len(flying) >= threshold:
                return Hold.BUSY, clean
            flying[attempt_id] = now + RESERVATION_SECONDS
            return Hold.GRANTED, clean

    def settle(self, *, bucket: str, attempt_id: str, verdict: Verdict, policy: LockoutPolicy,
               clean: bool = False) -> Settled:
        now = time.time()
        with self._lock:
            flying = self._in_flight.get(bucket, {})
            was_in_flight = flying.pop(attempt_id, None) is not None
            if not flying:
                self._in_flight.pop(bucket, None)
            if verdict is Verdict.SUCCEEDED and clean:
                return Settled()  # nothing was there to forgive when it was reserved (as Redis's store)
            if verdict is Verdict.SUCCEEDED:
                self._failures.pop(bucket, None)
                self._lockouts.pop(bucket, None)
                return Settled()
            if verdict is Verdict.RELEASED or not was_in_flight:  # settled already (a retried hop): once only
                return Settled()
            count, until = self._failures.get(bucket, (0, 0.0))
            count, until = (count + 1, until) if until > now else (1, now + FAILURE_WINDOW_SECONDS)
            if count < policy.threshold:
                self._failures[bucket] = (count, until)
                return Settled()
            previous, forget_at = self._lockouts.get(bucket, (0, 0.0))
            previous = previous if forget_at > now else 0
            duration = min(policy.duration_seconds * 2 ** previous, MAX_LOCKOUT_SECONDS)
            self._locked_until[bucket] = now + duration
            self._lockouts[bucket] = (previous + 1, now + MAX_LOCKOUT_SECONDS + FAILURE_WINDOW_SECONDS)
            self._failures.pop(bucket, None)
            return Settled(locked=True, lockouts=previous + 1)

    def locked(self, *, bucket: str) -> bool:
        with self._lock:
            return self._locked_until.get(bucket, 0.0) > time.time()

    def locked_until(self, *, bucket: str) -> float | None:
        with self._lock:
            until = self._locked_until.get(bucket, 0.0)
            return until if until > time.time() else None

    def clear(self) -> None:
        with self._lock:
            for table in (self._failures, self._in_flight, self._locked_until, self._lockouts):
                table.clear()


# KEYS: failures, in flight, locked, lockouts.  ARGV: now, threshold, attempt id, reservation expiry, reservation ttl
# The lock, the failures and the lockouts are read together (MGET); reservations whose answer never came (their
# node died) are left out by their expiry (ZCOUNT from now) rather than removed (they go with the key,
# RESERVATION_SECONDS after the last reservation): four commands, not six, on every sign-in. Returns the hold and
# whether the bucket had nothing to forgive (no failures, no lockouts: a success then needs no script).
_RESERVE = """
local state = redis.call('MGET', KEYS[3], KEYS[1], KEYS[4])
if state[1] then return {0, 0} end
local failures = tonumber(state[2] or '0')
local clean = (failures == 0 and not state[3]) and 1 or 0
if failures + redis.call('ZCOUNT', KEYS[2], '(' .. ARGV[1], '+inf') >= tonumber(ARGV[2]) then return {2, clean} end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return {1, clean}
"""

# KEYS: failures, in flight, locked, lockouts.
# ARGV: attempt id, verdict, threshold, window, base duration, max duration, lockouts ttl
_SETTLE = """
local was_in_flight = redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[2] == 'succeeded' then
  redis.call('DEL', KEYS[1], KEYS[4])
  return {0, 0}
end
if ARGV[2] ~= 'failed' or was_in_flight == 0 then return {0, 0} end
local failures = redis.call('INCR', KEYS[1])
if failures == 1 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
if failures < tonumber(ARGV[3]) then return {0, 0} end
local previous = tonumber(redis.call('GET', KEYS[4]) or '0')
local duration = math.min(tonumber(ARGV[5]) * 2 ^ previous, tonumber(ARGV[6]))
redis.call('SET', KEYS[3], '1', 'EX', math.ceil(duration))
redis.call('SET', KEYS[4], previous + 1, 'EX', ARGV[7])
redis.call('DEL', KEYS[1])
return {1, previous + 1}
"""


class RedisLockoutStore:
    """The production store, shared by every node. Keys of one bucket share a hash tag (Redis Cluster)."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        from config.redis import redis_retry_options

        self.prefix = f"{prefix}:lockout"
        self.client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, **redis_retry_options())
        self._reserve = self.client.register_script(_RESERVE)
        self._settle = self.client.register_script(_SETTLE)

    def _keys(self, bucket: str) -> list[str]:
        return [f"{self.prefix}:{{{bucket}}}:{part}" for part in ("failures", "in-flight", "locked", "lockouts")]

    def reserve(self, *, bucket: str, attempt_id: str, threshold: int) -> tuple[Hold, bool]:
        now = time.time()
        hold, clean = self._reserve(keys=self._keys(bucket), args=[
            now, threshold, attempt_id, now + RESERVATION_SECONDS, RESERVATION_SECONDS])
        return Hold(int(hold)), bool(int(clean))

    def settle(self, *, bucket: str, attempt_id: str, verdict: Verdict, policy: LockoutPolicy,
               clean: bool = False) -> Settled:
        if verdict is Verdict.RELEASED or (verdict is Verdict.SUCCEEDED and clean):
            # Nothing to count and nothing to forgive: the reservation ends (ZREM, not the script's three).
            self.client.zrem(self._keys(bucket)[1], attempt_id)
            return Settled()
        locked, lockouts = self._settle(keys=self._keys(bucket), args=[
            attempt_id, verdict.value, policy.threshold, FAILURE_WINDOW_SECONDS, policy.duration_seconds,
            MAX_LOCKOUT_SECONDS, MAX_LOCKOUT_SECONDS + FAILURE_WINDOW_SECONDS])
        return Settled(locked=bool(locked), lockouts=int(lockouts))

    def locked(self, *, bucket: str) -> bool:
        return bool(self.client.exists(self._keys(bucket)[2]))

    def locked_until(self, *, bucket: str) -> float | None:
        remaining_ms = int(self.client.pttl(self._keys(bucket)[2]))  # -2: no lock, -1: never (not written so)
        return time.time() + remaining_ms / 1000 if remaining_ms > 0 else None

    def clear(self) -> None:
        keys = list(self.client.scan_iter(match=f"{self.prefix}:*", count=1000))
        if keys:
            self.client.delete(*keys)

    def eviction_policy(self) -> str:
        """The server's maxmemory-policy: anything but noeviction lets a full Redis drop keys with a TTL (every
        lockout key has one) to make room for new ones, such as the sessions of a flood of usernames."""
        return str(self.client.info("memory").get("maxmemory_policy", ""))


_stores: dict[str, LockoutStore] = {}
_stores_lock = threading.Lock()


def lockout_store() -> LockoutStore:
    """This profile's store, one per process (the Redis client's pool is thread-safe)."""
    url = getattr(settings, "PTA_REDIS_URL", "")
    with _stores_lock:
        if url not in _stores:
            _stores[url] = RedisLockoutStore(url, settings.PTA_REDIS_PREFIX) if url else LocalLockoutStore()
        return _stores[url]


def _bucket(account: str, familiar: bool) -> str:
    return f"{account}:{'f' if familiar else 'u'}"


def lockout_reserve(*, tenant: Tenant | None, account: str, familiar: bool) -> Reservation:
    """Reserve one guess at ``account`` before the password is checked: LOCKED while the bucket is locked, BUSY
    while its failures and guesses in flight already reach the threshold (ask again once some are answered)."""
    policy = lockout_policy(tenant=tenant)
    bucket, attempt_id = _bucket(account, familiar), uuid.uuid4().hex
    hold, clean = lockout_store().reserve(bucket=bucket, attempt_id=attempt_id, threshold=policy.threshold)
    return Reservation(hold=hold, bucket=bucket, attempt_id=attempt_id, policy=policy, clean=clean)


def lockout_settle(*, reservation: Reservation, verdict: Verdict) -> Settled:
    """The answer to a reserved guess: a failure counts (and may lock the bucket), a success forgives."""
    if not reservation.granted:
        return Settled()
    return lockout_store().settle(bucket=reservation.bucket, attempt_id=reservation.attempt_id, verdict=verdict,
                                  policy=reservation.policy, clean=reservation.clean)


def lockout_ends(*, reservation: Reservation) -> float | None:
    """When the lock that refused this guess (Hold.LOCKED) ends, as a Unix time; None if it is over already.
    The sign-in page tells the person, as for any account name: unknown names have buckets too."""
    if reservation.hold is not Hold.LOCKED:
        return None
    return lockout_store().locked_until(bucket=reservation.bucket)


def lockout_active(*, account: str, familiar: bool) -> bool:
    return lockout_store().locked(bucket=_bucket(account, familiar))


# --- familiar places (addresses, devices), and the names an account was reached by --------------------------

def _places_key(tenant: Tenant | None, username: str) -> str:
    return f"places:{tenant.pk if tenant else '-'}:{_digest(username.lower())}"


def _familiar_key(tenant: Tenant | None, username: str, ip: str) -> str:
    """Before the per-account record (FAMILIAR_TTL_SECONDS after 2026-12-07 none is left): one key per address."""
    return f"familiar:{tenant.pk if tenant else '-'}:{_digest(username.lower(), ip)}"


def _device_key(tenant: Tenant | None, username: str, device: str) -> str:
    """Before the per-account record, as _familiar_key: one key per device."""
    return f"familiar-device:{tenant.pk if tenant else '-'}:{_digest(username.lower(), device)}"


def _alias_key(tenant: Tenant | None, typed: str) -> str:
    return f"alias:{tenant.pk if tenant else '-'}:{_digest(username_folded(upn=typed))}"


@dataclass(frozen=True)
class Place:
    """Where a sign-in comes from, as the account knows it: an address (a familiar one has its own lockout bucket)
    and a device (the browser's cookie), each remembered for FAMILIAR_TTL_SECONDS after a complete sign-in.
    ``record`` is the account's record as read (for ``record_of``, the name it was read under), so that the same
    request's place_remember need not read it again."""

    familiar_address: bool
    known_device: bool
    record: Places | None = field(default=None, compare=False, repr=False)
    record_of: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class Places:
    """An account's familiar places, one cache entry per account (``places:…``): the digests of its addresses and
    of its devices, each with when it last completed a sign-in, at most FAMILIAR_PLACES_KEPT of each (the newest).
    One key per address and per device, as before, left every new browser's sign-in a key for 90 days: a user
    who clears cookies daily, or a script signing in, grew the store without bound."""

    addresses: dict[str, float]
    devices: dict[str, float]

    @classmethod
    def of(cls, value: object) -> Places:
        if isinstance(value, dict):
            addresses, devices = value.get("a"), value.get("d")
            if isinstance(addresses, dict) and isinstance(devices, dict):
                return cls(addresses, devices)
        return cls({}, {})

    def stored(self) -> dict[str, dict[str, float]]:
        return {"a": self.addresses, "d": self.devices}

    def fresh(self, *, address: str, device: str, now: float) -> bool:
        """Whether each of these (the ones given) was marked within PLACE_REFRESH_SECONDS."""
        return all(now - marks.get(mark, -math.inf) < PLACE_REFRESH_SECONDS
                   for marks, mark in ((self.addresses, address), (self.devices, device)) if mark)

    def with_place(self, *, address: str, device: str, now: float) -> Places:
        """This address and device seen now; older than FAMILIAR_TTL_SECONDS forgotten, the newest kept."""
        return Places(_newest(self.addresses, address, now), _newest(self.devices, device, now))


def _newest(marks: dict[str, float], mark: str, now: float) -> dict[str, float]:
    kept = {key: seen for key, seen in marks.items() if key != mark and now - seen < FAMILIAR_TTL_SECONDS}
    if mark:
        kept[mark] = now
    newest = sorted(kept.items(), key=lambda item: item[1])[-FAMILIAR_PLACES_KEPT:]
    return dict(newest)


def _place_marks(username: str, ip: str, device: str) -> tuple[str, str]:
    """The address's and the device's digests within the account's record ("" for what the sign-in did not give):
    salted with the name, so that a record's addresses cannot be found by hashing every address."""
    name = username.lower()
    return (_digest(name, "ip", ip)[:20] if ip else "", _digest(name, "device", device)[:20] if device else "")


def place_recognised(*, tenant: Tenant | None, username: str, ip: str, device: str) -> Place:
    """Whether this address and this device completed a sign-in of this account before: one cache round trip
    (the account's record, and the keys of before it, in one read)."""
    if not ip and not device:
        return Place(familiar_address=False, known_device=False)
    record, legacy_address, legacy_device = (_places_key(tenant, username),
                                             _familiar_key(tenant, username, ip) if ip else "",
                                             _device_key(tenant, username, device) if device else "")
    found = cache.get_many([key for key in (record, legacy_address, legacy_device) if key])
    places = Places.of(found.get(record))
    address, known = _place_marks(username, ip, device)
    now = time.time()
    return Place(
        familiar_address=bool(address and (now - places.addresses.get(address, -math.inf) < FAMILIAR_TTL_SECONDS
                                           or found.get(legacy_address))),
        known_device=bool(known and (now - places.devices.get(known, -math.inf) < FAMILIAR_TTL_SECONDS
                                     or found.get(legacy_device))),
        record=places, record_of=username.lower())


def place_remember(*, tenant: Tenant | None, username: str, ip: str, device: str, seen: Place | None = None
                   ) -> None:
    """This address and this device completed a sign-in of this user (second factor included, when one was
    asked): the account's record read (unless ``seen``, this request's place_recognised of the same name, read
    it already) and written, unless both were marked within PLACE_REFRESH_SECONDS (a person signing in from their
    usual browser and network writes nothing). Two sign-ins of one account at the same instant may keep one of
    their places only: the other is asked for its second factor once more, nothing worse."""
    address, known = _place_marks(username, ip, device)
    if not address and not known:
        return
    key, now = _places_key(tenant, username), time.time()
    if seen is not None and seen.record is not None and seen.record_of == username.lower():
        places = seen.record
    else:
        places = Places.of(cache.get(key))
    if places.fresh(address=address, device=known, now=now):
        return
    cache.set(key, places.with_place(address=address, device=known, now=now).stored(), timeout=FAMILIAR_TTL_SECONDS)


def alias_user_id(*, tenant: Tenant | None, typed: str) -> int | None:
    """The user a sign-in name other than the UPN (Alternate ID) last signed in, so its guesses count there."""
    return cache.get(_alias_key(tenant, typed))


def alias_remember(*, tenant: Tenant | None, typed: str, user: User) -> None:
    cache.set(_alias_key(tenant, typed), user.pk, timeout=FAMILIAR_TTL_SECONDS)
