"""What a password POST asks of Redis (production profile), through the sign-in's own consumer: each command is
there for a reason (docs/benchmarks.md lists them), and a change that adds one shows here first. bench/run --costs
measures the whole sign-in with agents and two nodes."""

import os
import threading
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


class Monitored:
    """The commands Redis runs on this pass's database while the block runs, by name, from MONITOR (a script's own
    commands included, as Redis counts them). Not INFO's counters: they are the whole server's, which the other
    pass's portals share (scripts/test runs both passes at once)."""

    END = "pta-costs-end"

    def __init__(self) -> None:
        self.url = os.environ["REDIS_URL"]
        self.used: Counter = Counter()
        self._ready = threading.Event()

    def _listen(self) -> None:
        client = redis.Redis.from_url(self.url)
        db = client.connection_pool.connection_kwargs.get("db", 0)
        with client.monitor() as monitor:
            self._ready.set()
            for line in monitor.listen():
                if int(line.get("db", -1)) != db:
                    continue
                words = line["command"].split()
                name = words[0].strip('"').lower() if words else ""
                if name == "echo" and self.END in line["command"]:
                    break
                # HELLO, SELECT and CLIENT open a pooled connection (once per connection, not per sign-in)
                if name not in ("hello", "select", "client"):
                    self.used[name] += 1
        client.close()

    def __enter__(self) -> Counter:
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()
        assert self._ready.wait(5), "MONITOR did not start"
        return self.used

    def __exit__(self, *exc) -> None:
        with redis.Redis.from_url(self.url) as client:
            client.echo(self.END)
        self._thread.join(10)
        assert not self._thread.is_alive(), "MONITOR never saw the end of the block"


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


async def test_a_password_sign_in_asks_redis_seven_commands(cloud_admin):
    # A cloud account (no agent, so no presence read), from a new browser: the session read, the reservation (a
    # script: the account's record read whole, its places and its lockout buckets, and the guess written in it),
    # the new device in the record and the reservation's end (a right password with nothing to forgive) in one
    # HSET, and the session renewed against fixation (DEL, SET).
    await warmed_up(cloud_admin)
    cookies, token = await sync_to_async(username_step)(cloud_admin.upn)
    with Monitored() as used:
        response = await post(cookies, f"csrfmiddlewaretoken={token}&password={PASSWORD}".encode())
    assert header(response, "pta-outcome") == ["success"]
    assert used == Counter({"get": 1, "evalsha": 1, "hgetall": 1, "hset": 2, "set": 1, "del": 1}), dict(used)
    assert used.total() == 7


async def test_a_wrong_password_still_counts_through_the_script(cloud_admin):
    # Nothing is saved on the failure path: the failure counts (a script: HMGET, the count's HSET, the
    # reservation's HDEL).
    await warmed_up(cloud_admin)
    cookies, token = await sync_to_async(username_step)(cloud_admin.upn)
    with Monitored() as used:
        response = await post(cookies, f"csrfmiddlewaretoken={token}&password=wrong".encode())
    assert header(response, "pta-outcome") == ["invalid_credentials"]
    assert used["evalsha"] == 2 and used["hmget"] == 1 and used["hdel"] == 1, dict(used)


def test_reservations_ended_in_a_place_write_no_longer_count_and_go_in_batches(settings):
    """A right password from a new browser ends its reservation in its place's HSET (its time 0, not an HDEL): it
    counts no more, and the reservation script drops such fields STALE_RESERVATIONS at a time."""
    import uuid

    from signin.services import lockout
    from tenant.models import Tenant

    tenant = Tenant(pk=uuid.uuid4(), name="Alpha", slug="alpha")
    username = "a@alpha.example.test"
    account = lockout.lockout_account(tenant=tenant, user=None, username=username)
    store = lockout.lockout_store()
    assert isinstance(store, lockout.RedisLockoutStore)
    signins = tenant.lockout_threshold + 2 * lockout.STALE_RESERVATIONS
    for n in range(signins):
        place, reservation = lockout.lockout_reserve_at(tenant=tenant, account=account, username=username,
                                                        ip="198.51.100.7", device=f"browser-{n}")
        assert reservation.granted, n  # the ones before ended: none in flight
        assert lockout.place_remember(tenant=tenant, username=username, ip="198.51.100.7", device=f"browser-{n}",
                                      seen=place, ending=reservation)
        fields = [lockout._text(name) for name in store.client.hkeys(store.record_key(account))]
        assert len([name for name in fields if name.startswith("r:")]) <= lockout.STALE_RESERVATIONS
    # Another account's record is not this reservation's: it is left to the caller to settle.
    _, reservation = lockout.lockout_reserve_at(tenant=tenant, account=account, username=username, ip="", device="")
    assert not lockout.place_remember(tenant=tenant, username="b@alpha.example.test", ip="198.51.100.7",
                                      device="x", ending=reservation)
