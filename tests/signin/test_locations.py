"""Access by network through the sign-in pages (cloud accounts: no agent; the agent's side is in
tests/integration/test_locations.py): a blocked location refuses before lockout counts the guess, the
"untrusted" policy asks for the second factor outside the trusted locations only, "unfamiliar" counts a trusted
location as familiar, the address comes through trusted proxies only, an application's require_mfa asks for it
whatever the policy, and the password grant is refused from a blocked network."""

from __future__ import annotations

import base64
import ipaddress
import json
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.core.management import call_command
from django.test import Client

from applications.services import application_register
from signin.models import SignInEvent
from signin.outcomes import Outcome
from signin.services.mfa import mfa_decide
from tenant.models import Location, Tenant, User
from tenant.selectors import LocationMatch
from tenant.services import location_remove, location_set, tenant_policy_set
from tests.signin.test_mfa import PASSWORD, enrol, is_signed_in, outcome, password_step

pages = pytest.mark.django_db(transaction=True)
TRUSTED = LocationMatch(name="HQ", kind=Location.Kind.TRUSTED)


# --- the decision: pure ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("policy", "location", "device", "app", "required", "reason"), [
    ("untrusted", TRUSTED, False, False, False, "trusted_location"),
    ("untrusted", None, True, False, True, "untrusted_location"),  # a known browser is no trusted network
    ("unfamiliar", TRUSTED, False, False, False, "trusted_location"),
    ("unfamiliar", None, False, False, True, "unfamiliar_sign_in"),
    ("off", None, False, True, True, "application_requires_mfa"),
    ("untrusted", TRUSTED, False, True, True, "application_requires_mfa"),
    ("all", TRUSTED, False, True, True, "policy_all"),  # the policy asked already: its reason stays
])
def test_locations_and_the_application_in_the_decision(policy, location, device, app, required, reason):
    decision = mfa_decide(tenant=Tenant(mfa_policy=policy), user=User(upn="a@alpha.example.test"),
                          familiar_address=False, known_device=device, location=location, application_requires=app)
    assert (decision.required, decision.reason) == (required, reason)


# --- through the pages -----------------------------------------------------------------------------------

@pytest.fixture
def admin_user(transactional_db, tenant_a, tenant_admin_factory):
    return tenant_admin_factory(tenant_a)


@pages
def test_a_blocked_location_is_refused_before_lockout_counts(admin_user):
    tenant = admin_user.tenant
    location_set(tenant=tenant, name="Guest wifi", ranges=["198.51.100.0/24", "2001:db8:bad::/48"],
                 kind=Location.Kind.BLOCKED)
    for address in ("198.51.100.7", "2001:db8:bad::1", "198.51.100.8"):
        for password in ("wrong-1", PASSWORD, "wrong-2", "wrong-3", "wrong-4"):
            client = Client(REMOTE_ADDR=address)
            response = password_step(client, admin_user.upn, password=password)
            assert response.status_code == 200 and outcome(response) == "location_blocked"
            text = response.content.decode()
            assert "network or location" in text and "helpdesk" in text  # plainly, with a next step
            assert "198.51.100" not in text and "Guest wifi" not in text  # no network details
            assert not is_signed_in(client)
    # An account that does not exist is answered the same: the network alone decides, nothing about accounts.
    assert outcome(password_step(Client(REMOTE_ADDR="198.51.100.9"), "nobody@alpha.example.test")) == \
        "location_blocked"
    events = SignInEvent.objects.filter(outcome="location_blocked")
    assert events.count() == 16
    assert set(events.values_list("location", "location_kind")) == {("Guest wifi", "blocked")}
    assert set(events.values_list("mfa_decision", flat=True)) == {""}  # no password was checked

    # None of those 15 guesses (12 wrong) counted: once the location goes, four wrong passwords leave the
    # account open (threshold 5) and the right one signs in.
    location_remove(tenant=tenant, name="Guest wifi")
    for _ in range(tenant.lockout_threshold - 1):
        assert outcome(password_step(Client(REMOTE_ADDR="198.51.100.7"), admin_user.upn, password="x")) == \
            "invalid_credentials"
    assert outcome(password_step(Client(REMOTE_ADDR="198.51.100.7"), admin_user.upn)) == "success"


@pages
def test_another_tenants_blocked_location_does_not_apply(admin_user, tenant_b):
    location_set(tenant=tenant_b, name="B's blocked", ranges=["198.51.100.0/24"], kind=Location.Kind.BLOCKED)
    response = password_step(Client(REMOTE_ADDR="198.51.100.7"), admin_user.upn)
    assert outcome(response) == "success"
    assert SignInEvent.objects.get(user=admin_user).location == ""


@pages
def test_untrusted_policy_asks_outside_the_trusted_locations_only(admin_user):
    tenant_policy_set(tenant=admin_user.tenant, mfa_policy="untrusted")
    location_set(tenant=admin_user.tenant, name="HQ", ranges=["192.0.2.0/24", "2001:db8:a::/48"],
                 kind=Location.Kind.TRUSTED)
    for address in ("192.0.2.10", "::ffff:192.0.2.11", "2001:db8:a::10"):
        client = Client(REMOTE_ADDR=address)
        assert outcome(password_step(client, admin_user.upn)) == "success", address
        assert is_signed_in(client)
    client = Client(REMOTE_ADDR="203.0.113.10")
    response = password_step(client, admin_user.upn)
    assert outcome(response) == "mfa_required" and not is_signed_in(client)
    enrol(client)
    assert is_signed_in(client)
    # A completed sign-in does not make an untrusted network trusted: asked again from there.
    assert outcome(password_step(Client(REMOTE_ADDR="203.0.113.10"), admin_user.upn)) == "mfa_required"
    records = list(SignInEvent.objects.filter(user=admin_user).order_by("created_at").values_list(
        "location", "location_kind", "mfa_decision", "mfa_reason"))
    assert records[:3] == [("HQ", "trusted", "not_required", "trusted_location")] * 3
    assert records[3:] == [("", "", "required", "untrusted_location")] * 2


@pages
def test_unfamiliar_policy_counts_a_trusted_location_as_familiar(admin_user):
    tenant_policy_set(tenant=admin_user.tenant, mfa_policy="unfamiliar")
    location_set(tenant=admin_user.tenant, name="HQ", ranges=["192.0.2.0/24"], kind=Location.Kind.TRUSTED)
    assert outcome(password_step(Client(REMOTE_ADDR="192.0.2.50"), admin_user.upn)) == "success"
    assert outcome(password_step(Client(REMOTE_ADDR="203.0.113.50"), admin_user.upn)) == "mfa_required"


@pages
def test_the_address_comes_through_trusted_proxies_only(admin_user, settings):
    settings.PTA_TRUSTED_PROXIES = (ipaddress.ip_network("10.9.0.0/24"),)
    tenant_policy_set(tenant=admin_user.tenant, mfa_policy="untrusted")
    location_set(tenant=admin_user.tenant, name="HQ", ranges=["192.0.2.0/24"], kind=Location.Kind.TRUSTED)
    location_set(tenant=admin_user.tenant, name="Blocked", ranges=["198.51.100.0/24"], kind=Location.Kind.BLOCKED)
    # Through the trusted proxy: the client it names decides, either way.
    proxied = Client(REMOTE_ADDR="10.9.0.1", HTTP_X_FORWARDED_FOR="192.0.2.60")
    assert outcome(password_step(proxied, admin_user.upn)) == "success"
    proxied = Client(REMOTE_ADDR="10.9.0.1", HTTP_X_FORWARDED_FOR="192.0.2.60, 198.51.100.60")
    assert outcome(password_step(proxied, admin_user.upn)) == "location_blocked"  # the right-most untrusted hop
    # A client that writes a trusted address into the header itself gains nothing, and cannot escape a block.
    forged = Client(REMOTE_ADDR="203.0.113.60", HTTP_X_FORWARDED_FOR="192.0.2.60")
    assert outcome(password_step(forged, admin_user.upn)) == "mfa_required"
    forged = Client(REMOTE_ADDR="198.51.100.61", HTTP_X_FORWARDED_FOR="192.0.2.60")
    assert outcome(password_step(forged, admin_user.upn)) == "location_blocked"
    assert list(SignInEvent.objects.order_by("created_at").values_list("ip_address", "location")) == [
        ("192.0.2.60", "HQ"), ("198.51.100.60", "Blocked"), ("203.0.113.60", ""), ("198.51.100.61", "Blocked")]


@pages
def test_an_application_that_requires_mfa_asks_in_the_sign_in_that_leads_to_it(admin_user):
    strict, _ = application_register(tenant=admin_user.tenant, name="Payroll", public=True, require_mfa=True,
                                     redirect_uris=["http://127.0.0.1/cb"])
    relaxed, _ = application_register(tenant=admin_user.tenant, name="Wiki", public=True,
                                      redirect_uris=["http://127.0.0.1/cb"])
    query = {"response_type": "code", "redirect_uri": "http://127.0.0.1/cb", "scope": "openid"}
    to_strict = "/authorize/?" + urlencode({**query, "client_id": strict.client_id})
    to_relaxed = "/authorize/?" + urlencode({**query, "client_id": relaxed.client_id})
    response = password_step(Client(REMOTE_ADDR="192.0.2.70"), admin_user.upn, next_url=to_strict)
    assert outcome(response) == "mfa_required"
    assert outcome(password_step(Client(REMOTE_ADDR="192.0.2.70"), admin_user.upn, next_url=to_relaxed)) == \
        "success"
    records = list(SignInEvent.objects.order_by("created_at").values_list("application", "mfa_reason"))
    assert records == [(strict.pk, "application_requires_mfa"), (relaxed.pk, "policy_off")]


@pages
def test_the_password_grant_is_refused_from_a_blocked_network(admin_user):
    tenant_policy_set(tenant=admin_user.tenant, password_grant_enabled=True)
    application, secret = application_register(tenant=admin_user.tenant, name="Legacy", grant="password")
    location_set(tenant=admin_user.tenant, name="Blocked", ranges=["198.51.100.0/24"], kind=Location.Kind.BLOCKED)
    basic = base64.b64encode(f"{application.client_id}:{secret}".encode()).decode()

    def token(address: str):
        return Client(REMOTE_ADDR=address).post("/token/", {
            "grant_type": "password", "username": admin_user.upn, "password": PASSWORD, "scope": "openid"},
            HTTP_AUTHORIZATION=f"Basic {basic}")

    refused = token("198.51.100.80")
    body = json.loads(refused.content)
    assert refused.status_code == 403 and (body["error"], body["outcome"]) == ("access_denied", "location_blocked")
    assert token("192.0.2.80").status_code == 200
    event = SignInEvent.objects.filter(outcome="location_blocked").get()
    assert (event.channel, event.application_id, event.location) == ("oauth", application.pk, "Blocked")


def test_the_outcome_is_in_the_taxonomy():
    assert Outcome("location_blocked") is Outcome.LOCATION_BLOCKED
    assert "network" in Outcome.LOCATION_BLOCKED.message


@pages
def test_tenant_policy_command_takes_untrusted(admin_user):
    call_command("tenant_policy", admin_user.tenant.slug, "--mfa", "untrusted", stdout=open("/dev/null", "w"))  # noqa: SIM115
    admin_user.tenant.refresh_from_db()
    assert admin_user.tenant.mfa_policy == "untrusted"


@pages
def test_a_session_that_leaves_a_trusted_location_is_asked_again_and_gets_nothing_from_a_blocked_one(admin_user):
    tenant_policy_set(tenant=admin_user.tenant, mfa_policy="untrusted")
    location_set(tenant=admin_user.tenant, name="HQ", ranges=["192.0.2.0/24"], kind=Location.Kind.TRUSTED)
    location_set(tenant=admin_user.tenant, name="Blocked", ranges=["198.51.100.0/24"], kind=Location.Kind.BLOCKED)
    app, _ = application_register(tenant=admin_user.tenant, name="Wiki", public=True,
                                  redirect_uris=["http://127.0.0.1/cb"])
    authorize = "/authorize/?" + urlencode({
        "response_type": "code", "client_id": app.client_id, "redirect_uri": "http://127.0.0.1/cb",
        "scope": "openid", "state": "s1", "prompt": "none", "code_challenge": "A" * 43,
        "code_challenge_method": "S256"})
    client = Client(REMOTE_ADDR="192.0.2.90")
    assert outcome(password_step(client, admin_user.upn)) == "success"

    def answer(address: str) -> dict:
        response = client.get(authorize, REMOTE_ADDR=address)
        assert response.status_code == 302, response.content[:300]
        return parse_qs(urlsplit(response["Location"]).query)

    assert "code" in answer("192.0.2.91")  # still inside HQ
    outside = answer("203.0.113.91")
    assert outside["error"] == ["interaction_required"] and "code" not in outside
    blocked = answer("198.51.100.91")
    assert blocked["error"] == ["access_denied"] and "code" not in blocked
