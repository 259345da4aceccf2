"""The client's address behind proxies (docs/SECURITY.md, "The client's address"): X-Forwarded-For is believed
only from PTA_TRUSTED_PROXIES, and then the right-most hop that is not a trusted proxy; the forwarded headers of
any other peer are stripped before Django sees them. Through real Daphne and nginx: tests/integration/
test_client_address.py and test_tls.py."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from django.contrib.auth import authenticate
from django.test import Client, RequestFactory

from applications.services import application_register
from config.proxy import TrustedProxyHeaders
from signin.models import SignInEvent
from signin.services.client import address_parse, client_address, client_address_from
from tenant.services import tenant_policy_set
from tests.signin.test_mfa import PASSWORD, enrol, is_signed_in, outcome, pages, password_step, set_policy

PROXIES = (ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("fd00:1::/64"))


def nets(*entries: str):
    return tuple(ipaddress.ip_network(entry) for entry in entries)


# --- the rule: pure -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("peer", "forwarded_for", "expected"), [
    # No trusted proxy in front: the peer, whatever it claims.
    ("203.0.113.9", "198.51.100.7", "203.0.113.9"),
    ("203.0.113.9", "", "203.0.113.9"),
    # A trusted proxy: the address it saw (the right-most hop), never the client's own claim on the left.
    ("10.0.0.2", "198.51.100.7", "198.51.100.7"),
    ("10.0.0.2", "6.6.6.6, 198.51.100.7", "198.51.100.7"),
    ("10.0.0.2", "6.6.6.6,198.51.100.7", "198.51.100.7"),
    # Two trusted proxies (a load balancer behind a TLS proxy): past both, to the first untrusted hop.
    ("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.0.0.3", "198.51.100.7"),
    # A client that forges a trusted address on the left gains nothing.
    ("10.0.0.2", "10.0.0.5, 198.51.100.7", "198.51.100.7"),
    # Every hop trusted (an internal client): the furthest one.
    ("10.0.0.2", "10.0.0.7, 10.0.0.3", "10.0.0.7"),
    # A trusted proxy that forwarded nothing: itself.
    ("10.0.0.2", "", "10.0.0.2"),
    # IPv6 peers and hops, ports as some proxies write them, IPv4-mapped addresses.
    ("fd00:1::5", "2001:db8::7", "2001:db8::7"),
    ("10.0.0.2", "[2001:db8::7]:51000", "2001:db8::7"),
    ("10.0.0.2", "198.51.100.7:51000", "198.51.100.7"),
    ("::ffff:10.0.0.2", "198.51.100.7", "198.51.100.7"),
    ("::ffff:203.0.113.9", "198.51.100.7", "203.0.113.9"),
    ("2001:db8::9", "198.51.100.7", "2001:db8::9"),
    # An untrusted hop that is no address: the trusted proxy that reported it, not the garbage nor a guess.
    ("10.0.0.2", "198.51.100.7, unknown", "10.0.0.2"),
    ("10.0.0.2", "1.2.3.4, <script>, 10.0.0.3", "10.0.0.3"),
    ("", "198.51.100.7", ""),
])
def test_the_right_most_untrusted_hop_is_the_client(peer, forwarded_for, expected):
    assert client_address_from(peer=peer, forwarded_for=forwarded_for, trusted=PROXIES) == expected


def test_without_trusted_proxies_it_is_always_the_peer():
    for peer in ("127.0.0.1", "10.0.0.2", "::1"):
        assert client_address_from(peer=peer, forwarded_for="198.51.100.7", trusted=()) == peer


@pytest.mark.parametrize(("value", "expected"), [
    ("198.51.100.7", "198.51.100.7"), (" 198.51.100.7 ", "198.51.100.7"), ("2001:db8::7", "2001:db8::7"),
    ("[2001:db8::7]", "2001:db8::7"), ("[2001:db8::7]:443", "2001:db8::7"), ("198.51.100.7:80", "198.51.100.7"),
    ("::ffff:198.51.100.7", "198.51.100.7"), ("fe80::1%eth0", "fe80::1"), ('"198.51.100.7"', "198.51.100.7"),
    ("unknown", None), ("", None), ("_hidden", None), ("300.1.1.1", None), ("example.com", None),
])
def test_hops_are_parsed_as_proxies_write_them(value, expected):
    parsed = address_parse(value)
    assert (str(parsed) if parsed else None) == expected


def test_client_address_reads_request_meta(settings):
    settings.PTA_TRUSTED_PROXIES = nets("127.0.0.1/32")
    meta = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 198.51.100.7"}
    assert client_address(meta) == "198.51.100.7"
    settings.PTA_TRUSTED_PROXIES = ()
    assert client_address(meta) == "127.0.0.1"
    assert client_address({}) == ""


# --- the ASGI guard: forwarded headers from trusted proxies only ------------------------------------------------

FORWARDED = [(b"x-forwarded-for", b"198.51.100.7"), (b"X-Forwarded-Proto", b"https"), (b"forwarded", b"for=1.2.3.4"),
             (b"x-forwarded-host", b"evil.example"), (b"x-real-ip", b"1.2.3.4")]
OTHER = [(b"host", b"portal.example.com"), (b"cookie", b"a=b")]


def scope_seen(scope_type: str, client) -> dict:
    seen = {}

    async def inner(scope, receive, send):
        seen.update(scope)

    guard = TrustedProxyHeaders(inner, trusted=nets("10.0.0.0/24"))
    asyncio.run(guard({"type": scope_type, "client": client, "headers": OTHER + FORWARDED}, None, None))
    return seen


@pytest.mark.parametrize("scope_type", ["http", "websocket"])
def test_forwarded_headers_of_an_untrusted_peer_never_reach_the_portal(scope_type):
    for client in (("203.0.113.9", 5000), ("127.0.0.1", 5000), None):
        assert scope_seen(scope_type, client)["headers"] == OTHER


@pytest.mark.parametrize("scope_type", ["http", "websocket"])
def test_a_trusted_proxys_forwarded_headers_pass(scope_type):
    assert scope_seen(scope_type, ("10.0.0.2", 5000))["headers"] == OTHER + FORWARDED
    assert scope_seen(scope_type, ("::ffff:10.0.0.2", 5000))["headers"] == OTHER + FORWARDED


# --- every reader of the address: the pages, the second factor, the backend, the password grant ----------------

@pytest.fixture
def behind_proxy(settings):
    settings.PTA_TRUSTED_PROXIES = nets("10.0.0.0/24")


@pytest.fixture
def admin_user(transactional_db, tenant_a, tenant_admin_factory):
    return tenant_admin_factory(tenant_a)


def via_proxy(client_ip: str, *, forged: str = "") -> Client:
    chain = f"{forged}, {client_ip}" if forged else client_ip
    return Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=chain)


def last_record() -> SignInEvent:
    record = SignInEvent.objects.order_by("-created_at", "-pk").first()
    assert record is not None, "no sign-in was recorded"
    return record


@pages
def test_the_record_has_the_client_behind_a_trusted_proxy_and_the_peer_otherwise(behind_proxy, admin_user):
    assert outcome(password_step(via_proxy("198.51.100.7", forged="6.6.6.6"), admin_user.upn)) == "success"
    assert last_record().ip_address == "198.51.100.7"
    direct = Client(REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert outcome(password_step(direct, admin_user.upn, "Wrong-guess")) == "invalid_credentials"
    assert last_record().ip_address == "203.0.113.9"


@pages
def test_the_unfamiliar_policy_follows_the_client_not_the_proxy(behind_proxy, admin_user):
    """The second factor's completion remembers the client's address: the same client later goes straight in,
    another client behind the same proxy is still asked."""
    set_policy(admin_user.tenant, "unfamiliar")
    first = via_proxy("198.51.100.7")
    assert outcome(password_step(first, admin_user.upn)) == "mfa_required"
    _, done = enrol(first)
    assert outcome(done) == "success" and is_signed_in(first)
    assert outcome(password_step(via_proxy("198.51.100.7", forged="203.0.113.66"), admin_user.upn)) == "success"
    assert outcome(password_step(via_proxy("203.0.113.66", forged="198.51.100.7"), admin_user.upn)) == "mfa_required"


@pages
def test_lockouts_familiar_bucket_follows_the_client(behind_proxy, admin_user):
    """A user who signed in from A is not locked out by guesses from B, though both come through one proxy."""
    tenant_policy_set(tenant=admin_user.tenant, lockout_threshold=3)
    assert outcome(password_step(via_proxy("198.51.100.7"), admin_user.upn)) == "success"
    attacker = [outcome(password_step(via_proxy("203.0.113.66", forged="198.51.100.7"), admin_user.upn, f"Wrong-{i}"))
                for i in range(5)]
    assert attacker == ["invalid_credentials"] * 3 + ["cloud_locked"] * 2
    assert outcome(password_step(via_proxy("198.51.100.7"), admin_user.upn)) == "success"


@pages
def test_the_backend_and_the_password_grant_record_the_client(behind_proxy, admin_user):
    request = RequestFactory().post("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.8")
    assert authenticate(request, username=admin_user.upn, password="Wrong-guess") is None
    assert last_record().channel == "backend" and last_record().ip_address == "198.51.100.8"

    tenant_policy_set(tenant=admin_user.tenant, password_grant_enabled=True)
    application, secret = application_register(tenant=admin_user.tenant, name="Legacy", grant="password")
    response = via_proxy("198.51.100.9", forged="6.6.6.6").post("/token/", {
        "grant_type": "password", "username": admin_user.upn, "password": PASSWORD, "scope": "openid",
        "client_id": application.client_id, "client_secret": secret})
    assert response.status_code == 200, response.content
    assert last_record().channel == "oauth" and last_record().ip_address == "198.51.100.9"
