"""The presence registry: which agents are connected, to which node and channel, and how busy they are.

``disconnect()`` never runs when a node crashes and channel groups cannot be listed, so every node
republishes the agents connected to it (``agents.connections.PresenceKeeper``) and a record that is not
refreshed expires after ``protocol.PRESENCE_TTL_SECONDS`` (three missed heartbeats).

Production (``settings.PTA_REDIS_URL``): one key per agent holding a JSON record, with a TTL, plus one
sorted set per tenant scored by each record's expiry time, so a tenant's agents are one range query.

    {prefix}:presence:agent:{agent_id}    → JSON record, EX ttl
    {prefix}:presence:tenant:{tenant_id}  → ZSET agent_id → expiry (epoch seconds)

The embedded profile keeps the same records in a dict in this process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import pta_protocol as protocol
from django.conf import settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PresenceRecord:
    """One connected agent, as every node sees it."""

    agent_id: str
    tenant_id: str
    domains: tuple[str, ...]
    node_id: str
    channel_name: str
    key_id: str = ""  # the agent's current key: what the hand-off seals the password for
    in_flight: int = 0
    capacity: int = 0
    version: str = ""
    dc_reachable: bool = True
    connected_at: float = 0.0
    last_beat: float = 0.0
    # What the agent announced in its hello beyond validating passwords (protocol.CAPABILITY_*).
    capabilities: tuple[str, ...] = ()
    # The agent's protocol version (its hello), and what the node holding the connection reads of the messages
    # between nodes (agents.handoff.messages.NODE_PROTOCOL). Absent from an older node's record: 1. Readers
    # ignore keys they do not know, so an older node reads a newer node's record.
    protocol: int = 1
    node_protocol: int = 1

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> PresenceRecord | None:
        try:
            data = json.loads(text)
            data["domains"] = tuple(data.get("domains") or ())
            data["capabilities"] = tuple(data.get("capabilities") or ())
            return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})
        except (ValueError, TypeError, KeyError):
            return None


class PresenceRegistry(Protocol):
    async def publish(self, records: Sequence[PresenceRecord]) -> None:
        """Write or refresh records; an older connection never overwrites a newer one of the same agent."""

    async def withdraw(self, *, agent_id: str, tenant_id: str, channel_name: str | None = None) -> None:
        """Remove an agent's record; with ``channel_name``, only if it is still that connection's."""

    async def for_tenant(self, *, tenant_id: str) -> list[PresenceRecord]:
        """The unexpired records of a tenant's agents."""

    async def sample_tenant(self, *, tenant_id: str, count: int) -> tuple[list[PresenceRecord], bool]:
        """At most ``count`` unexpired records of the tenant's agents, drawn at random when it has more, and
        whether they are all of them (True: what for_tenant would give). Bounded work per sign-in, however many
        agents the tenant has."""
        ...

    async def for_agent(self, *, agent_id: str) -> PresenceRecord | None: ...

    async def for_agents(self, *, agent_ids: Sequence[str]) -> dict[str, PresenceRecord | None]:
        """Each agent's presence (None: not connected), in one round trip."""
        ...

    async def aclose(self) -> None: ...


def _newer_wins(current: PresenceRecord | None, candidate: PresenceRecord) -> bool:
    return (current is None or current.channel_name == candidate.channel_name
            or current.connected_at <= candidate.connected_at)


class InProcessPresence:
    """The embedded profile's registry: one process, so a dict with expiry times does."""

    def __init__(self, ttl_seconds: float = protocol.PRESENCE_TTL_SECONDS) -> None:
        self.ttl_seconds = ttl_seconds
        self._records: dict[str, tuple[PresenceRecord, float]] = {}
        # Each tenant's agents: a sign-in reads its tenant's, not every agent's of the process.
        self._by_tenant: dict[str, set[str]] = {}

    def _live(self, agent_id: str, now: float) -> PresenceRecord | None:
        entry = self._records.get(agent_id)
        if entry is None:
            return None
        if entry[1] <= now:
            self._forget(agent_id)
            return None
        return entry[0]

    def _forget(self, agent_id: str) -> None:
        record, _ = self._records.pop(agent_id)
        members = self._by_tenant.get(record.tenant_id)
        if members is not None:
            members.discard(agent_id)
            if not members:
                del self._by_tenant[record.tenant_id]

    async def publish(self, records: Sequence[PresenceRecord]) -> None:
        now = time.time()
        for tenant_id in {r.tenant_id for r in records}:  # as Redis's flush does: a sample draws live ones
            for agent_id in list(self._by_tenant.get(tenant_id, ())):
                self._live(agent_id, now)
        for record in records:
            current = self._live(record.agent_id, now)
            if _newer_wins(current, record):
                if current is not None:
                    self._forget(record.agent_id)  # its tenant may have changed with it
                self._records[record.agent_id] = (record, now + self.ttl_seconds)
                self._by_tenant.setdefault(record.tenant_id, set()).add(record.agent_id)

    async def withdraw(self, *, agent_id: str, tenant_id: str, channel_name: str | None = None) -> None:
        current = self._live(agent_id, time.time())
        if current is not None and (channel_name is None or current.channel_name == channel_name):
            self._forget(agent_id)

    async def for_tenant(self, *, tenant_id: str) -> list[PresenceRecord]:
        now = time.time()
        found = (self._live(a, now) for a in list(self._by_tenant.get(tenant_id, ())))
        return [r for r in found if r is not None and r.tenant_id == tenant_id]

    async def sample_tenant(self, *, tenant_id: str, count: int) -> tuple[list[PresenceRecord], bool]:
        members = self._by_tenant.get(tenant_id, ())
        if len(members) <= count:
            return await self.for_tenant(tenant_id=tenant_id), True
        now = time.time()
        found = (self._live(a, now) for a in random.sample(sorted(members), count))
        return [r for r in found if r is not None and r.tenant_id == tenant_id], False

    async def for_agent(self, *, agent_id: str) -> PresenceRecord | None:
        return self._live(agent_id, time.time())

    async def for_agents(self, *, agent_ids: Sequence[str]) -> dict[str, PresenceRecord | None]:
        now = time.time()
        return {agent_id: self._live(agent_id, now) for agent_id in agent_ids}

    async def aclose(self) -> None:
        pass


# KEYS: agent key, tenant key, agent key, tenant key, …  ARGV: ttl, now, record, record, …
_PUBLISH = """
local ttl = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local swept = {}
for i = 1, #KEYS, 2 do
  if not swept[KEYS[i + 1]] then  -- each tenant's expired members, once per flush: readers need not
    redis.call('ZREMRANGEBYSCORE', KEYS[i + 1], '-inf', now)
    swept[KEYS[i + 1]] = true
  end
  local mine = ARGV[2 + (i + 1) / 2]
  local candidate = cjson.decode(mine)
  local write = true
  local current = redis.call('GET', KEYS[i])
  if current then
    local ok, other = pcall(cjson.decode, current)
    if ok and other.channel_name ~= candidate.channel_name and other.connected_at > candidate.connected_at then
      write = false
    end
  end
  if write then
    redis.call('SET', KEYS[i], mine, 'EX', ttl)
    redis.call('ZADD', KEYS[i + 1], now + ttl, candidate.agent_id)
    redis.call('EXPIRE', KEYS[i + 1], ttl)
  end
end
return 1
"""

# KEYS: agent key, tenant key.  ARGV: agent id, channel name ("" for any).
_WITHDRAW = """
local current = redis.call('GET', KEYS[1])
if current and ARGV[2] ~= '' then
  local ok, other = pcall(cjson.decode, current)
  if ok and other.channel_name ~= ARGV[2] then return 0 end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


POOL_CONNECTIONS = 64  # per process: a node's concurrent presence commands beyond it wait their turn
POOL_WAIT_SECONDS = 10.0  # for a free connection; the commands themselves take a millisecond


class RedisPresence:
    """The production registry. One client per event loop (a process has one: Daphne's)."""

    def __init__(self, url: str, prefix: str, ttl_seconds: int = protocol.PRESENCE_TTL_SECONDS) -> None:
        import redis.asyncio as aioredis

        self.ttl_seconds = ttl_seconds
        self.prefix = prefix
        from config.redis import redis_retry_options

        # A burst (a node's agents all reconnecting, or all leaving in a drain) asks more at once than the pool
        # has connections: each command then waits for one (BlockingConnectionPool) rather than failing with
        # "Too many connections" as the default pool does past 100.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=POOL_CONNECTIONS, timeout=POOL_WAIT_SECONDS, decode_responses=True,
            socket_connect_timeout=2, socket_timeout=5, health_check_interval=30,
            **redis_retry_options(asynchronous=True))
        self.client = aioredis.Redis(connection_pool=pool)
        self._publish = self.client.register_script(_PUBLISH)
        self._withdraw = self.client.register_script(_WITHDRAW)

    def agent_key(self, agent_id: str) -> str:
        return f"{self.prefix}:presence:agent:{agent_id}"

    def tenant_key(self, tenant_id: str) -> str:
        return f"{self.prefix}:presence:tenant:{tenant_id}"

    async def publish(self, records: Sequence[PresenceRecord]) -> None:
        if not records:
            return
        keys: list[str] = []
        for record in records:
            keys += [self.agent_key(record.agent_id), self.tenant_key(record.tenant_id)]
        await self._publish(keys=keys, args=[self.ttl_seconds, time.time(), *(r.to_json() for r in records)])

    async def withdraw(self, *, agent_id: str, tenant_id: str, channel_name: str | None = None) -> None:
        await self._withdraw(keys=[self.agent_key(agent_id), self.tenant_key(tenant_id)],
                             args=[agent_id, channel_name or ""])

    async def for_tenant(self, *, tenant_id: str) -> list[PresenceRecord]:
        # Expired members are left out by the range and removed by the nodes' flushes (_PUBLISH), not here: one
        # command less on every sign-in.
        agent_ids = await self.client.zrangebyscore(self.tenant_key(tenant_id), time.time(), "+inf")
        if not agent_ids:
            return []
        values = await self.client.mget([self.agent_key(str(a)) for a in agent_ids])  # decoded: str
        records = [PresenceRecord.from_json(v) for v in values if v]
        return [r for r in records if r is not None and r.tenant_id == tenant_id]

    async def sample_tenant(self, *, tenant_id: str, count: int) -> tuple[list[PresenceRecord], bool]:
        # One command for the draw: ZRANDMEMBER with a positive count gives distinct members, all of them when the
        # set has fewer than ``count`` (expired ones left out here by their score, swept by the flushes). Fewer
        # drawn than asked is therefore the whole set; as many as asked may be too (a set of exactly ``count``),
        # which is then called a sample: its caller reads every record only when it holds no free agent to ask.
        drawn = _pairs(list(await self.client.zrandmember(self.tenant_key(tenant_id), count,
                                                          withscores=True) or []))
        complete = len(drawn) < count
        now = time.time()
        agent_ids = [str(a) for a, expires in drawn if float(expires) > now]
        if not agent_ids:
            return [], complete
        values = await self.client.mget([self.agent_key(a) for a in agent_ids])  # decoded: str
        records = [PresenceRecord.from_json(v) for v in values if v]
        return [r for r in records if r is not None and r.tenant_id == tenant_id], complete

    async def for_agent(self, *, agent_id: str) -> PresenceRecord | None:
        value = await self.client.get(self.agent_key(agent_id))
        return PresenceRecord.from_json(value) if value else None

    async def for_agents(self, *, agent_ids: Sequence[str]) -> dict[str, PresenceRecord | None]:
        if not agent_ids:
            return {}
        values = await self.client.mget([self.agent_key(a) for a in agent_ids])  # one round trip for the page
        return {a: PresenceRecord.from_json(v) if v else None for a, v in zip(agent_ids, values, strict=True)}

    async def aclose(self) -> None:
        await self.client.aclose(close_connection_pool=True)  # the pool is this registry's own


def _pairs(drawn: list) -> list[tuple[str, float]]:
    """ZRANDMEMBER … WITHSCORES: RESP2 gives a flat list (member, score, …), RESP3 or a newer client pairs."""
    if drawn and isinstance(drawn[0], (list, tuple)):
        return [(str(m), float(s)) for m, s in drawn]
    return [(str(drawn[i]), float(drawn[i + 1])) for i in range(0, len(drawn) - 1, 2)]


_in_process: InProcessPresence | None = None
# A redis.asyncio client belongs to the loop that created it: management commands run one loop per call.
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RedisPresence] = weakref.WeakKeyDictionary()


def presence_registry() -> PresenceRegistry:
    """The registry of this profile; call it inside a running event loop."""
    global _in_process
    url = getattr(settings, "PTA_REDIS_URL", "")
    if not url:
        if _in_process is None:
            _in_process = InProcessPresence()
        return _in_process
    loop = asyncio.get_running_loop()
    registry = _by_loop.get(loop)
    if registry is None:
        registry = _by_loop[loop] = RedisPresence(url, settings.PTA_REDIS_PREFIX)
    return registry


async def presence_close() -> None:
    """Close this loop's Redis client (tests and commands; Daphne keeps it for the process's life)."""
    registry = _by_loop.pop(asyncio.get_running_loop(), None)
    if registry is not None:
        await registry.aclose()
