"""Passkeys without a browser: the phishing-resistant decision and amr (pure), the ceremony's options, answers
that are not answers (no 500, the challenge used once), and the self-service page's fresh-factor guard. The
ceremonies themselves, with a real authenticator, are tests/browser/test_passkeys.py's."""

from __future__ import annotations

import hashlib
import json
import re
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import Client
from webauthn.helpers import bytes_to_base64url

from applications.models import Application
from applications.services import application_access_set, application_register
from signin.models import PasskeyDevice, SignInEvent
from signin.services.authentication import FACTOR_AT_KEY, PASSKEY_AT_KEY
from signin.services.mfa import mfa_decide
from signin.services.passkeys import (
    CHALLENGE_SESSION_KEY,
    PasskeyRefused,
    amr_values,
    passkey_authenticate,
    passkey_authentication_options,
    passkey_register,
    passkey_registration_options,
    phishing_resistant_required,
)
from tenant.models import Tenant, User
from tests.fixtures.http import found
from tests.signin.test_mfa import (
    PASSWORD,
    csrf,
    enrol,
    is_signed_in,
    outcome,
    pages,
    password_step,
    set_policy,
    totp_code,
)

_OPTIONS = re.compile(r'<script id="passkey-create-options" type="application/json">(.+?)</script>')


# --- pure ------------------------------------------------------------------------------------------------

def test_the_phishing_resistant_rule_asks_for_a_second_factor_wherever_the_sign_in_comes_from():
    tenant = Tenant(name="Alpha", slug="alpha", mfa_policy="unfamiliar")
    user = User(upn="a@alpha.example.test")
    decision = mfa_decide(tenant=tenant, user=user, familiar_address=True, known_device=True,
                          phishing_resistant=True)
    assert (decision.required, decision.reason) == (True, "phishing_resistant_required")


def test_who_requires_a_passkey(settings):
    settings.PTA_PLATFORM_PHISHING_RESISTANT = False
    assert not phishing_resistant_required(tenant=Tenant(), application=None)
    assert phishing_resistant_required(tenant=Tenant(phishing_resistant_required=True))
    assert phishing_resistant_required(tenant=Tenant(), application=Application(phishing_resistant_required=True))
    assert not phishing_resistant_required(tenant=None)
    settings.PTA_PLATFORM_PHISHING_RESISTANT = True
    assert phishing_resistant_required(tenant=None)


def test_amr_names_the_factor_as_rfc_8176_does():
    assert amr_values(factor="") == ["pwd"]
    assert amr_values(factor="totp") == ["pwd", "otp", "mfa"]
    assert amr_values(factor="recovery_code") == ["pwd", "otp", "mfa"]
    assert amr_values(factor="passkey", device=PasskeyDevice(backup_eligible=False)) == ["pwd", "hwk", "mfa"]
    assert amr_values(factor="passkey", device=PasskeyDevice(backup_eligible=True)) == ["pwd", "swk", "mfa"]


# --- the assertion's checks, with a software authenticator ----------------------------------------------

class SoftwareAuthenticator:
    """One P-256 credential, answering navigator.credentials.get() as an authenticator would: the authenticator
    data (the RP ID's hash, flags, counter) and clientDataJSON, signed together. What it signs is the test's to
    choose, so each of the library's checks can be shown refusing one wrong part while the rest is right."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.cose = cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                                 -3: numbers.y.to_bytes(32, "big")})

    def answer(self, *, credential_id: str, challenge: str, rp_id: str, origin: str, counter: int) -> str:
        client_data = json.dumps({"type": "webauthn.get", "challenge": challenge, "origin": origin}).encode()
        authenticator_data = hashlib.sha256(rp_id.encode()).digest() + bytes([0x05]) + counter.to_bytes(4, "big")
        signature = self.key.sign(authenticator_data + hashlib.sha256(client_data).digest(),
                                  ec.ECDSA(hashes.SHA256()))
        return json.dumps({"id": credential_id, "rawId": credential_id, "type": "public-key", "response": {
            "clientDataJSON": bytes_to_base64url(client_data),
            "authenticatorData": bytes_to_base64url(authenticator_data),
            "signature": bytes_to_base64url(signature)}})


def test_an_assertion_for_another_rp_id_or_origin_or_with_a_counter_behind_is_refused(db, tenant_a,
                                                                                      tenant_admin_factory, settings):
    settings.PTA_PUBLIC_URL = "https://login.example.test"
    user = tenant_admin_factory(tenant_a)
    authenticator = SoftwareAuthenticator()
    passkey = PasskeyDevice.objects.create(user=user, name="Soft key", confirmed=True, credential_id="c29mdA",
                                           public_key=authenticator.cose, sign_count=5)
    right = {"rp_id": "login.example.test", "origin": "https://login.example.test", "counter": 6}

    def sign_in(**overrides) -> PasskeyDevice:
        session: dict = {}
        challenge = json.loads(passkey_authentication_options(session=session, user=user))["challenge"]
        return passkey_authenticate(session=session, user=user, credential_json=authenticator.answer(
            credential_id=passkey.credential_id, challenge=challenge, **{**right, **overrides}))

    for wrong, message in ((dict(rp_id="example.test"), "Unexpected RP ID hash"),  # the parent domain's
                           (dict(rp_id="login.example.test.evil.test"), "Unexpected RP ID hash"),
                           (dict(origin="https://login.example.test:8443"), "Unexpected client data origin"),
                           (dict(origin="http://login.example.test"), "Unexpected client data origin"),
                           (dict(counter=5), "not greater than current count"),
                           (dict(counter=4), "not greater than current count")):
        with pytest.raises(PasskeyRefused, match=message):
            sign_in(**wrong)
        assert PasskeyDevice.objects.get(pk=passkey.pk).sign_count == 5
    # All parts right: accepted, and the counter and last use stored.
    assert sign_in().pk == passkey.pk
    passkey.refresh_from_db()
    assert passkey.sign_count == 6 and passkey.last_used_at is not None


# --- the pages -------------------------------------------------------------------------------------------

@pytest.fixture
def admin_user(transactional_db, tenant_a, tenant_admin_factory):
    set_policy(tenant_a, "all")
    return tenant_admin_factory(tenant_a)


@pages
def test_the_enrolment_page_offers_a_passkey_first_for_the_portals_host(admin_user, settings):
    settings.PTA_PUBLIC_URL = "https://login.example.test"
    client = Client()
    assert outcome(password_step(client, admin_user.upn)) == "mfa_required"
    page = client.get("/login/mfa/enrol/").content.decode()
    assert page.index('data-factor="passkey"') < page.index('data-factor="totp"')
    options = json.loads(found(_OPTIONS, page))
    assert options["rp"]["id"] == "login.example.test"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert admin_user.upn not in options["user"]["id"]  # the user handle names nobody
    assert "<noscript>" in page and "A passkey needs JavaScript" in page
    assert 'src="/static/signin/passkey.js"' in page and "<script>" not in page  # no inline script


BAD_ANSWERS = ["", "x" * 20_000, "not json", "[]", '{"id": 5}', '{"id": "AAAA"}',
               '{"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {"clientDataJSON": 7}}',
               json.dumps({"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {
                   "clientDataJSON": "e30", "attestationObject": "oA"}})]


@pages
def test_an_answer_that_is_no_answer_is_refused_with_a_page_and_the_challenge_is_gone(admin_user):
    client = Client()
    password_step(client, admin_user.upn)
    for answer in BAD_ANSWERS:
        page = client.get("/login/mfa/enrol/")  # a new challenge each time
        assert CHALLENGE_SESSION_KEY in client.session
        response = client.post("/login/mfa/enrol/passkey/", {"credential": answer,
                                                              "csrfmiddlewaretoken": csrf(page)})
        assert response.status_code in (200, 302), answer[:40]
        assert PasskeyDevice.objects.count() == 0
        assert CHALLENGE_SESSION_KEY not in client.session  # taken out before the answer was read: used once


@pages
def test_a_challenge_works_once_and_only_for_its_ceremony_and_user(admin_user, tenant_a, tenant_admin_factory):
    other = tenant_admin_factory(tenant_a, "other")
    session: dict = {}
    with pytest.raises(PasskeyRefused, match="no registration challenge"):
        passkey_register(session=session, user=admin_user, credential_json="{}", name="")
    passkey_registration_options(session=session, user=admin_user)
    with pytest.raises(PasskeyRefused, match="no authentication challenge"):  # a registration's challenge
        passkey_authenticate(session=session, user=admin_user, credential_json="{}")
    passkey_registration_options(session=session, user=admin_user)
    with pytest.raises(PasskeyRefused, match="no registration challenge"):  # another user's
        passkey_register(session=session, user=other, credential_json="{}", name="")
    passkey_registration_options(session=session, user=admin_user)
    session[CHALLENGE_SESSION_KEY]["expires"] = time.time() - 1
    with pytest.raises(PasskeyRefused, match="no registration challenge"):  # expired
        passkey_register(session=session, user=admin_user, credential_json="{}", name="")


@pages
def test_a_passkey_posted_for_a_sign_in_without_one_is_mfa_failed_not_a_500(admin_user):
    client = Client()
    password_step(client, admin_user.upn)
    PasskeyDevice.objects.create(user=admin_user, name="k", confirmed=True, credential_id="AAAA",
                                 public_key=b"\xa0")
    page = client.get("/login/mfa/")
    response = client.post("/login/mfa/passkey/", {"credential": '{"id": "AAAA", "rawId": "AAAA", "type": '
                                                                 '"public-key", "response": {}}',
                                                   "csrfmiddlewaretoken": csrf(page)})
    assert response.status_code == 200 and outcome(response) == "mfa_failed"
    assert client.get("/login/done/").status_code == 302  # not signed in


# --- the self-service page -------------------------------------------------------------------------------

@pages
def test_the_security_page_changes_passkeys_only_after_a_fresh_second_factor(admin_user, tenant_a,
                                                                             tenant_admin_factory):
    mine = PasskeyDevice.objects.create(user=admin_user, name="Mine", confirmed=True, credential_id="AAAA",
                                        public_key=b"\xa0")
    theirs = PasskeyDevice.objects.create(user=tenant_admin_factory(tenant_a, "other"), name="Theirs",
                                          confirmed=True, credential_id="BBBB", public_key=b"\xa0")
    assert Client().get("/login/security/").status_code == 302  # signed out: to the sign-in
    client = Client()
    client.force_login(admin_user, backend="signin.backends.PassThroughBackend")
    page = client.get("/login/security/")
    assert "verify it's you first" in page.content.decode() and "Mine" not in page.content.decode()
    token = csrf(page)
    assert client.post(f"/login/security/passkeys/{mine.pk}/remove/", {"csrfmiddlewaretoken": token}
                       ).status_code == 403
    assert PasskeyDevice.objects.filter(pk=mine.pk).exists()

    # A code (from a sign-in, or typed on this page) is not enough for a user who has a passkey: a phishing page
    # that relayed it must not get to add its own passkey or remove the user's.
    session = client.session
    session[FACTOR_AT_KEY] = time.time()
    session.save()
    assert client.post(f"/login/security/passkeys/{mine.pk}/remove/", {"csrfmiddlewaretoken": token}
                       ).status_code == 403
    assert "Use one of your passkeys" in client.post("/login/security/", {"csrfmiddlewaretoken": token,
                                                                           "otp": "123456"}).content.decode()
    assert PasskeyDevice.objects.filter(pk=mine.pk).exists()
    session = client.session
    session[PASSKEY_AT_KEY] = time.time()
    session.save()
    assert client.post(f"/login/security/passkeys/{theirs.pk}/remove/", {"csrfmiddlewaretoken": token}
                       ).status_code == 404  # another user's: as if it did not exist
    assert client.post(f"/login/security/passkeys/{mine.pk}/rename/", {"csrfmiddlewaretoken": token,
                                                                      "name": "  Work   laptop "}).status_code == 200
    assert PasskeyDevice.objects.get(pk=mine.pk).name == "Work laptop"
    assert client.post(f"/login/security/passkeys/{mine.pk}/remove/", {"csrfmiddlewaretoken": token}
                       ).status_code == 200
    assert not PasskeyDevice.objects.filter(pk=mine.pk).exists()
    assert PasskeyDevice.objects.filter(pk=theirs.pk).exists()


# --- the rule at /authorize/ -----------------------------------------------------------------------------

@pages
def test_an_application_that_requires_a_passkey_sends_a_session_signed_in_with_a_code_to_sign_in_again(
        admin_user):
    strict, _ = application_register(tenant=admin_user.tenant, name="Payroll", public=True,
                                     redirect_uris=["http://127.0.0.1/cb"])
    application_access_set(application=strict, phishing_resistant_required=True)
    relaxed, _ = application_register(tenant=admin_user.tenant, name="Wiki", public=True,
                                      redirect_uris=["http://127.0.0.1/cb"])
    query = {"response_type": "code", "redirect_uri": "http://127.0.0.1/cb", "scope": "openid",
             "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"}
    client = Client(REMOTE_ADDR="192.0.2.90")
    assert outcome(password_step(client, admin_user.upn)) == "mfa_required"
    secret, done = enrol(client)  # signed in with an authenticator app's code
    assert outcome(done) == "success"
    to_relaxed = client.get("/authorize/?" + urlencode({**query, "client_id": relaxed.client_id}))
    assert to_relaxed.status_code == 302 and to_relaxed["Location"].startswith("http://127.0.0.1/cb?code=")
    to_strict = client.get("/authorize/?" + urlencode({**query, "client_id": strict.client_id}))
    assert to_strict.status_code == 302 and to_strict["Location"].startswith("/login/?next=")
    # That sign-in asks for the second factor whatever else, and its record says why.
    next_url = parse_qs(urlsplit(to_strict["Location"]).query)["next"][0]
    again = Client(REMOTE_ADDR="192.0.2.90")
    assert outcome(password_step(again, admin_user.upn, next_url=next_url)) == "mfa_required"
    assert SignInEvent.objects.order_by("-created_at").values_list("mfa_reason", flat=True)[0] == \
        "phishing_resistant_required"
    # The application's rule holds on the sign-in pages: the right code is the factor the user has, not the end of
    # the sign-in; a passkey is enrolled next (no authenticator app offered), and nobody is signed in before.
    page = again.get("/login/mfa/")
    response = again.post("/login/mfa/", {"otp": totp_code(secret, step=1), "csrfmiddlewaretoken": csrf(page)})
    assert response.status_code == 302 and response["Location"] == "/login/mfa/enrol/"
    assert not is_signed_in(again)
    enrolment = again.get("/login/mfa/enrol/").content.decode()
    assert re.findall(r'data-factor="\w+"', enrolment) == ['data-factor="passkey"'] and "totp-secret" not in enrolment


@pages
def test_the_platform_setting_makes_platform_administrators_enrol_a_passkey(settings):
    root = User.objects.create_superuser("root@platform.example.test", PASSWORD)
    for required, offered in ((False, ['data-factor="passkey"', 'data-factor="totp"']),
                              (True, ['data-factor="passkey"'])):
        settings.PTA_PLATFORM_PHISHING_RESISTANT = required
        client = Client(REMOTE_ADDR="198.51.100.41")
        assert outcome(password_step(client, root.upn, next_url="/admin/")) == "mfa_required"
        page = client.get("/login/mfa/enrol/").content.decode()
        assert re.findall(r'data-factor="\w+"', page) == offered, required
        assert not is_signed_in(client)
    # Under the setting an authenticator app's code is no answer to the enrolment either.
    response = client.post("/login/mfa/enrol/", {"otp": "123456", "csrfmiddlewaretoken": csrf(client.get(
        "/login/mfa/enrol/"))})
    assert outcome(response) == "mfa_failed" and "requires a passkey" in response.content.decode()
    assert not is_signed_in(client)
