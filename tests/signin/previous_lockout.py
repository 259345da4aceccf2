"""The previous release's Redis lockout store, as it was (signin/services/lockout.py before the per-account record,
commit 5275f65): four keys per bucket and two scripts. Its nodes share the Redis with this release's during a
rolling upgrade; tests/signin/test_lockout_upgrade.py plays one against the other."""

from __future__ import annotations

import time

from signin.services.lockout import (
    FAILURE_WINDOW_SECONDS,
    MAX_LOCKOUT_SECONDS,
    RESERVATION_SECONDS,
    Hold,
    LockoutPolicy,
    Settled,
    Verdict,
)

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


class PreviousRedisLockoutStore:
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


