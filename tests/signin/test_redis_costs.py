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


async def warmed_up() -> None:
    """A wrong guess at another name first: Redis has both lockout scripts loaded (a fresh server answers the first
    EVALSHA of each with NOSCRIPT, and the client loads it: once per server, not per sign-in), and the pools have
    their connections. A name in a domain no tenant verified: answered after the same work, counted in its own
    bucket, not the account's."""
    cookies, token = await sync_to_async(username_step)("nobody@nowhere.example.test")
    response = await post(cookies, f"csrfmiddlewaretoken={token}&password=wrong".encode())
    assert header(response, "pta-outcome") == ["invalid_credentials"]


async def test_a_password_sign_in_asks_redis_eleven_commands(cloud_admin):
    # A cloud account (no agent, so no presence read): the session read, the account's places, the lockout
    # reservation (a script: MGET, ZCOUNT, ZADD, EXPIRE), its end (a right password with nothing to forgive: one
    # ZREM, not the script), the new place, and the session renewed against fixation (DEL, SET).
    await warmed_up()
    cookies, token = await sync_to_async(username_step)(cloud_admin.upn)
    before = await sync_to_async(commands)()
    response = await post(cookies, f"csrfmiddlewaretoken={token}&password={PASSWORD}".encode())
    used = await sync_to_async(commands)() - before
    assert header(response, "pta-outcome") == ["success"]
    assert used == Counter({"get": 1, "mget": 2, "evalsha": 1, "zcount": 1, "zadd": 1, "expire": 1, "zrem": 1,
                            "set": 2, "del": 1}), dict(used)
    assert used.total() == 11


async def test_a_wrong_password_still_counts_through_the_script(cloud_admin):
    # Nothing is saved on the failure path: the failure counts (the settle script: ZREM, INCR, EXPIRE).
    await warmed_up()
    cookies, token = await sync_to_async(username_step)(cloud_admin.upn)
    before = await sync_to_async(commands)()
    response = await post(cookies, f"csrfmiddlewaretoken={token}&password=wrong".encode())
    used = await sync_to_async(commands)() - before
    assert header(response, "pta-outcome") == ["invalid_credentials"]
    assert used["evalsha"] == 2 and used["incr"] == 1 and used["zrem"] == 1, dict(used)
