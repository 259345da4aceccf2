"""Cloud smart lockout: the cloud account locks before AD's does, so attackers lock the cloud account only.

Every account has it: directory users, cloud-only accounts and platform administrators (whose policy is
PTA_PLATFORM_LOCKOUT_THRESHOLD). Failures are counted per account in two buckets: from familiar addresses (that
signed this account in before) and from all others, so an attacker elsewhere cannot lock the user out of their
usual places. Each lockout of a bucket lasts twice as long as the one before, up to MAX_LOCKOUT_SECONDS.

A guess is *reserved* before any agent is asked, atomically, and guesses still in flight count as failures
until their answer comes: whatever the concurrency, and on whichever nodes, at most ``threshold`` guesses per
window reach the directory. A guess that finds the threshold taken by guesses in flight waits for their answers
(BUSY): wrong ones lock the account, right ones free the way, so a burst of right passwords is slowed, not
refused. The counters live in Redis in production (one hash per account with its familiar places, reserved in by
one Lua script, so every node sees the same state) and in this process in the embedded profile. That Redis must
never evict keys (maxmemory-policy noeviction, signin/checks.py): the sessions and the cache share it, and a lock
dropped to make room for a flood of sessions would give an attacker a fresh threshold of guesses.

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
# Reservations that ended in their place's write (time 0), or ran out, are dropped by the reservation script this
# many at a time (production).
STALE_RESERVATIONS = 8
# While upgrading, a guess only the previous release's keys hold (a node of that release is serving) keeps the period
# on for as long as what such a node wrote can still count (its longest key: a lockout count), checked by each
# process at most every PREVIOUS_SEEN_CHECK_SECONDS: a node left behind never counts apart (docs/deploy.md).
PREVIOUS_SEEN_SECONDS = MAX_LOCKOUT_SECONDS + FAILURE_WINDOW_SECONDS
PREVIOUS_SEEN_CHECK_SECONDS = 60.0


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


# --- the production store: one record (a Redis hash) per account ------------------------------------------------
#
# The account's lockout state of both buckets and its familiar places live in one hash, ``lockout:{account}``, so
# that a sign-in reads them once and reserves its guess in the same script (the places decide the bucket). Fields:
#   a:<mark>, d:<mark>   an address's, a device's last complete sign-in (Unix time); digests, never the address
#   <b>:n, <b>:w         bucket b's (f: familiar, u: unfamiliar) failures and when their window ends
#   <b>:l                when bucket b's lock ends
#   <b>:o, <b>:q         bucket b's lockouts so far (each lasts twice the one before) and when they are forgotten
#   r:<b>:<attempt id>   a guess reserved in bucket b, and when the reservation runs out (its node died); 0 once a
#                        right password ended it in the same HSET as its new place (the reservation script drops
#                        such fields STALE_RESERVATIONS at a time: one HDEL in that many sign-ins, not one in each)
#   m                    the record has met the account's places of before it (the cache's ``places:`` record)
#   x                    when the key expires: a write that needs it to live longer renews it (EXPIRE), others not
# Each value carries its own end, so an old field is simply not counted; the key's TTL (the longest of what it
# holds: a guess's RESERVATION_SECONDS, failures' FAILURE_WINDOW_SECONDS, lockouts' MAX_LOCKOUT_SECONDS +
# FAILURE_WINDOW_SECONDS, as the previous keys; places FAMILIAR_TTL_SECONDS, and up to PLACE_REFRESH_SECONDS more, so
# that a new place renews it about once a day, not at each write) bounds it all.
#
# The previous release kept four keys per bucket (``lockout:{<account>:<b>}:failures|in-flight|locked|lockouts``)
# and the places in the cache. While upgrading (PTA_LOCKOUT_UPGRADE_SECONDS after this layout first met the Redis)
# the scripts read those keys too and write every reservation, failure, lock and forgiveness to them as well, so a
# node of either release sees every guess; then they are left to expire (75 minutes at most). The places of before
# are copied into a record once, at its first reservation (``m``): they live 90 days.

# KEYS: the account's record; while upgrading, the previous release's keys of its familiar bucket (failures, in
# flight, locked, lockouts), then of its unfamiliar one, and the previous release's last-seen marker.
# ARGV: now, threshold, attempt id, reservation seconds, the address's field, the device's field, a place's time,
# places kept, the bucket ('f', 'u' or '': by the address), upgrading ('1'), seed ('0': answer {-1} at once if the
# record has not met the places of before it; '1': they follow, field and time pairs; '-': no matter).
# Returns the hold, whether the bucket had nothing to forgive, whether the address and the device are known, the
# bucket, the key's expiry and the record's places (field, time pairs).
_RESERVE = """
local now, threshold = tonumber(ARGV[1]), tonumber(ARGV[2])
local flat = redis.call('HGETALL', KEYS[1])
local s = {}
for i = 1, #flat, 2 do s[flat[i]] = flat[i + 1] end
if ARGV[11] == '0' and not s['m'] then return {-1} end
local function str(n) return string.format('%.6f', n) end
local function num(f) return tonumber(s[f] or '0') end
local ttl, kept = tonumber(ARGV[7]), tonumber(ARGV[8])
local writes, needed = {}, 0
local function put(f, v) s[f] = v; writes[#writes + 1] = f; writes[#writes + 1] = v end
if ARGV[11] == '1' then
  for i = 12, #ARGV, 2 do
    local t = tonumber(ARGV[i + 1])
    if num(ARGV[i]) < t then put(ARGV[i], ARGV[i + 1]); needed = math.max(needed, t + ttl) end
  end
  put('m', '1')
end
local places = {}
for f, v in pairs(s) do
  local kind = string.sub(f, 1, 2)
  if kind == 'a:' or kind == 'd:' then places[#places + 1] = f; places[#places + 1] = v end
end
local function knows(f)
  if f == '' or not s[f] then return 0 end
  local t = tonumber(s[f])
  if now - t >= ttl then return 0 end
  local kind, newer = string.sub(f, 1, 2), 0
  for g, v in pairs(s) do
    if string.sub(g, 1, 2) == kind and tonumber(v) > t then newer = newer + 1 end
  end
  return newer < kept and 1 or 0
end
local familiar, known = knows(ARGV[5]), knows(ARGV[6])
local b = ARGV[9]
if b == '' then b = familiar == 1 and 'f' or 'u' end
local locked = num(b .. ':l') > now
local failures = num(b .. ':w') > now and num(b .. ':n') or 0
local clean = failures == 0 and num(b .. ':q') <= now
local flying, stale, mine = 0, {}, 'r:' .. b .. ':'
local own = mine .. ARGV[3]
for f, v in pairs(s) do
  if string.sub(f, 1, 2) == 'r:' then
    if tonumber(v) <= now then stale[#stale + 1] = f
    elseif string.sub(f, 1, #mine) == mine and f ~= own then flying = flying + 1 end
  end
end
local old = b == 'f' and 1 or 5
if ARGV[10] == '1' then
  local state = redis.call('MGET', KEYS[old + 3], KEYS[old + 1], KEYS[old + 4])
  local before = tonumber(state[2] or '0')
  local theirs = redis.call('ZCOUNT', KEYS[old + 2], '(' .. ARGV[1], '+inf')
  if redis.call('ZSCORE', KEYS[old + 2], ARGV[3]) then theirs = theirs - 1 end
  if before > failures or theirs > flying then
    -- a guess only the previous keys hold: a node of the previous release is serving (upgrading() stays on)
    redis.call('SET', KEYS[10], ARGV[1], 'EX', PREVIOUS_SEEN_SECONDS)
  end
  locked = locked or state[1] ~= false
  clean = clean and before == 0 and not state[3]
  failures = math.max(failures, before)
  flying = math.max(flying, theirs)
end
local hold = 1
if locked then hold = 0 elseif failures + flying >= threshold then hold = 2 end
if hold == 1 then
  local expiry = now + tonumber(ARGV[4])
  put(mine .. ARGV[3], str(expiry))
  needed = math.max(needed, expiry)
  if ARGV[10] == '1' then
    redis.call('ZADD', KEYS[old + 2], expiry, ARGV[3])
    redis.call('EXPIRE', KEYS[old + 2], ARGV[4])
  end
end
local x = num('x')
if x == 0 then needed = math.max(needed, now + tonumber(ARGV[4])) end  -- a new key never lives for ever
if #writes > 0 then
  local renew = needed > x
  if renew then x = needed; put('x', str(x)) end
  redis.call('HSET', KEYS[1], unpack(writes))
  if renew then redis.call('EXPIRE', KEYS[1], math.ceil(x - now)) end
end
if #stale >= STALE_RESERVATIONS then redis.call('HDEL', KEYS[1], unpack(stale)) end
return {hold, clean and 1 or 0, familiar, known, b, str(x), places}
""".replace("STALE_RESERVATIONS", str(STALE_RESERVATIONS)).replace("PREVIOUS_SEEN_SECONDS",
                                                                 str(PREVIOUS_SEEN_SECONDS))

# A wrong guess's answer. KEYS: the account's record; while upgrading, the previous release's keys of the bucket
# (failures, in flight, locked, lockouts) and its last-seen marker. ARGV: now, the bucket, attempt id, threshold,
# window, base duration, max duration, lockouts' time, upgrading ('1'). Returns whether it locked the bucket, and
# its lockouts so far.
_FAIL = """
local now, b = tonumber(ARGV[1]), ARGV[2]
local mine = 'r:' .. b .. ':' .. ARGV[3]
local v = redis.call('HMGET', KEYS[1], mine, b .. ':n', b .. ':w', b .. ':o', b .. ':q', 'x')
local upgrading = ARGV[9] == '1'
local was = v[1] ~= false
if upgrading and redis.call('ZREM', KEYS[3], ARGV[3]) == 1 then was = true end
if not was then return {0, 0} end
local function str(n) return string.format('%.6f', n) end
local window, failures = tonumber(v[3] or '0'), 0
if window > now then failures = tonumber(v[2] or '0') else window = now + tonumber(ARGV[5]) end
failures = failures + 1
if upgrading then
  local before = redis.call('INCR', KEYS[2])
  if before == 1 then redis.call('EXPIRE', KEYS[2], ARGV[5]) end
  failures = math.max(failures, before)
end
local writes, needed, locked, lockouts
if failures < tonumber(ARGV[4]) then
  writes, needed, locked, lockouts = {b .. ':n', failures, b .. ':w', str(window)}, window, 0, 0
else
  local previous = tonumber(v[5] or '0') > now and tonumber(v[4] or '0') or 0
  if upgrading then previous = math.max(previous, tonumber(redis.call('GET', KEYS[5]) or '0')) end
  local duration = math.min(tonumber(ARGV[6]) * 2 ^ previous, tonumber(ARGV[7]))
  locked, lockouts, needed = 1, previous + 1, now + tonumber(ARGV[8])
  writes = {b .. ':l', str(now + duration), b .. ':o', lockouts, b .. ':q', str(needed), b .. ':n', 0, b .. ':w', 0}
  if upgrading then
    redis.call('SET', KEYS[4], '1', 'EX', math.ceil(duration))
    redis.call('SET', KEYS[5], lockouts, 'EX', ARGV[8])
    redis.call('DEL', KEYS[2])
  end
end
local x = tonumber(v[6] or '0')
local renew = needed > x
if renew then x = needed; writes[#writes + 1] = 'x'; writes[#writes + 1] = str(x) end
redis.call('HSET', KEYS[1], unpack(writes))
redis.call('HDEL', KEYS[1], mine)
if renew then redis.call('EXPIRE', KEYS[1], math.ceil(x - now)) end
return {locked, lockouts}
"""

# When this layout first met the Redis: it starts the upgrade's period (PTA_LOCKOUT_UPGRADE_SECONDS).
LAYOUT_MARKER_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class Reserved:
    """What the reservation script answered: the hold, the account's places as it read them, the bucket."""

    hold: Hold
    clean: bool
    bucket: str
    familiar_address: bool
    known_device: bool
    places: Places


class RedisLockoutStore:
    """The production store, shared by every node: one hash per account (its key is the only one a script of it
    touches, the previous release's keys aside while upgrading)."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        from config.redis import redis_retry_options

        self.prefix = f"{prefix}:lockout"
        self.client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, **redis_retry_options())
        self._reserve = self.client.register_script(_RESERVE)
        self._fail = self.client.register_script(_FAIL)
        self._layout_since: float | None = None
        self._previous_seen = 0.0  # the newest guess of a previous release's node, as last read
        self._previous_checked = 0.0

    def record_key(self, account: str) -> str:
        return f"{self.prefix}:{{{account}}}"

    def _previous_keys(self, account: str, side: str) -> list[str]:
        """The previous release's four keys of one bucket."""
        return [f"{self.prefix}:{{{account}:{side}}}:{part}"
                for part in ("failures", "in-flight", "locked", "lockouts")]

    def upgrading(self) -> bool:
        """Whether the previous release's keys are read and written too: for PTA_LOCKOUT_UPGRADE_SECONDS after this
        layout first met the Redis (one command per process, the first time it asks), and beyond while the scripts
        still see guesses that only a node of the previous release made (one GET a minute per process then)."""
        seconds = settings.PTA_LOCKOUT_UPGRADE_SECONDS
        if not seconds:
            return False
        now = time.time()
        if self._layout_since is None:
            since = self.client.set(f"{self.prefix}:layout-since", now, nx=True, get=True, ex=LAYOUT_MARKER_SECONDS)
            self._layout_since = float(since) if since is not None else now
        if now < self._layout_since + seconds:
            return True
        if now - self._previous_checked >= PREVIOUS_SEEN_CHECK_SECONDS:
            self._previous_checked = now
            self._previous_seen = float(self.client.get(self._previous_seen_key()) or 0)
        return now < self._previous_seen + PREVIOUS_SEEN_SECONDS

    def _previous_seen_key(self) -> str:
        return f"{self.prefix}:previous-seen"

    def _script_keys(self, account: str, *sides: str, upgrading: bool) -> list[str]:
        """The record alone (one Redis Cluster slot), or while upgrading the previous release's keys too."""
        if not upgrading:
            return [self.record_key(account)]
        return [self.record_key(account), *(key for side in sides for key in self._previous_keys(account, side)),
                self._previous_seen_key()]

    def reserve_at(self, *, account: str, address: str, device: str, attempt_id: str, threshold: int,
                   side: str = "", seed: list[tuple[str, float]] | None = None) -> Reserved | None:
        """Reserve a guess in the account's bucket for this address (``side``: that bucket, whatever the places),
        reading its places in the same script. None: the record has not met the places of before it; ask again
        with ``seed``, what they hold."""
        now, upgrading = time.time(), self.upgrading()
        pairs = [str(item) for pair in (seed or []) for item in pair]
        answer = self._reserve(
            keys=self._script_keys(account, "f", "u", upgrading=upgrading),
            args=[repr(now), threshold, attempt_id, RESERVATION_SECONDS, f"a:{address}" if address else "",
                  f"d:{device}" if device else "", FAMILIAR_TTL_SECONDS, FAMILIAR_PLACES_KEPT, side,
                  "1" if upgrading else "0", "-" if side else ("1" if seed is not None else "0"), *pairs])
        if int(answer[0]) == -1:
            return None
        hold, clean, familiar, known, bucket_side, expires, flat = answer
        fields = {_text(flat[i]): float(flat[i + 1]) for i in range(0, len(flat), 2)}
        return Reserved(hold=Hold(int(hold)), clean=bool(int(clean)), bucket=_bucket_of(account, _text(bucket_side)),
                        familiar_address=bool(int(familiar)), known_device=bool(int(known)),
                        places=Places.of_fields(fields, expires=float(expires)))

    def reserve(self, *, bucket: str, attempt_id: str, threshold: int) -> tuple[Hold, bool]:
        account, side = bucket.rsplit(":", 1)
        reserved = self.reserve_at(account=account, address="", device="", attempt_id=attempt_id,
                                   threshold=threshold, side=side)
        assert reserved is not None  # a bucket named: the places do not matter
        return reserved.hold, reserved.clean

    def settle(self, *, bucket: str, attempt_id: str, verdict: Verdict, policy: LockoutPolicy,
               clean: bool = False) -> Settled:
        account, side = bucket.rsplit(":", 1)
        key, mine, upgrading = self.record_key(account), f"r:{side}:{attempt_id}", self.upgrading()
        if verdict is Verdict.FAILED:
            locked, lockouts = self._fail(keys=self._script_keys(account, side, upgrading=upgrading), args=[
                repr(time.time()), side, attempt_id, policy.threshold, FAILURE_WINDOW_SECONDS,
                policy.duration_seconds, MAX_LOCKOUT_SECONDS, MAX_LOCKOUT_SECONDS + FAILURE_WINDOW_SECONDS,
                "1" if upgrading else "0"])
            return Settled(locked=bool(locked), lockouts=int(lockouts))
        # The reservation ends; a right password forgives the bucket's failures and lockouts, unless it found none
        # (then a wrong guess in flight meanwhile is not forgiven: stricter, never looser). One HDEL either way.
        forgive = verdict is Verdict.SUCCEEDED and not clean
        fields = [mine, *(f"{side}:{part}" for part in ("n", "w", "o", "q"))] if forgive else [mine]
        if not upgrading:
            self.client.hdel(key, *fields)
            return Settled()
        previous = self._previous_keys(account, side)
        pipe = self.client.pipeline(transaction=False)
        pipe.hdel(key, *fields)
        pipe.zrem(previous[1], attempt_id)
        if forgive:
            pipe.delete(previous[0], previous[3])
        pipe.execute()
        return Settled()

    def locked_until(self, *, bucket: str) -> float | None:
        account, side = bucket.rsplit(":", 1)
        until = float(self.client.hget(self.record_key(account), f"{side}:l") or 0)
        if self.upgrading():
            remaining_ms = int(self.client.pttl(self._previous_keys(account, side)[2]))  # -2: none
            until = max(until, time.time() + remaining_ms / 1000 if remaining_ms > 0 else 0)
        return until if until > time.time() else None

    def locked(self, *, bucket: str) -> bool:
        return self.locked_until(bucket=bucket) is not None

    def places(self, *, account: str) -> Places:
        """The account's places as its record holds them (``seeded`` False: it has not met those of before it)."""
        flat = self.client.hgetall(self.record_key(account))
        fields = {_text(name): value for name, value in flat.items()}
        return Places.of_fields({name: float(value) for name, value in fields.items() if name[:2] in ("a:", "d:")},
                                expires=float(fields.get("x", 0)), seeded="m" in fields)

    def places_write(self, *, account: str, places: Places, address: str, device: str, now: float,
                     ending: str = "") -> None:
        """This address and device seen now: one HSET, the key's EXPIRE about once a day (when its expiry falls
        short of a place's time), and an HDEL of the oldest marks when either kind holds twice as many as are kept
        (so about once in FAMILIAR_PLACES_KEPT sign-ins of a browser that keeps no cookie). ``ending``: the
        reservation (its attempt id and bucket) a right password ends, in the same HSET (its time set to 0)."""
        key, fields = self.record_key(account), dict[str, str]()
        if ending:
            fields[ending] = "0"
        if address:
            fields[f"a:{address}"] = repr(now)
        if device:
            fields[f"d:{device}"] = repr(now)
        expires = places.expires
        if now + FAMILIAR_TTL_SECONDS > expires:
            expires = now + FAMILIAR_TTL_SECONDS + PLACE_REFRESH_SECONDS
            fields["x"] = repr(expires)
        dropped = [f"a:{mark}" for mark in _overflow(places.addresses, address)]
        dropped += [f"d:{mark}" for mark in _overflow(places.devices, device)]
        # With an EXPIRE, one transaction (about once a day per account): an HSET of "x" without its EXPIRE (a
        # dropped connection, the last second of an append-only file lost) would make every later write think the
        # key lives on, and the record, a lock with it, would end with the key's older, shorter TTL.
        pipe = self.client.pipeline(transaction=expires != places.expires)
        pipe.hset(key, items=[item for pair in fields.items() for item in pair])
        if expires != places.expires:
            pipe.expire(key, math.ceil(expires - now))
        if dropped:
            pipe.hdel(key, *dropped)
        pipe.execute()

    def clear(self) -> None:
        keys = list(self.client.scan_iter(match=f"{self.prefix}:*", count=1000))
        if keys:
            self.client.delete(*keys)
        self._layout_since = None
        self._previous_seen = self._previous_checked = 0.0

    def eviction_policy(self) -> str:
        """The server's maxmemory-policy: anything but noeviction lets a full Redis drop keys with a TTL (every
        lockout key has one) to make room for new ones, such as the sessions of a flood of usernames."""
        return str(self.client.info("memory").get("maxmemory_policy", ""))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _overflow(marks: dict[str, float], adding: str) -> list[str]:
    """The oldest marks to drop once a kind would hold more than twice FAMILIAR_PLACES_KEPT (down to that many)."""
    if not adding or adding in marks or len(marks) + 1 <= 2 * FAMILIAR_PLACES_KEPT:
        return []
    oldest = sorted(marks, key=marks.__getitem__)
    return oldest[:len(marks) + 1 - FAMILIAR_PLACES_KEPT]


_stores: dict[str, LockoutStore] = {}
_stores_lock = threading.Lock()


def lockout_store() -> LockoutStore:
    """This profile's store, one per process (the Redis client's pool is thread-safe)."""
    url = getattr(settings, "PTA_REDIS_URL", "")
    with _stores_lock:
        if url not in _stores:
            _stores[url] = RedisLockoutStore(url, settings.PTA_REDIS_PREFIX) if url else LocalLockoutStore()
        return _stores[url]


def _bucket_of(account: str, side: str) -> str:
    return f"{account}:{side}"


def _bucket(account: str, familiar: bool) -> str:
    return _bucket_of(account, "f" if familiar else "u")


def lockout_reserve(*, tenant: Tenant | None, account: str, familiar: bool) -> Reservation:
    """Reserve one guess at ``account`` before the password is checked: LOCKED while the bucket is locked, BUSY
    while its failures and guesses in flight already reach the threshold (ask again once some are answered)."""
    policy = lockout_policy(tenant=tenant)
    bucket, attempt_id = _bucket(account, familiar), uuid.uuid4().hex
    hold, clean = lockout_store().reserve(bucket=bucket, attempt_id=attempt_id, threshold=policy.threshold)
    return Reservation(hold=hold, bucket=bucket, attempt_id=attempt_id, policy=policy, clean=clean)


def lockout_reserve_at(*, tenant: Tenant | None, account: str, username: str, ip: str, device: str
                       ) -> tuple[Place, Reservation]:
    """place_recognised, then lockout_reserve in the bucket it says: in production one script (the account's
    record read once, the guess reserved in it), in the embedded profile the two calls."""
    store = lockout_store()
    if not isinstance(store, RedisLockoutStore):
        place = place_recognised(tenant=tenant, username=username, ip=ip, device=device)
        return place, lockout_reserve(tenant=tenant, account=account, familiar=place.familiar_address)
    policy, attempt_id = lockout_policy(tenant=tenant), uuid.uuid4().hex
    address, known = _place_marks(username, ip, device)
    reserved = store.reserve_at(account=account, address=address, device=known, attempt_id=attempt_id,
                                threshold=policy.threshold)
    if reserved is None:  # the record has not met the places of before it (the cache's): once per account
        reserved = store.reserve_at(account=account, address=address, device=known, attempt_id=attempt_id,
                                    threshold=policy.threshold,
                                    seed=_previous_places(tenant, username, ip, device).seed(now=time.time()))
    assert reserved is not None  # seeded
    place = Place(familiar_address=reserved.familiar_address, known_device=reserved.known_device,
                  record=reserved.places, record_of=store.record_key(account))
    return place, Reservation(hold=reserved.hold, bucket=reserved.bucket, attempt_id=attempt_id, policy=policy,
                              clean=reserved.clean)


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
#
# In production they are in the account's lockout record (RedisLockoutStore, above); in the embedded profile,
# and before this layout in production, in the cache: one ``places:`` entry per account, and before that one key
# per address and per device.

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
    ``record`` is the account's record as read (``record_of``: the key it was read from), so that the same
    request's place_remember need not read it again."""

    familiar_address: bool
    known_device: bool
    record: Places | None = field(default=None, compare=False, repr=False)
    record_of: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class Places:
    """An account's familiar places: the digests of its addresses and of its devices, each with when it last
    completed a sign-in; a place is known while it is among the newest FAMILIAR_PLACES_KEPT of its kind and
    younger than FAMILIAR_TTL_SECONDS. One key per address and per device, as long ago, left every new browser's
    sign-in a key for 90 days: a user who clears cookies daily, or a script signing in, grew the store without
    bound. ``expires``: when the record's key expires (production); ``seeded``: the record has met the places of
    before it."""

    addresses: dict[str, float]
    devices: dict[str, float]
    expires: float = 0.0
    seeded: bool = True

    @classmethod
    def of(cls, value: object) -> Places:
        """The cache's record (the embedded profile, and production before the lockout record)."""
        if isinstance(value, dict):
            addresses, devices = value.get("a"), value.get("d")
            if isinstance(addresses, dict) and isinstance(devices, dict):
                return cls(addresses, devices)
        return cls({}, {})

    @classmethod
    def of_fields(cls, fields: dict[str, float], *, expires: float = 0.0, seeded: bool = True) -> Places:
        """The lockout record's ``a:`` and ``d:`` fields."""
        return cls({name[2:]: seen for name, seen in fields.items() if name.startswith("a:")},
                   {name[2:]: seen for name, seen in fields.items() if name.startswith("d:")}, expires, seeded)

    def stored(self) -> dict[str, dict[str, float]]:
        return {"a": self.addresses, "d": self.devices}

    def knows(self, *, address: str = "", device: str = "", now: float) -> bool:
        marks, mark = (self.addresses, address) if address else (self.devices, device)
        seen = marks.get(mark)
        if not mark or seen is None or now - seen >= FAMILIAR_TTL_SECONDS:
            return False
        return sum(1 for other in marks.values() if other > seen) < FAMILIAR_PLACES_KEPT

    def fresh(self, *, address: str, device: str, now: float) -> bool:
        """Whether each of these (the ones given) was marked within PLACE_REFRESH_SECONDS."""
        return all(now - marks.get(mark, -math.inf) < PLACE_REFRESH_SECONDS
                   for marks, mark in ((self.addresses, address), (self.devices, device)) if mark)

    def with_place(self, *, address: str, device: str, now: float) -> Places:
        """This address and device seen now; older than FAMILIAR_TTL_SECONDS forgotten, the newest kept."""
        return Places(_newest(self.addresses, address, now), _newest(self.devices, device, now))

    def merged(self, other: Places) -> Places:
        """Both records' marks, the later time of each."""
        def union(mine: dict[str, float], theirs: dict[str, float]) -> dict[str, float]:
            return {mark: max(mine.get(mark, -math.inf), theirs.get(mark, -math.inf)) for mark in {*mine, *theirs}}
        return Places(union(self.addresses, other.addresses), union(self.devices, other.devices), self.expires,
                      self.seeded)

    def seed(self, *, now: float) -> list[tuple[str, float]]:
        """Its marks younger than FAMILIAR_TTL_SECONDS as the lockout record's fields, the newest kept of each."""
        return [(f"{kind}:{mark}", seen) for kind, marks in (("a", self.addresses), ("d", self.devices))
                for mark, seen in sorted(marks.items(), key=lambda item: item[1])[-FAMILIAR_PLACES_KEPT:]
                if now - seen < FAMILIAR_TTL_SECONDS]


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


def _previous_places(tenant: Tenant | None, username: str, ip: str, device: str) -> Places:
    """The account's places in the cache (one cache round trip: its record and the keys of before it in one read),
    the per-place keys of before it as marks of now. The embedded profile's places; production's before its
    lockout record."""
    record, legacy_address, legacy_device = (_places_key(tenant, username),
                                             _familiar_key(tenant, username, ip) if ip else "",
                                             _device_key(tenant, username, device) if device else "")
    found = cache.get_many([key for key in (record, legacy_address, legacy_device) if key])
    places = Places.of(found.get(record))
    address, known = _place_marks(username, ip, device)
    now = time.time()
    if found.get(legacy_address):
        places = places.merged(Places({address: now}, {}))
    if found.get(legacy_device):
        places = places.merged(Places({}, {known: now}))
    return places


def place_recognised(*, tenant: Tenant | None, username: str, ip: str, device: str) -> Place:
    """Whether this address and this device completed a sign-in of this account before: one Redis round trip (in
    production the account's lockout record, and once per account the cache's places of before it; the sign-in's
    own check reads them in its reservation: lockout_reserve_at)."""
    if not ip and not device:
        return Place(familiar_address=False, known_device=False)
    address, known = _place_marks(username, ip, device)
    store = lockout_store()
    if isinstance(store, RedisLockoutStore):
        account = lockout_account(tenant=tenant, user=None, username=username)
        key, places = store.record_key(account), store.places(account=account)
        if not places.seeded:
            places = places.merged(_previous_places(tenant, username, ip, device))
    else:
        key, places = _places_key(tenant, username), _previous_places(tenant, username, ip, device)
    now = time.time()
    return Place(familiar_address=places.knows(address=address, now=now),
                 known_device=places.knows(device=known, now=now), record=places, record_of=key)


def place_remember(*, tenant: Tenant | None, username: str, ip: str, device: str, seen: Place | None = None,
                   ending: Reservation | None = None) -> bool:
    """This address and this device completed a sign-in of this user (second factor included, when one was
    asked): the account's record read (unless ``seen``, this request's read of the same record, has it) and
    written, unless both were marked within PLACE_REFRESH_SECONDS (a person signing in from their usual browser
    and network writes nothing). Two sign-ins of one account at the same instant may keep one of their places
    only: the other is asked for its second factor once more, nothing worse.

    ``ending``: this sign-in's reservation, granted and clean (its right password has nothing to forgive), which
    the same write ends when it is a write of the same account's record (production): True then, and the caller
    does not settle it; False (nothing written, or not this record) leaves it to the caller."""
    address, known = _place_marks(username, ip, device)
    if not address and not known:
        return False
    store, now = lockout_store(), time.time()
    if isinstance(store, RedisLockoutStore):
        account = lockout_account(tenant=tenant, user=None, username=username)
        key = store.record_key(account)
        if seen is not None and seen.record is not None and seen.record_of == key:
            places = seen.record
        else:
            places = store.places(account=account)
        if places.fresh(address=address, device=known, now=now):
            return False
        owned, _, side = ending.bucket.rpartition(":") if ending is not None else ("", "", "")
        # Not while upgrading: the previous release's in-flight key holds the reservation too (settle ends both).
        ends = (ending is not None and ending.granted and ending.clean and owned == account
                and not store.upgrading())
        store.places_write(account=account, places=places, address=address, device=known, now=now,
                           ending=f"r:{side}:{ending.attempt_id}" if ends and ending is not None else "")
        return ends
    key = _places_key(tenant, username)
    if seen is not None and seen.record is not None and seen.record_of == key:
        places = seen.record
    else:
        places = Places.of(cache.get(key))
    if places.fresh(address=address, device=known, now=now):
        return False
    cache.set(key, places.with_place(address=address, device=known, now=now).stored(), timeout=FAMILIAR_TTL_SECONDS)
    return False


def places_of(*, tenant: Tenant | None, username: str) -> Places:
    """The account's familiar places as its record holds them (digests and times; what an operator or a test may
    look at)."""
    store = lockout_store()
    if isinstance(store, RedisLockoutStore):
        return store.places(account=lockout_account(tenant=tenant, user=None, username=username))
    return Places.of(cache.get(_places_key(tenant, username)))


def alias_user_id(*, tenant: Tenant | None, typed: str) -> int | None:
    """The user a sign-in name other than the UPN (Alternate ID) last signed in, so its guesses count there."""
    return cache.get(_alias_key(tenant, typed))


def alias_remember(*, tenant: Tenant | None, typed: str, user: User) -> None:
    cache.set(_alias_key(tenant, typed), user.pk, timeout=FAMILIAR_TTL_SECONDS)
