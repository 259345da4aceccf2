"""Session fixation into the second factor (issue 20, finding 3), played with two browsers against the portal's
HTTP application as production routes it (signin.consumers.SignInRouter: the username and password pages by their
consumers, the second factor's pages by Django's handler). The attacker holds a session key and plants it in the
victim's browser (a cookie set from a sibling subdomain, a shared machine); the victim signs in with a password;
the attacker then opens the second factor's pages with the key they planted. They must get nothing: no TOTP
secret, no sign-in, no way to confirm a factor.

Real accounts and passwords: a tenant's break-glass (cloud) account whose tenant asks everyone for a second
factor, so the password step ends mfa_required without an agent (tests/browser/test_mfa_flow.py plays the same
attack in Chromium with a directory user, a real pta-agent and the Samba DC)."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from channels.testing import HttpCommunicator
from django.core.asgi import get_asgi_application
from django.core.management import call_command

from signin.consumers import SignInRouter
from tests.fixtures.http import found
from tests.signin.test_mfa import totp_code

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "Cl0ud-only-Pa55!"
_CSRF = r'name="csrfmiddlewaretoken" value="([^"]+)"'
_SECRET = re.compile(r'id="totp-secret">([A-Z2-7]+)<')


class Browser:
    """A cookie jar over the portal's ASGI application, as a browser keeps it (host 127.0.0.1, no TLS)."""

    def __init__(self, app) -> None:
        self.app = app
        self.cookies: dict[str, str] = {}

    async def request(self, method: str, path: str, form: dict | None = None) -> dict:
        headers = [(b"host", b"127.0.0.1")]
        if self.cookies:
            headers.append((b"cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()).encode()))
        body = b""
        if form is not None:
            body = urlencode(form).encode()
            headers.append((b"content-type", b"application/x-www-form-urlencoded"))
        response: dict = dict(await HttpCommunicator(self.app, method, path, body=body, headers=headers)
                              .get_response(timeout=20))
        for name, value in response["headers"]:
            if name.decode().lower() == "set-cookie":
                jar = SimpleCookie()
                jar.load(value.decode())
                for key, morsel in jar.items():
                    if morsel["max-age"] == "0" or not morsel.value or morsel.value == '""':
                        self.cookies.pop(key, None)
                    else:
                        self.cookies[key] = morsel.value
        response["text"] = response["body"].decode()
        response["location"] = next((v.decode() for k, v in response["headers"] if k.decode().lower() == "location"),
                                    "")
        return response

    async def get(self, path: str) -> dict:
        return await self.request("GET", path)

    async def post(self, path: str, form: dict) -> dict:
        return await self.request("POST", path, form)

    async def username(self, upn: str) -> dict:
        page = await self.get("/login/")
        return await self.post("/login/", {"username": upn, "csrfmiddlewaretoken": found(_CSRF, page["text"])})

    async def password(self, password: str) -> dict:
        page = await self.get("/login/password/")
        return await self.post("/login/password/", {"password": password,
                                                    "csrfmiddlewaretoken": found(_CSRF, page["text"])})


@pytest.fixture
def victim_account(tenant_factory, tenant_admin_factory):
    tenant = tenant_factory("Alpha Corp", ["alpha.example.test"])
    call_command("tenant_policy", tenant.slug, "--mfa", "all", stdout=open("/dev/null", "w"))  # noqa: SIM115
    user = tenant_admin_factory(tenant)
    user.set_password(PASSWORD)
    user.save()
    return user


async def attacker_gets_nothing(attacker: Browser, planted: str) -> None:
    """With the key they planted: no enrolment secret, no challenge, no confirmed factor, no sign-in."""
    attacker.cookies["sessionid"] = planted  # what they planted is what they hold, whatever the portal answered
    for path in ("/login/mfa/enrol/", "/login/mfa/"):
        page = await attacker.get(path)
        assert not _SECRET.search(page["text"]), f"{path}: the attacker read the victim's TOTP secret"
        assert page["status"] == 302 and page["location"] == "/login/", (path, page["status"])
    # Nor a code for the factor the victim is enrolling, posted straight away (its secret never reached them,
    # but the code is the attack's last step): refused without a half-done sign-in to confirm.
    token = attacker.cookies.get("csrftoken", "")
    confirm = await attacker.post("/login/mfa/enrol/", {"otp": "000000", "csrfmiddlewaretoken": token})
    assert confirm["status"] in (302, 403) and not _SECRET.search(confirm["text"])
    done = await attacker.get("/login/done/")
    assert done["status"] == 302, "the attacker is signed in as the victim"


@pytest.mark.parametrize("planted_at", ["before-the-username", "at-the-password-page"])
async def test_a_planted_session_key_never_reaches_the_victims_second_factor(victim_account, planted_at):
    app = SignInRouter(get_asgi_application())
    attacker, victim = Browser(app), Browser(app)
    # The attacker gets a session of their own: a username POST stores one. Planted "at the password page", it
    # already holds the victim's name, and the victim is sent straight to /login/password/ to type the password.
    answer = await attacker.username(victim_account.upn if planted_at == "at-the-password-page"
                                     else "someone@alpha.example.test")
    assert answer["status"] == 302 and answer["location"] == "/login/password/"
    planted = attacker.cookies["sessionid"]
    victim.cookies["sessionid"] = planted

    if planted_at == "before-the-username":
        assert (await victim.username(victim_account.upn))["location"] == "/login/password/"
    answer = await victim.password(PASSWORD)
    assert answer["status"] == 302 and answer["location"] == "/login/mfa/", answer["text"][:300]
    enrol = await victim.get("/login/mfa/enrol/")  # the victim's own page: a secret, for the victim
    secret = found(_SECRET, enrol["text"])

    await attacker_gets_nothing(attacker, planted)
    assert victim.cookies["sessionid"] != planted, "the session key was not renewed"

    # The victim is not disturbed: their own session finishes the enrolment and signs them in.
    done = await victim.post("/login/mfa/enrol/", {"otp": totp_code(secret),
                                                   "csrfmiddlewaretoken": found(_CSRF, enrol["text"])})
    assert done["status"] == 200 and 'data-outcome="success"' in done["text"]
    assert (await victim.get("/login/done/"))["status"] == 200
    await attacker_gets_nothing(attacker, planted)
