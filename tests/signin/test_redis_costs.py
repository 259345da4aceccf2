"""What a password POST asks of Redis (production profile), through the sign-in's own consumer: each command is
there for a reason (docs/benchmarks.md lists them), and a change that adds one shows here first. bench/run --costs
measures the whole sign-in with agents and two nodes."""

import os
from collections import Counter

import pytest
import redis
from asgiref.sync import sync_to_async

from tests.signin.test_password_consumer import PASSWORD, header, post, username_step

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


@pytest.fixture
def cloud_admin(tenant_factory, tenant_admin_factory):
    tenant = tenant_factory("Alpha Corp", ["alpha.example.test"])
    user = tenant_admin_factory(tenant)
    user.set_password(PASSWORD)
    user.save()
    return user


def commands() -> Counter:
    with redis.Redis.from_url(os.environ["REDIS_URL"]) as client:
        stats = client.info("commandstats")
    # INFO is this count's own; HELLO, SELECT and CLIENT open a pooled connection (once per connection, not per
    # sign-in: a test's first use of a pool opens one).
    return Counter({name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()
                    if name.removeprefix("cmdstat_") not in ("info", "hello", "select", "client")})


async def warmed_up(user) -> None:
    """A wrong guess at another name first: Redis has both lockout scripts loaded (a fresh server answers the first
    EVALSHA of each with NOSCRIPT, and the client loads it: once per server, not per sign-in), and the pools have
    their connections. A name in a domain no tenant verified: answered after the same work, counted in its own
    bucket, not the account's. Then one sign-in of the account, as every account that signs in has had: its
    record has met the places of before it (once per account) and its key lives for its places' 90 days."""
    cookies, token = await sync_to_async(username_step)("nobody@nowhere.example.test")
    response = await post(cookies, f"csrfmiddlewaretoken={token}&password=wrong".encode())
    assert header(response, "pta-outcome") == ["invalid_credentials"]
    cookies, token = await sync_to_async(username_step)(user.upn)
    response = await post(cookies, f"csrfmiddlewaretoken={token}&password={PASSWORD}".encode())
    assert header(response, "pta-outcome") == ["success"]


@pytest.fixture(autouse=True)
def upgraded(settings):
    # The steady state: the previous release's keys are no longer read (for PTA_LOCKOUT_UPGRADE_SECONDS after an
    # upgrade they are, and written: tests/signin/test_lockout_upgrade.py).
    settings.PTA_LOCKOUT_UPGRADE_SECONDS = 0


async def test_a_password_sign_in_asks_redis_eight_commands(cloud_admin):
    # A cloud account (no agent, so no presence read), from a new browser: the session read, the reservation (a
    # script: the account's record read whole, its places and its lockout buckets, and the guess written in it),
    # its end (a right password with nothing to forgive: one HDEL), the new device in the record (one HSET), and
    # the session renewed against fixation (DEL, SET).
    await warmed_up(cloud_admin)
    cookies, token = await sync_to_async(username_step)(cloud_admin.upn)
    before = await sync_to_async(commands)()
    response = await post(cookies, f"csrfmiddlewaretoken={token}&password={PASSWORD}".encode())
    used = await sync_to_async(commands)() - before
    assert header(response, "pta-outcome") == ["success"]
    assert used == Counter({"get": 1, "evalsha": 1, "hgetall": 1, "hset": 2, "hdel": 1, "set": 1, "del": 1}), \
        dict(used)
    assert used.total() == 8


async def test_a_wrong_password_still_counts_through_the_script(cloud_admin):
    # Nothing is saved on the failure path: the failure counts (a script: HMGET, the count's HSET, the
    # reservation's HDEL).
    await warmed_up(cloud_admin)
    cookies, token = await sync_to_async(username_step)(cloud_admin.upn)
    before = await sync_to_async(commands)()
    response = await post(cookies, f"csrfmiddlewaretoken={token}&password=wrong".encode())
    used = await sync_to_async(commands)() - before
    assert header(response, "pta-outcome") == ["invalid_credentials"]
    assert used["evalsha"] == 2 and used["hmget"] == 1 and used["hdel"] == 1, dict(used)
