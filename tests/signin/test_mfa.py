"""The MFA decision per policy, and the second factor through the sign-in pages (cloud accounts: no agent)."""

from __future__ import annotations

import base64
import re
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from signin.models import SignInEvent
from signin.outcomes import Outcome
from signin.services.mfa import mfa_decide
from tenant.models import Tenant, User
from tests.fixtures.http import found

PASSWORD = "Adm1n-pa55-for-tests"
_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_SECRET = re.compile(r'id="totp-secret">([A-Z2-7]+)<')
_OUTCOME = re.compile(r'data-outcome="([^"]+)"')


# --- the decision: pure ----------------------------------------------------------------------------------

POLICY_CASES = [
    # policy, user enforced, familiar address, known device → required, reason
    ("off", True, False, False, False, "policy_off"),
    ("all", False, True, True, True, "policy_all"),
    ("per-user", True, True, True, True, "user_enforced"),
    ("per-user", False, False, False, False, "user_not_enforced"),
    ("unfamiliar", False, False, False, True, "unfamiliar_sign_in"),
    ("unfamiliar", True, True, False, False, "familiar_address"),
    ("unfamiliar", False, False, True, False, "known_device"),
]


@pytest.mark.parametrize(("policy", "enforced", "familiar", "device", "required", "reason"), POLICY_CASES)
def test_decision_follows_the_tenant_policy(policy, enforced, familiar, device, required, reason):
    tenant = Tenant(name="Alpha", slug="alpha", mfa_policy=policy)
    user = User(upn="a@alpha.example.test", mfa_enforced=enforced)
    decision = mfa_decide(tenant=tenant, user=user, familiar_address=familiar, known_device=device)
    assert (decision.required, decision.reason) == (required, reason)


def test_every_policy_has_a_decision():
    user = User(upn="a@alpha.example.test")
    reasons = {mfa_decide(tenant=Tenant(mfa_policy=p), user=user, familiar_address=False, known_device=False).reason
               for p in Tenant.MfaPolicy.values}
    assert len(reasons) == len(Tenant.MfaPolicy.values)


def test_platform_accounts_get_the_second_factor_by_default(settings):
    root = User(upn="root@x.test")
    assert mfa_decide(tenant=None, user=root, familiar_address=True, known_device=True).required
    settings.PTA_PLATFORM_MFA = False  # the operator may waive it, except for accounts that enforce it
    assert not mfa_decide(tenant=None, user=root, familiar_address=False, known_device=False).required
    assert mfa_decide(tenant=None, user=User(upn="root@x.test", mfa_enforced=True), familiar_address=False,
                      known_device=False).required


# --- through the pages -----------------------------------------------------------------------------------

def totp_code(secret: str, *, step: int = 0) -> str:
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    totp = TOTP(key)
    totp.time = time.time() + 30 * step
    return f"{totp.token():06d}"


def csrf(response) -> str:
    return found(_CSRF, response.content.decode())


def outcome(response) -> str | None:
    match = _OUTCOME.search(response.content.decode())
    return response.headers.get("PTA-Outcome") or (match.group(1) if match else None)


def password_step(client: Client, upn: str, password: str = PASSWORD, next_url: str = ""):
    page = client.get("/login/", {"next": next_url} if next_url else None)
    response = client.post("/login/", {"username": upn, "csrfmiddlewaretoken": csrf(page), "next": next_url})
    assert response.status_code == 302, response.content[:500]
    page = client.get("/login/password/")
    return client.post("/login/password/", {"password": password, "csrfmiddlewaretoken": csrf(page)})


def enrol(client: Client) -> tuple[str, Any]:
    """Enrolment page → secret from the page → first code; returns the secret and the final response."""
    page = client.get("/login/mfa/enrol/")
    assert outcome(page) == "mfa_required"
    assert "<svg" in page.content.decode()
    secret = found(_SECRET, page.content.decode())
    response = client.post("/login/mfa/enrol/", {"otp": totp_code(secret), "csrfmiddlewaretoken": csrf(page)})
    return secret, response


def is_signed_in(client: Client) -> bool:
    return client.get("/login/done/").status_code == 200


# The pages run channels' database_sync_to_async, which closes connections: real transactions, not a wrapper.
pages = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_user(transactional_db, tenant_a, tenant_admin_factory):
    return tenant_admin_factory(tenant_a)


def set_policy(tenant, policy):
    call_command("tenant_policy", tenant.slug, "--mfa", policy, stdout=open("/dev/null", "w"))  # noqa: SIM115


@pages
def test_policy_off_signs_in_at_once(admin_user):
    client = Client(REMOTE_ADDR="198.51.100.1")
    response = password_step(client, admin_user.upn)
    assert response.status_code == 302 and outcome(response) == "success"
    event = SignInEvent.objects.get(user=admin_user)
    assert (event.outcome, event.mfa_decision, event.mfa_reason) == ("success", "not_required", "policy_off")


@pages
def test_policy_all_enrols_then_challenges_and_nobody_is_logged_in_before(admin_user):
    set_policy(admin_user.tenant, "all")
    client = Client(REMOTE_ADDR="198.51.100.2")
    response = password_step(client, admin_user.upn, next_url="/login/done/")
    assert response.status_code == 302 and response["Location"] == "/login/mfa/"
    assert outcome(response) == "mfa_required"
    assert not is_signed_in(client), "logged in after the password alone"
    assert client.get("/login/mfa/")["Location"] == "/login/mfa/enrol/"  # no device yet: enrol first
    secret, done = enrol(client)
    assert outcome(done) == "success"
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", done.content.decode())
    assert len(codes) == 10
    assert is_signed_in(client)
    event = SignInEvent.objects.get(user=admin_user)  # one record for the attempt, updated
    assert (event.outcome, event.mfa_decision, event.mfa_reason, event.mfa_result) == (
        "success", "required", "policy_all", "success")

    # Next sign-in: a challenge (not enrolment), with the next code; a recovery code works once.
    client = Client(REMOTE_ADDR="198.51.100.2")
    password_step(client, admin_user.upn)
    page = client.get("/login/mfa/")
    assert outcome(page) == "mfa_required" and 'name="otp"' in page.content.decode()
    response = client.post("/login/mfa/", {"otp": totp_code(secret, step=1), "csrfmiddlewaretoken": csrf(page)})
    assert response.status_code == 302 and outcome(response) == "success" and is_signed_in(client)
    for expected in ("success", "mfa_failed"):
        client = Client(REMOTE_ADDR="198.51.100.2")
        password_step(client, admin_user.upn)
        page = client.get("/login/mfa/")
        response = client.post("/login/mfa/", {"otp": codes[0], "csrfmiddlewaretoken": csrf(page)})
        assert outcome(response) == expected


@pages
def test_wrong_code_is_mfa_failed_and_throttled(admin_user, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 1
    set_policy(admin_user.tenant, "all")
    client = Client(REMOTE_ADDR="198.51.100.3")
    password_step(client, admin_user.upn)
    secret, _ = enrol(client)
    client = Client(REMOTE_ADDR="198.51.100.3")
    password_step(client, admin_user.upn)
    page = client.get("/login/mfa/")
    wrong = f"{(int(totp_code(secret, step=1)) + 1) % 1_000_000:06d}"
    response = client.post("/login/mfa/", {"otp": wrong, "csrfmiddlewaretoken": csrf(page)})
    assert response.status_code == 200 and outcome(response) == "mfa_failed"
    assert not is_signed_in(client)
    event = SignInEvent.objects.filter(user=admin_user).first()
    assert event is not None and (event.outcome, event.mfa_result) == ("mfa_failed", "mfa_failed")
    # Right away, even the right code is refused: django-otp's throttling.
    response = client.post("/login/mfa/", {"otp": totp_code(secret, step=1), "csrfmiddlewaretoken": csrf(page)})
    assert outcome(response) == "mfa_failed" and "Too many wrong codes" in response.content.decode()
    assert not is_signed_in(client)
    # The throttle's delay passes (one failure counted: a throttled try is no wrong code), as django-otp measures
    # it: from the device's last failure.
    TOTPDevice.objects.filter(user=admin_user).update(
        throttling_failure_timestamp=timezone.now() - timedelta(seconds=10))
    response = client.post("/login/mfa/", {"otp": totp_code(secret, step=1), "csrfmiddlewaretoken": csrf(page)})
    assert outcome(response) == "success" and is_signed_in(client)
    event.refresh_from_db()
    assert (event.outcome, event.mfa_result) == ("success", "success")


@pages
def test_too_many_wrong_codes_end_the_half_done_sign_in(admin_user, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    set_policy(admin_user.tenant, "all")
    client = Client(REMOTE_ADDR="198.51.100.4")
    password_step(client, admin_user.upn)
    page = client.get("/login/mfa/enrol/")
    for _ in range(5):
        response = client.post("/login/mfa/enrol/", {"otp": "000000x", "csrfmiddlewaretoken": csrf(page)})
        assert outcome(response) == "mfa_failed"
    assert client.get("/login/mfa/enrol/")["Location"] == "/login/"
    assert not is_signed_in(client)


@pages
def test_per_user_policy_asks_only_enforced_users(tenant_a, tenant_admin_factory):
    enforced = tenant_admin_factory(tenant_a, "enforced")
    relaxed = tenant_admin_factory(tenant_a, "relaxed")
    User.objects.filter(pk=enforced.pk).update(mfa_enforced=True)
    set_policy(tenant_a, "per-user")
    assert outcome(password_step(Client(), enforced.upn)) == "mfa_required"
    assert outcome(password_step(Client(), relaxed.upn)) == "success"


@pages
def test_unfamiliar_policy_asks_new_places_until_a_sign_in_completes(admin_user):
    set_policy(admin_user.tenant, "unfamiliar")
    # The password alone does not make an address familiar: ask again.
    assert outcome(password_step(Client(REMOTE_ADDR="203.0.113.5"), admin_user.upn)) == "mfa_required"
    client = Client(REMOTE_ADDR="203.0.113.5")
    assert outcome(password_step(client, admin_user.upn)) == "mfa_required"
    enrol(client)
    # Completed from this address: familiar now. Another address (new browser) is asked.
    assert outcome(password_step(Client(REMOTE_ADDR="203.0.113.5"), admin_user.upn)) == "success"
    assert outcome(password_step(Client(REMOTE_ADDR="203.0.113.99"), admin_user.upn)) == "mfa_required"
    # The browser that completed a sign-in carries its device cookie to a new address: known device.
    client.defaults["REMOTE_ADDR"] = "203.0.113.77"
    client.post("/logout/", {"csrfmiddlewaretoken": csrf(client.get("/logout/"))})
    assert outcome(password_step(client, admin_user.upn)) == "success"
    latest = SignInEvent.objects.filter(user=admin_user).first()
    assert latest is not None and latest.mfa_reason == "known_device"


@pages
def test_policy_command_prints_and_validates(tenant_a, capsys):
    call_command("tenant_policy", tenant_a.slug, "--mfa", "unfamiliar", "--password-grant", "on",
                 "--lockout-threshold", "3")
    out = capsys.readouterr().out.splitlines()
    assert out == [f"tenant={tenant_a.slug}", "mfa=unfamiliar", "password_grant=on", "lockout_threshold=3",
                   "refresh_check=off", "helpdesk_contact=", "phishing_resistant=off"]
    tenant_a.refresh_from_db()
    assert (tenant_a.mfa_policy, tenant_a.password_grant_enabled, tenant_a.lockout_threshold) == (
        "unfamiliar", True, 3)
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("tenant_policy", tenant_a.slug, "--lockout-threshold", "0")


@pages
def test_admin_console_login_goes_through_the_sign_in_pages_and_mfa(admin_user):
    set_policy(admin_user.tenant, "all")
    client = Client()
    response = client.get("/admin/", follow=True)
    assert response.redirect_chain[-1][0] == "/login/?next=%2Fadmin%2F"
    assert password_step(client, admin_user.upn, next_url="/admin/")["Location"] == "/login/mfa/"
    assert client.get("/admin/").status_code == 302  # not before the factor
    _, done = enrol(client)
    assert 'href="/admin/"' in done.content.decode()
    assert client.get("/admin/").status_code == 200


@pages
def test_admin_policy_change_through_the_console(admin_user):
    client = Client()
    password_step(client, admin_user.upn, next_url="/admin/")
    url = f"/admin/tenant/tenant/{admin_user.tenant.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200
    form = {"csrfmiddlewaretoken": csrf(page), "name": admin_user.tenant.name, "pass_through_enabled": "on",
            "lockout_threshold": "5", "lockout_duration_seconds": "60", "mfa_policy": "all",
            "domains-TOTAL_FORMS": "0", "domains-INITIAL_FORMS": "0", "domains-MIN_NUM_FORMS": "0",
            "domains-MAX_NUM_FORMS": "1000", "_save": "Save"}
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    admin_user.tenant.refresh_from_db()
    assert admin_user.tenant.mfa_policy == "all"
    assert outcome(password_step(Client(), admin_user.upn)) == "mfa_required"


@pages
def test_admin_reset_action_makes_the_user_enrol_again(admin_user, tenant_a, tenant_admin_factory):
    set_policy(tenant_a, "all")
    client = Client()
    password_step(client, admin_user.upn)
    enrol(client)
    other = tenant_admin_factory(tenant_a, "other")
    other_client = Client()
    password_step(other_client, other.upn)
    enrol(other_client)
    page = client.get("/admin/tenant/user/")
    response = client.post("/admin/tenant/user/", {"csrfmiddlewaretoken": csrf(page), "action": "reset_mfa",
                                                   "_selected_action": [other.pk]})
    assert response.status_code == 302
    fresh = Client()
    password_step(fresh, other.upn)
    assert fresh.get("/login/mfa/")["Location"] == "/login/mfa/enrol/"
    assert Outcome.MFA_REQUIRED.value == outcome(fresh.get("/login/mfa/enrol/"))


@pages
def test_each_enrolment_has_its_own_secret_and_a_newer_one_voids_it(admin_user):
    """Someone with the password of a user not yet enrolled starts an enrolment and copies its secret: it never
    becomes the user's factor, and the user's own enrolment shows another secret."""
    set_policy(admin_user.tenant, "all")
    attacker, user = Client(REMOTE_ADDR="203.0.113.66"), Client(REMOTE_ADDR="198.51.100.20")
    password_step(attacker, admin_user.upn)
    attacker_page = attacker.get("/login/mfa/enrol/")
    copied = found(_SECRET, attacker_page.content.decode())
    assert found(_SECRET, attacker.get("/login/mfa/enrol/").content.decode()) == copied  # a reload
    password_step(user, admin_user.upn)
    user_page = user.get("/login/mfa/enrol/")
    own = found(_SECRET, user_page.content.decode())
    assert own != copied
    # The copied secret's enrolment is void: its codes confirm nothing, and a fresh secret is shown instead.
    response = attacker.post("/login/mfa/enrol/", {"otp": totp_code(copied),
                                                   "csrfmiddlewaretoken": csrf(attacker_page)})
    assert outcome(response) == "mfa_required" and not is_signed_in(attacker)
    assert found(_SECRET, response.content.decode()) not in (copied, own)
    # That restart voided the user's enrolment in turn; the user's next page load starts their own again.
    user_page = user.get("/login/mfa/enrol/")
    own = found(_SECRET, user_page.content.decode())
    done = user.post("/login/mfa/enrol/", {"otp": totp_code(own), "csrfmiddlewaretoken": csrf(user_page)})
    assert outcome(done) == "success" and is_signed_in(user)
    # The confirmed factor is the user's own: a code from the copied secret does not pass the challenge.
    later = Client(REMOTE_ADDR="203.0.113.66")
    password_step(later, admin_user.upn)
    page = later.get("/login/mfa/")
    response = later.post("/login/mfa/", {"otp": totp_code(copied, step=1), "csrfmiddlewaretoken": csrf(page)})
    assert outcome(response) == "mfa_failed" and not is_signed_in(later)
