"""Pages that guide the person (issue 22): what to do next after an answer another try will not change (the
tenant's helpdesk contact, when a cloud lock ends), the "Can't access your account?" page, the portal's front
page and icon, the focus ring's contrast, and a throttled second-factor try that is no wrong code. The agents
are faked at the hand-off here; tests/browser/test_signin_pages.py drives the same pages against the Samba DC."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from pta_protocol import Outcome as Wire

from agents.services.dispatch import Validation
from signin.helpdesk import HelpdeskContact, helpdesk_contact
from signin.models import SignInEvent
from signin.services import attempt
from tenant.models import Tenant, helpdesk_contact_validate
from tests.fixtures.http import found
from tests.signin.test_mfa import PASSWORD, csrf, enrol, is_signed_in, outcome, password_step, set_policy, totp_code

pytestmark = pytest.mark.django_db(transaction=True)
UPN = "dora@alpha.example.test"
BASE_TEMPLATE = Path(__file__).resolve().parents[2] / "signin" / "templates" / "signin" / "base.html"


@pytest.fixture
def admin_user(tenant_a, tenant_admin_factory):
    return tenant_admin_factory(tenant_a)


def directory_answers(monkeypatch, wire: Wire, *, can_change: bool = False) -> None:
    """Every password the fake agents are asked about gets ``wire`` from the directory."""

    async def password_validate(*, tenant_id, domain, username, password, hint=None):
        return Validation(outcome=wire, request_id=uuid.uuid4().hex)

    async def password_change_available(*, tenant_id, domain):
        return can_change

    monkeypatch.setattr(attempt, "password_validate", password_validate)
    monkeypatch.setattr(attempt, "password_change_available", password_change_available)
    monkeypatch.setattr("signin.views.password_change_available", password_change_available)


def set_contact(tenant: Tenant, contact: str = "", text: str = "") -> None:
    tenant.helpdesk_contact, tenant.help_text = contact, text
    tenant.full_clean()
    tenant.save()


# --- the helpdesk contact: what becomes a link -----------------------------------------------------------

@pytest.mark.parametrize(("typed", "shown"), [
    ("https://help.alpha.example/it", HelpdeskContact("https://help.alpha.example/it", "https://help.alpha.example/it")),
    ("it-help@alpha.example.test", HelpdeskContact("it-help@alpha.example.test", "mailto:it-help@alpha.example.test")),
    ("mailto:it@alpha.example.test", HelpdeskContact("it@alpha.example.test", "mailto:it@alpha.example.test")),
    ("+44 20 7946 0018", HelpdeskContact("+44 20 7946 0018", "tel:+442079460018")),
    ("Room 4, ext. 2200", HelpdeskContact("Room 4, ext. 2200")),
    ("javascript:alert(1)", HelpdeskContact("javascript:alert(1)")),  # never a link (and refused on save)
    ("ftp://files.alpha.example/", HelpdeskContact("ftp://files.alpha.example/")),
])
def test_the_contact_is_a_link_only_for_a_web_address_an_email_or_a_phone(typed, shown):
    assert helpdesk_contact(tenant=Tenant(helpdesk_contact=typed)) == shown


def test_no_contact_is_none():
    assert helpdesk_contact(tenant=Tenant()) is None and helpdesk_contact(tenant=None) is None


@pytest.mark.parametrize("value", ["javascript:alert(1)", "data:text/html,x", "ftp://x.example/", "a\nb",
                                   "vbscript:msgbox"])
def test_the_admin_cannot_save_a_contact_that_would_be_another_kind_of_link(value):
    with pytest.raises(ValidationError):
        helpdesk_contact_validate(value)


@pytest.mark.parametrize("value", ["https://x.example/help", "Helpdesk: +1 555 0100", "tel:+15550100",
                                   "it@x.example", "Call Sam on 2200"])
def test_ordinary_contacts_are_accepted(value):
    helpdesk_contact_validate(value)


def test_the_tenant_administrator_sets_both_in_the_admin_console(admin_user):
    client = Client()
    password_step(client, admin_user.upn, next_url="/admin/")
    url = f"/admin/tenant/tenant/{admin_user.tenant.pk}/change/"
    page = client.get(url)
    assert 'name="helpdesk_contact"' in page.content.decode() and 'name="help_text"' in page.content.decode()
    form = {"csrfmiddlewaretoken": csrf(page), "name": admin_user.tenant.name, "pass_through_enabled": "on",
            "lockout_threshold": "5", "lockout_duration_seconds": "60", "mfa_policy": "off",
            "domains-TOTAL_FORMS": "0", "domains-INITIAL_FORMS": "0", "domains-MIN_NUM_FORMS": "0",
            "domains-MAX_NUM_FORMS": "1000", "_save": "Save"}
    refused = client.post(url, {**form, "helpdesk_contact": "javascript:alert(1)"})
    assert refused.status_code == 200 and "starting with https://" in refused.content.decode()
    saved = client.post(url, {**form, "helpdesk_contact": "+1 555 0100", "help_text": "Call us."})
    assert saved.status_code == 302, saved.content.decode()[:2000]
    admin_user.tenant.refresh_from_db()
    assert (admin_user.tenant.helpdesk_contact, admin_user.tenant.help_text) == ("+1 555 0100", "Call us.")


def test_the_policy_command_sets_and_clears_them(tenant_a):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    call_command("tenant_policy", tenant_a.slug, "--helpdesk-contact", "it@alpha.example.test", "--help-text", "Hi",
                 stdout=open("/dev/null", "w"))  # noqa: SIM115
    tenant_a.refresh_from_db()
    assert (tenant_a.helpdesk_contact, tenant_a.help_text) == ("it@alpha.example.test", "Hi")
    with pytest.raises(CommandError, match="helpdesk_contact"):
        call_command("tenant_policy", tenant_a.slug, "--helpdesk-contact", "data:text/html,x")
    call_command("tenant_policy", tenant_a.slug, "--helpdesk-contact", "", stdout=open("/dev/null", "w"))  # noqa: SIM115
    tenant_a.refresh_from_db()
    assert tenant_a.helpdesk_contact == ""


# --- what to do next ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("wire", "words"), [
    (Wire.ACCOUNT_DISABLED, "Only your organisation can enable it again"),
    (Wire.ACCOUNT_EXPIRED, "end date"),
    (Wire.ACCOUNT_LOCKED, "your helpdesk can unlock it now"),
    (Wire.LOGON_HOURS, "certain hours only"),
])
def test_an_answer_another_try_will_not_change_says_what_to_do_and_whom_to_ask(tenant_a, monkeypatch, wire, words):
    set_contact(tenant_a, "https://help.alpha.example/it?a=1&b=2")
    directory_answers(monkeypatch, wire)
    answer = password_step(Client(), UPN, "Dora!pa55")
    html = answer.content.decode()
    assert answer.status_code == 200 and outcome(answer) == wire.value
    assert words in found(r'id="next-steps">(.*?)</div>', html.replace("\n", " "))
    # The contact as a link, its & escaped; no password form with "Sign in" as the main button.
    assert '<a href="https://help.alpha.example/it?a=1&amp;b=2">' in html
    assert 'name="password"' not in html and 'id="try-again" href="/login/password/"' in html


def test_the_contact_is_escaped_on_the_page(tenant_a, monkeypatch):
    Tenant.objects.filter(pk=tenant_a.pk).update(helpdesk_contact='<script>x</script>" onmouseover="y')
    directory_answers(monkeypatch, Wire.ACCOUNT_DISABLED)
    html = password_step(Client(), UPN, "Dora!pa55").content.decode()
    assert "<script>x" not in html and 'onmouseover="y' not in html
    assert "&lt;script&gt;x&lt;/script&gt;&quot; onmouseover=&quot;y" in html


def test_a_wrong_password_keeps_the_password_form(tenant_a, monkeypatch):
    set_contact(tenant_a, "it@alpha.example.test")
    directory_answers(monkeypatch, Wire.INVALID_CREDENTIALS)
    html = password_step(Client(), UPN, "Dora!pa55").content.decode()
    assert 'name="password"' in html and 'id="next-steps"' not in html and "it@alpha.example.test" not in html


def test_a_cloud_lock_says_when_it_ends(admin_user):
    client = Client(REMOTE_ADDR="198.51.100.20")
    for _ in range(admin_user.tenant.lockout_threshold):
        assert outcome(password_step(client, admin_user.upn, "wrong-" + PASSWORD)) == "invalid_credentials"
    before = timezone.now()
    locked = password_step(client, admin_user.upn, PASSWORD)
    html = locked.content.decode()
    assert outcome(locked) == "cloud_locked"
    ends = found(r'<p id="lock-ends">You can try again after <time datetime="([^"]+)"', html)
    # The tenant's lock lasts lockout_duration_seconds (60): said to the minute, rounded up, never earlier.
    from datetime import datetime

    when = datetime.fromisoformat(ends)
    assert when.second == 0
    assert before + timedelta(seconds=admin_user.tenant.lockout_duration_seconds) - timedelta(seconds=2) <= when
    assert when <= before + timedelta(seconds=admin_user.tenant.lockout_duration_seconds + 61)
    assert re.search(r"in about [12] minutes?\)", html)


# --- expired and must-change: straight to the change form -----------------------------------------------

@pytest.mark.parametrize(("wire", "why"), [(Wire.PASSWORD_EXPIRED, b"Your password has expired."),
                                           (Wire.PASSWORD_MUST_CHANGE, b"asks you to choose a new password")])
def test_an_expired_or_must_change_password_goes_straight_to_the_change_form(tenant_a, monkeypatch, wire, why):
    directory_answers(monkeypatch, wire, can_change=True)
    client = Client()
    answer = password_step(client, UPN, "Dora!pa55")
    assert answer.status_code == 302 and answer["Location"] == "/login/password/change/"
    assert answer["PTA-Outcome"] == wire.value
    page = client.get("/login/password/change/")
    assert why in page.content and b'name="new_password"' in page.content and outcome(page) == wire.value


def test_without_a_way_to_change_it_the_helpdesk_contact(tenant_a, monkeypatch):
    set_contact(tenant_a, "+44 20 7946 0018")
    directory_answers(monkeypatch, Wire.PASSWORD_EXPIRED, can_change=False)
    client = Client()
    answer = password_step(client, UPN, "Dora!pa55")
    html = answer.content.decode()
    assert answer.status_code == 200 and outcome(answer) == "password_expired"
    assert "can&#x27;t be changed here right now" in html and '<a href="tel:+442079460018">' in html
    assert "+44 20 7946 0018" in client.get("/login/password/change/").content.decode()


# --- "Can't access your account?" -----------------------------------------------------------------------

def test_the_help_page_is_generic_before_the_username_and_the_tenants_after(tenant_a):
    set_contact(tenant_a, "it@alpha.example.test", "Forgot it? Call the service desk.\n<b>Open 8-18</b>")
    client = Client()
    first = client.get("/login/")
    assert 'href="/login/help/"' in first.content.decode()
    generic = client.get("/login/help/").content.decode()
    assert "contact your organisation's helpdesk" in generic and "service desk" not in generic
    assert 'id="back" href="/login/"' in generic
    client.post("/login/", {"username": UPN, "csrfmiddlewaretoken": csrf(first)})
    password_page = client.get("/login/password/").content.decode()
    assert 'id="help-link" href="/login/help/"' in password_page
    tenants = client.get("/login/help/").content.decode()
    assert "Forgot it? Call the service desk.\n&lt;b&gt;Open 8-18&lt;/b&gt;" in tenants  # plain text, escaped
    assert "<b>" not in tenants and '<a href="mailto:it@alpha.example.test">' in tenants
    assert "Alpha Corp" in tenants and 'id="back" href="/login/password/"' in tenants


def test_without_help_text_the_tenants_help_page_gives_the_generic_text_and_the_contact(tenant_a):
    set_contact(tenant_a, "https://help.alpha.example/")
    client = Client()
    client.post("/login/", {"username": UPN, "csrfmiddlewaretoken": csrf(client.get("/login/"))})
    html = client.get("/login/help/").content.decode()
    assert "contact your organisation's helpdesk" in html
    assert '<a href="https://help.alpha.example/">https://help.alpha.example/</a>' in html


# --- the front page and the icon ------------------------------------------------------------------------

def test_the_front_page_says_what_the_portal_is_and_leads_to_the_sign_in(admin_user):
    client = Client()
    home = client.get("/")
    assert home.status_code == 200 and b"signs you in to your organisation" in home.content
    assert b'id="sign-in" href="/login/"' in home.content
    password_step(client, admin_user.upn)  # a tenant administrator: staff
    signed_in = client.get("/").content.decode()
    assert admin_user.upn in signed_in and 'id="admin-console" href="/admin/"' in signed_in


def test_the_icon_is_linked_and_favicon_ico_leads_to_it():
    page = Client().get("/login/").content.decode()
    assert '<link rel="icon" href="/static/signin/favicon.svg" type="image/svg+xml">' in page
    answer = Client().get("/favicon.ico")
    assert answer.status_code == 301 and answer["Location"] == "/static/signin/favicon.svg"
    svg = (BASE_TEMPLATE.parents[2] / "static" / "signin" / "favicon.svg").read_text()
    assert svg.startswith("<svg") and "<script" not in svg


# --- the focus ring --------------------------------------------------------------------------------------

def _luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_focus_ring_has_3_to_1_against_the_card_and_the_page():
    css = BASE_TEMPLATE.read_text()
    focus = found(r"--focus: (#[0-9a-fA-F]{6})", css)
    assert re.search(r":focus-visible \{ outline: 3px solid var\(--focus\)", css)
    card = found(r"main \{[^}]*background: (#[0-9a-fA-F]{3,6})", css)
    page = found(r"body \{[^}]*background: (#[0-9a-fA-F]{6})", css)
    card = "#ffffff" if card.lower() == "#fff" else card
    assert contrast(focus, card) >= 3 and contrast(focus, page) >= 3
    assert contrast("#7fb2ff", "#ffffff") < 3  # the ring before: too faint, so the check can fail


# --- the second factor: recovery codes on a phone, and a throttled try --------------------------------------

def test_the_code_field_takes_letters_where_a_recovery_code_is_allowed(admin_user):
    set_policy(admin_user.tenant, "all")
    client = Client(REMOTE_ADDR="198.51.100.21")
    password_step(client, admin_user.upn)
    enrolment = found(r'(<input[^>]*name="otp"[^>]*>)', client.get("/login/mfa/enrol/").content.decode())
    assert 'inputmode="numeric"' in enrolment  # no recovery codes yet: the digit pad
    enrol(client)
    client = Client(REMOTE_ADDR="198.51.100.21")
    password_step(client, admin_user.upn)
    field = found(r'(<input[^>]*name="otp"[^>]*>)', client.get("/login/mfa/").content.decode())
    assert 'inputmode="text"' in field and "pattern=" not in field and 'autocapitalize="none"' in field


def test_a_throttled_try_says_how_long_to_wait_and_is_no_wrong_code(admin_user, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 30  # one wrong code: 30 s before the next is looked at
    set_policy(admin_user.tenant, "all")
    client = Client(REMOTE_ADDR="198.51.100.22")
    password_step(client, admin_user.upn)
    secret, _ = enrol(client)
    client = Client(REMOTE_ADDR="198.51.100.22")
    password_step(client, admin_user.upn)
    page = client.get("/login/mfa/")
    wrong = f"{(int(totp_code(secret, step=1)) + 1) % 1_000_000:06d}"
    assert outcome(client.post("/login/mfa/", {"otp": wrong, "csrfmiddlewaretoken": csrf(page)})) == "mfa_failed"
    device = TOTPDevice.objects.get(user=admin_user)
    assert device.throttling_failure_count == 1
    event = SignInEvent.objects.filter(user=admin_user).order_by("-pk").first()
    assert event is not None
    # More tries while throttled than a half-done sign-in allows wrong codes (5), the right code among them:
    # none is checked, none counts, and the sign-in is still there afterwards.
    for code in [totp_code(secret, step=1)] + ["123456"] * 6:
        throttled = client.post("/login/mfa/", {"otp": code, "csrfmiddlewaretoken": csrf(page)})
        assert outcome(throttled) == "mfa_failed" and not is_signed_in(client)
        wait = int(found(r"Too many wrong codes\. Wait (\d+) seconds?, then enter a new code\.",
                         throttled.content.decode()))
        assert 25 <= wait <= 30
    device.refresh_from_db()
    assert device.throttling_failure_count == 1  # verify_token was never called while throttled
    assert client.session["pta_mfa"]["failures"] == 1
    # The wait is over (the failure moved back in time): the right code signs in, the sign-in never dropped.
    TOTPDevice.objects.filter(pk=device.pk).update(
        throttling_failure_timestamp=timezone.now() - timedelta(seconds=31))
    done = client.post("/login/mfa/", {"otp": totp_code(secret, step=1), "csrfmiddlewaretoken": csrf(page)})
    assert outcome(done) == "success" and is_signed_in(client)
    event.refresh_from_db()
    assert (event.outcome, event.mfa_result) == ("success", "success")
