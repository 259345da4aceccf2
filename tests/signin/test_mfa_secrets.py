"""A factor's secret after enrolment (docs/SECURITY.md, 5d): recovery codes are stored only as keyed hashes,
still work once each and are throttled like django-otp's own; the admin console shows no TOTP key, QR code or
recovery code to anyone, the platform superuser included, and edits no factor."""

from __future__ import annotations

import re
import time

import pytest
from django.apps import apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from signin.services.mfa import mfa_code_verify, totp_secret_base32
from tenant.models import User
from tests.signin.test_mfa import PASSWORD, csrf, enrol, is_signed_in, outcome, pages, password_step, set_policy

_CODES = re.compile(r"<li><code>([a-z0-9-]+)</code></li>")


@pytest.fixture
def admin_user(transactional_db, tenant_a, tenant_admin_factory):
    set_policy(tenant_a, "all")
    return tenant_admin_factory(tenant_a)


def enrolled(upn: str, address: str) -> tuple[Client, str, list[str]]:
    """Signed in through the pages with a new authenticator; the secret and the recovery codes it was shown."""
    client = Client(REMOTE_ADDR=address)
    assert outcome(password_step(client, upn, next_url="/admin/")) == "mfa_required"
    secret, done = enrol(client)
    assert outcome(done) == "success" and is_signed_in(client)
    codes = _CODES.findall(done.content.decode())
    assert len(codes) == 10
    return client, secret, codes


def stored_text() -> str:
    """Every value of every row of every table the portal's models (django-otp's included) hold."""
    values: list[str] = []
    for model in apps.get_models():
        for row in model._default_manager.all().values_list():
            values.extend(str(value) for value in row)
    return "\n".join(values)


def code_forms(code: str) -> set[str]:
    bare = code.replace("-", "")
    return {code, bare, bare.upper()}


def challenge(upn: str, code: str, address: str = "198.51.100.70"):
    client = Client(REMOTE_ADDR=address)
    assert outcome(password_step(client, upn)) == "mfa_required"
    page = client.get("/login/mfa/")
    return client, client.post("/login/mfa/", {"otp": code, "csrfmiddlewaretoken": csrf(page)})


# --- recovery codes at rest ------------------------------------------------------------------------------

@pages
def test_recovery_codes_are_stored_only_as_keyed_hashes(admin_user):
    _, _, codes = enrolled(admin_user.upn, "198.51.100.60")
    everything = stored_text()
    for code in codes:
        assert not code_forms(code) & set(re.findall(r"[a-z0-9-]+", everything, re.IGNORECASE)), code
        assert code.replace("-", "") not in everything.lower()
    assert len(codes[0].replace("-", "")) == 16  # 80 random bits each
    # Typed the way a person copies it (no dashes, capitals), the code signs in, once.
    client, response = challenge(admin_user.upn, codes[3].replace("-", "").upper())
    assert outcome(response) == "success" and is_signed_in(client)
    client, response = challenge(admin_user.upn, codes[3])
    assert outcome(response) == "mfa_failed" and not is_signed_in(client)
    device = StaticDevice.objects.get(user=admin_user)
    assert device.last_used_at is not None and device.recovery_codes.count() == 9


@pages
def test_wrong_recovery_codes_are_throttled_like_django_otps(admin_user, settings):
    settings.OTP_STATIC_THROTTLE_FACTOR = 1
    _, _, codes = enrolled(admin_user.upn, "198.51.100.61")
    client, response = challenge(admin_user.upn, "aaaa-bbbb-cccc-dddd")
    assert outcome(response) == "mfa_failed"
    page = client.get("/login/mfa/")
    # At once, even a right code is refused: the device waits 1 s after one failure (django-otp's throttle).
    response = client.post("/login/mfa/", {"otp": codes[0], "csrfmiddlewaretoken": csrf(page)})
    assert outcome(response) == "mfa_failed" and "Too many wrong codes" in response.content.decode()
    assert StaticDevice.objects.get(user=admin_user).throttling_failure_count == 1
    time.sleep(1.2)
    response = client.post("/login/mfa/", {"otp": codes[0], "csrfmiddlewaretoken": csrf(page)})
    assert outcome(response) == "success" and is_signed_in(client)
    assert StaticDevice.objects.get(user=admin_user).throttling_failure_count == 0  # a success resets it


@pytest.mark.django_db(transaction=True)
def test_the_migration_hashes_the_codes_stored_in_clear(tenant_a, tenant_admin_factory):
    executor = MigrationExecutor(connection)
    others = [node for node in executor.loader.graph.leaf_nodes() if node[0] != "signin"]
    before = [*others, ("signin", "0006_outcome_session_expired")]
    after = [*others, ("signin", "0007_recovery_codes_hashed")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    user = tenant_admin_factory(tenant_a)
    device = old.get_model("otp_static", "StaticDevice").objects.create(user_id=user.pk, name="Recovery codes",
                                                                         confirmed=True)
    clear = ["abcdefgh", "ijklmnop", "qrstuvwx"]
    for code in clear:
        old.get_model("otp_static", "StaticToken").objects.create(device_id=device.pk, token=code)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # the rest of the project, as it was

    assert not any(code in stored_text() for code in clear)
    assert StaticDevice.objects.get(pk=device.pk).recovery_codes.count() == 3
    assert mfa_code_verify(user=user, token="ijklmnop").ok  # the user's codes still work, once
    assert not mfa_code_verify(user=user, token="ijklmnop").ok


# --- the admin console -----------------------------------------------------------------------------------

def factor_pages(device) -> list[str]:
    opts = device._meta
    base = f"/admin/{opts.app_label}/{opts.model_name}/"
    return [base, f"{base}?q={device.user.upn}", f"{base}add/", f"{base}{device.pk}/change/",
            f"{base}{device.pk}/history/", f"{base}{device.pk}/delete/", f"{base}{device.pk}/config/",
            f"{base}{device.pk}/qrcode/", f"/admin/tenant/user/{device.user_id}/change/", "/admin/"]


@pytest.fixture
def root(transactional_db):
    return User.objects.create_superuser("root@platform.example.test", PASSWORD)


@pages
def test_the_platform_superuser_sees_no_factors_secret_in_the_admin_console(root, admin_user):
    """Signed in to the console as the platform superuser (password and second factor, through the pages), who
    reads every page of every user's factors: no key, no QR code, no recovery code."""
    console, _, _ = enrolled(root.upn, "198.51.100.80")
    _, user_secret, user_codes = enrolled(admin_user.upn, "198.51.100.81")
    totp = TOTPDevice.objects.get(user=admin_user, confirmed=True)
    recovery = StaticDevice.objects.get(user=admin_user)
    secrets = {totp.key, totp.key.upper(), user_secret, totp_secret_base32(totp), "otpauth://", "qrcode"}
    for code in user_codes:
        secrets |= code_forms(code)

    seen = []
    for url in factor_pages(totp) + factor_pages(recovery):
        response = console.get(url, follow=True)
        assert response.status_code in (200, 403, 404), (url, response.status_code)
        body = response.content.decode() + str(response.headers)
        leaked = sorted(secret for secret in secrets if secret in body)
        assert not leaked, (url, leaked)
        seen.append((url, response.status_code))
    statuses = dict(seen)
    base = "/admin/otp_totp/totpdevice/"
    assert statuses[base] == 200 and statuses[f"{base}{totp.pk}/change/"] == 200  # listed and read, that's all
    assert admin_user.upn in console.get(base).content.decode()
    assert statuses[f"{base}add/"] == 403 and statuses[f"{base}{totp.pk}/delete/"] == 200
    assert statuses[f"{base}{totp.pk}/config/"] == statuses[f"{base}{totp.pk}/qrcode/"] == 404


@pages
def test_the_admin_console_cannot_edit_or_add_a_factor(root, admin_user):
    console, _, _ = enrolled(root.upn, "198.51.100.82")
    enrolled(admin_user.upn, "198.51.100.83")
    totp = TOTPDevice.objects.get(user=admin_user, confirmed=True)
    known = "00" * 20  # a key the superuser would then hold codes of
    url = f"/admin/otp_totp/totpdevice/{totp.pk}/change/"
    page = console.get(url)
    form = {"csrfmiddlewaretoken": csrf(page), "user": admin_user.pk, "name": "x", "confirmed": "on",
            "key": known, "step": 30, "t0": 0, "digits": 6, "tolerance": 1, "drift": 0,
            "throttling_failure_count": 0, "_save": "Save"}
    assert console.post(url, form).status_code == 403
    assert TOTPDevice.objects.get(pk=totp.pk).key == totp.key
    added = console.post("/admin/otp_totp/totpdevice/add/", {**form, "user": root.pk})
    assert added.status_code == 403 and not TOTPDevice.objects.filter(key=known).exists()
    recovery = StaticDevice.objects.get(user=admin_user)
    static_url = f"/admin/otp_static/staticdevice/{recovery.pk}/change/"
    response = console.post(static_url, {
        "csrfmiddlewaretoken": csrf(console.get(static_url)), "user": admin_user.pk, "name": "x", "confirmed": "on",
        "token_set-TOTAL_FORMS": "1", "token_set-INITIAL_FORMS": "0", "token_set-0-token": "chosenbyroot",
        "_save": "Save"})
    assert response.status_code == 403
    assert not mfa_code_verify(user=admin_user, token="chosenbyroot").ok
    # Removing a factor is what the console does: the user enrols again at the next sign-in.
    delete = f"/admin/otp_totp/totpdevice/{totp.pk}/delete/"
    assert console.post(delete, {"csrfmiddlewaretoken": csrf(console.get(delete)), "post": "yes"}).status_code == 302
    assert not TOTPDevice.objects.filter(pk=totp.pk).exists()
