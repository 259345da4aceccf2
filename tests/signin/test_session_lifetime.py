"""Anonymous sessions (issue 20, 5c): a username POST no longer stores a session for Django's two weeks, only for
the sign-in's minutes (PTA_SIGNIN_SESSION_SECONDS), and a completed sign-in gets the full lifetime; a flood of
usernames' sessions never drops lockout state (its Redis must not evict: signin/checks.py), played against a
private redis-server (tests/fixtures/portal.py: RedisServer) with a small maxmemory."""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest
import redis
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.management import call_command
from django.test import Client

from config.redis import redis_retry_options
from signin import checks as signin_checks
from signin.consumers import SignInRouter
from signin.services import lockout
from signin.sessions import SessionStore
from tests.fixtures.http import found
from tests.signin.test_mfa import totp_code
from tests.signin.test_session_fixation import _CSRF, _SECRET, PASSWORD, Browser

pages = pytest.mark.django_db(transaction=True)
TWO_WEEKS = 14 * 24 * 3600


def session_lifetime(response: dict, browser: Browser) -> tuple[int, int]:
    """The session cookie's Max-Age as this answer set it, and the lifetime its stored session has."""
    for name, value in response["headers"]:
        if name.decode().lower() == "set-cookie" and value.decode().startswith("sessionid="):
            cookie = SimpleCookie()
            cookie.load(value.decode())
            stored = SessionStore(session_key=browser.cookies["sessionid"])
            return int(cookie["sessionid"]["max-age"]), stored.get_expiry_age()
    raise AssertionError("the answer set no session cookie")


@pytest.fixture
def cloud_admin(tenant_factory, tenant_admin_factory):
    user = tenant_admin_factory(tenant_factory("Alpha Corp", ["alpha.example.test"]))
    user.set_password(PASSWORD)
    user.save()
    return user


@pages
async def test_a_sign_in_under_way_lives_minutes_and_a_signed_in_session_its_full_lifetime(cloud_admin):
    assert settings.PTA_SIGNIN_SESSION_SECONDS == 600 and settings.SESSION_COOKIE_AGE == TWO_WEEKS
    browser = Browser(SignInRouter(get_asgi_application()))
    answer = await browser.username("whoever@nowhere.example.test")  # anyone can make one: a flood's unit
    assert session_lifetime(answer, browser) == (600, 600)
    answer = await browser.username(cloud_admin.upn)
    assert session_lifetime(answer, browser) == (600, 600)
    answer = await browser.password(PASSWORD)
    assert answer["location"] == "/login/done/"
    assert session_lifetime(answer, browser) == (TWO_WEEKS, TWO_WEEKS)
    # Signed in, a new sign-in (prompt=login, max_age) does not shorten the session it may abandon.
    answer = await browser.username(cloud_admin.upn)
    assert session_lifetime(answer, browser) == (TWO_WEEKS, TWO_WEEKS)
    assert (await browser.get("/login/done/"))["status"] == 200


@pytest.fixture
def mfa_for_all(cloud_admin):
    call_command("tenant_policy", cloud_admin.tenant.slug, "--mfa", "all", stdout=open("/dev/null", "w"))  # noqa: SIM115
    return cloud_admin


@pages
async def test_the_half_done_sign_in_lives_minutes_until_the_second_factor(mfa_for_all):
    cloud_admin = mfa_for_all
    browser = Browser(SignInRouter(get_asgi_application()))
    await browser.username(cloud_admin.upn)
    answer = await browser.password(PASSWORD)
    assert answer["location"] == "/login/mfa/"
    assert session_lifetime(answer, browser) == (600, 600)
    enrol = await browser.get("/login/mfa/enrol/")
    done = await browser.post("/login/mfa/enrol/", {"otp": totp_code(found(_SECRET, enrol["text"])),
                                                    "csrfmiddlewaretoken": found(_CSRF, enrol["text"])})
    assert 'data-outcome="success"' in done["text"]
    assert session_lifetime(done, browser) == (TWO_WEEKS, TWO_WEEKS)


# --- lockout state and a flood of sessions, in production's arrangement: one Redis for both -------------------

@pytest.fixture
def production_redis(redis_server, settings):
    """The cache (sessions) and the lockout store on a private redis-server, as production has them on REDIS_URL."""
    settings.CACHES = {"default": {"BACKEND": "config.redis.RedisCache", "LOCATION": redis_server.url,
                                   "KEY_PREFIX": "pta-test:cache", "OPTIONS": redis_retry_options()}}
    settings.PTA_REDIS_URL, settings.PTA_REDIS_PREFIX = redis_server.url, "pta-test"
    settings.PTA_PLATFORM_LOCKOUT_THRESHOLD = 2
    client = redis.Redis.from_url(redis_server.url)
    yield client
    lockout._stores.pop(redis_server.url, None)
    client.close()


def lock_nobody(upn: str) -> str:
    """Wrong guesses through the pages until the name's bucket locks; returns the lockout account's key."""
    for guess in range(settings.PTA_PLATFORM_LOCKOUT_THRESHOLD):
        client = Client()
        page = client.get("/login/")
        client.post("/login/", {"username": upn, "csrfmiddlewaretoken": found(_CSRF, page.content.decode())})
        page = client.get("/login/password/")
        client.post("/login/password/", {"password": f"wrong-{guess}",
                                         "csrfmiddlewaretoken": found(_CSRF, page.content.decode())})
    account = lockout.lockout_account(tenant=None, user=None, username=upn)
    assert lockout.lockout_active(account=account, familiar=False)
    return account


def flood(limit: int = 20_000) -> int:
    """Username POSTs from fresh browsers (each a new session) until Redis refuses one or ``limit``: the count."""
    client = Client(raise_request_exception=False, enforce_csrf_checks=False)
    for sent in range(limit):
        client.cookies.clear()
        if client.post("/login/", {"username": f"flood-{sent}@nowhere.example.test"}).status_code != 302:
            return sent
    return limit


# A half-done sign-in's session takes about 300 bytes of Redis: 64 KB hold some 210 of them, and a flood of 800 is
# several times the room, enough to evict everything that was there before it.
ROOM_KB = 64
EVICTING_FLOOD = 800


def room_for(client: redis.Redis, kilobytes: int) -> None:
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + kilobytes * 1024)


@pages
def test_a_flood_of_sessions_never_drops_a_lock_on_a_redis_that_does_not_evict(production_redis):
    assert signin_checks.lockout_store_never_evicts(None) == []  # redis-server's default: noeviction
    account = lock_nobody("target@nowhere.example.test")
    room_for(production_redis, ROOM_KB)
    sent = flood()
    assert 0 < sent < 20_000, "the flood never filled Redis"  # it refused new sessions, evicting nothing
    assert lockout.lockout_active(account=account, familiar=False)


@pages
@pytest.mark.parametrize("policy", ["volatile-lru", "allkeys-lru", "volatile-ttl"])
def test_start_up_refuses_a_lockout_redis_that_evicts(production_redis, policy, settings):
    """What the check stops: with an eviction policy the same flood drops the lock (a fresh threshold)."""
    # The lock in the account's record alone (while upgrading, the previous release's keys hold it too: five keys,
    # and the flood need not evict all of them).
    settings.PTA_LOCKOUT_UPGRADE_SECONDS = 0
    production_redis.config_set("maxmemory-policy", policy)
    assert [e.id for e in signin_checks.lockout_store_never_evicts(None)] == ["signin.E005"]
    if policy == "volatile-lru":
        account = lock_nobody("target@nowhere.example.test")
        room_for(production_redis, ROOM_KB)
        sent = flood(limit=EVICTING_FLOOD)
        assert sent == EVICTING_FLOOD  # never refused: room was made by evicting
        assert not lockout.lockout_active(account=account, familiar=False)
