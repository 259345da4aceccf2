"""The presence registry, both profiles: same behaviour from the in-process dict and from Redis."""

import json
import os
import time
import uuid

import pytest

from agents.presence import InProcessPresence, PresenceRecord, RedisPresence

REDIS_URL = os.environ.get("PTA_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


def record(agent_id: str, tenant_id: str = "t1", *, channel: str = "c1", connected_at: float = 1.0,
           in_flight: int = 0) -> PresenceRecord:
    return PresenceRecord(agent_id=agent_id, tenant_id=tenant_id, domains=("a.example.test",), node_id="n1",
                          channel_name=channel, in_flight=in_flight, capacity=10, connected_at=connected_at,
                          last_beat=time.time())


@pytest.fixture(params=["in-process", "redis"])
async def registry(request):
    if request.param == "in-process":
        yield InProcessPresence(ttl_seconds=1)
        return
    registry = RedisPresence(REDIS_URL, prefix=f"pta-test-{uuid.uuid4().hex[:8]}", ttl_seconds=1)
    try:
        await registry.client.ping()
    except Exception as exc:
        pytest.fail(f"Redis is needed at {REDIS_URL} (set PTA_TEST_REDIS_URL): {exc}")
    yield registry
    keys = [k async for k in registry.client.scan_iter(match=f"{registry.prefix}:*")]
    if keys:
        await registry.client.delete(*keys)
    await registry.aclose()


async def test_publish_then_read_by_tenant_and_agent(registry):
    await registry.publish([record("a1"), record("a2"), record("b1", "t2")])
    assert sorted(r.agent_id for r in await registry.for_tenant(tenant_id="t1")) == ["a1", "a2"]
    assert [r.agent_id for r in await registry.for_tenant(tenant_id="t2")] == ["b1"]
    found = await registry.for_agent(agent_id="a1")
    assert found.domains == ("a.example.test",) and found.capacity == 10


async def test_records_expire_without_refresh(registry):
    await registry.publish([record("a1")])
    time.sleep(1.1)
    assert await registry.for_tenant(tenant_id="t1") == []
    assert await registry.for_agent(agent_id="a1") is None


async def test_an_older_connection_never_overwrites_a_newer_one(registry):
    await registry.publish([record("a1", channel="new", connected_at=2.0)])
    await registry.publish([record("a1", channel="old", connected_at=1.0)])
    assert (await registry.for_agent(agent_id="a1")).channel_name == "new"
    await registry.withdraw(agent_id="a1", tenant_id="t1", channel_name="old")  # the old one leaving
    assert (await registry.for_agent(agent_id="a1")).channel_name == "new"
    await registry.withdraw(agent_id="a1", tenant_id="t1", channel_name="new")
    assert await registry.for_agent(agent_id="a1") is None
    assert await registry.for_tenant(tenant_id="t1") == []


async def test_unconditional_withdraw(registry):
    await registry.publish([record("a1", in_flight=3)])
    assert (await registry.for_agent(agent_id="a1")).in_flight == 3
    await registry.withdraw(agent_id="a1", tenant_id="t1")
    assert await registry.for_tenant(tenant_id="t1") == []


async def test_expired_agents_leave_the_tenants_set_at_the_next_flush(registry):
    """Readers no longer sweep a tenant's set (one Redis command less per sign-in): a node's flush does, so a tenant
    whose agents come and go keeps only the live ones."""
    await registry.publish([record("gone-1"), record("gone-2"), record("other", "t2")])
    time.sleep(1.1)
    await registry.publish([record("live")])
    assert [r.agent_id for r in await registry.for_tenant(tenant_id="t1")] == ["live"]
    assert await registry.for_tenant(tenant_id="t2") == []
    if isinstance(registry, RedisPresence):
        assert await registry.client.zrange(registry.tenant_key("t1"), 0, -1) == ["live"]
    else:
        assert registry._by_tenant == {"t1": {"live"}}  # the expired ones went with the reads


async def test_an_agent_that_changes_tenant_is_read_under_its_new_one_only(registry):
    await registry.publish([record("a1", "t1", channel="c1", connected_at=1.0)])
    await registry.publish([record("a1", "t2", channel="c2", connected_at=2.0)])
    assert await registry.for_tenant(tenant_id="t1") == []
    assert [r.agent_id for r in await registry.for_tenant(tenant_id="t2")] == ["a1"]


def test_capabilities_survive_the_registry_and_an_older_nodes_record_has_none():
    record = PresenceRecord(agent_id="a", tenant_id="t", domains=("d.test",), node_id="n", channel_name="c",
                            capabilities=("password_change",))
    assert PresenceRecord.from_json(record.to_json()) == record
    older = json.loads(record.to_json())
    del older["capabilities"]
    read = PresenceRecord.from_json(json.dumps(older))
    assert read is not None and read.capabilities == ()


async def test_a_sample_is_bounded_distinct_and_live_and_whole_when_the_tenant_is_small(registry):
    """What a sign-in reads of its tenant's agents: at most ``count`` records, never one twice, none expired, and
    every one of them (complete) when there are no more."""
    await registry.publish([record(f"a{n}") for n in range(3)])
    found, complete = await registry.sample_tenant(tenant_id="t1", count=5)
    assert complete and sorted(r.agent_id for r in found) == ["a0", "a1", "a2"]
    await registry.publish([record(f"a{n}") for n in range(3, 30)] + [record("b1", "t2")])
    seen: set[str] = set()
    for _ in range(5):
        found, complete = await registry.sample_tenant(tenant_id="t1", count=5)
        ids = [r.agent_id for r in found]
        assert not complete and len(ids) == 5 == len(set(ids)) and all(r.tenant_id == "t1" for r in found)
        seen |= set(ids)
    assert len(seen) > 5  # drawn at random, not the same first five each time
    time.sleep(1.1)
    registry.ttl_seconds = 30  # "live" stays so however slow the machine is until the read below
    await registry.publish([record("live")])
    found, _ = await registry.sample_tenant(tenant_id="t1", count=5)
    assert [r.agent_id for r in found] == ["live"]
    assert await registry.sample_tenant(tenant_id="nobody", count=5) == ([], True)


async def test_a_burst_beyond_the_connection_pool_waits_for_a_connection_instead_of_failing():
    """A node's agents all reconnecting, or leaving at once (a drain with a thousand of them), ask Redis more at
    once than its pool's connections: each waits for one. redis-py's default pool raised "Too many connections"
    past 100 and the agent's hello failed with it (bench/run --fleet 1000)."""
    import asyncio

    registry = RedisPresence(REDIS_URL, prefix=f"pta-test-{uuid.uuid4().hex[:8]}", ttl_seconds=30)
    try:
        agents = [record(f"burst{n}", channel=f"c{n}") for n in range(400)]
        await asyncio.gather(*(registry.publish([one]) for one in agents))
        found = await registry.for_agents(agent_ids=[one.agent_id for one in agents])
        assert all(found.values()) and len(found) == 400
        await asyncio.gather(*(registry.withdraw(agent_id=one.agent_id, tenant_id=one.tenant_id,
                                                 channel_name=one.channel_name) for one in agents))
        assert not any((await registry.for_agents(agent_ids=[one.agent_id for one in agents])).values())
    finally:
        await registry.aclose()
