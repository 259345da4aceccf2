"""Passkeys in Chromium, through the real pages, a Samba DC and an agent, with the DevTools virtual authenticator
(CTAP2, resident keys, user verification): enrolment, a sign-in with the passkey and the ID token's ``amr``; a
relayed ceremony from another origin, a cloned authenticator (its counter behind) and a code under the
phishing-resistant rule, each refused; the page without JavaScript. One portal, one agent, one browser."""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from django_otp.oath import TOTP

from tests.fixtures.axe import assert_accessible
from tests.fixtures.portal import free_port, local_agents, make_portal, start_agent, wait_for

pytestmark = pytest.mark.integration

TOTP_KEY = "3132333435363738393031323334353637383930"  # hex, RFC 6238's test key

# Like any page script would: navigator.credentials.get() with the portal's options, the answer as JSON.
RELAY_ASSERTION = """async (options) => {
  const b = (t) => Uint8Array.from(atob(t.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((t.length + 3) % 4)),
                                   (c) => c.charCodeAt(0));
  const s = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\\+/g, '-').replace(/\\//g, '_')
                       .replace(/=+$/, '');
  const cred = await navigator.credentials.get({publicKey: {...options, challenge: b(options.challenge),
      allowCredentials: options.allowCredentials.map((c) => ({...c, id: b(c.id)}))}});
  return JSON.stringify({id: cred.id, rawId: s(cred.rawId), type: cred.type, clientExtensionResults: {},
      response: {clientDataJSON: s(cred.response.clientDataJSON), authenticatorData: s(cred.response.authenticatorData),
                 signature: s(cred.response.signature)}});
}"""


def totp_now() -> str:
    totp = TOTP(bytes.fromhex(TOTP_KEY))
    totp.time = time.time()
    return f"{totp.token():06d}"


@pytest.fixture(scope="module")
def site(ad_testbed):
    """A portal reached as http://localhost:PORT (a WebAuthn RP ID is a host name, never an address), MFA for all,
    an agent on the DC, and an OpenID Connect application (nothing listens at its redirect URI: the test reads the
    code from the browser's request)."""
    portal = make_portal("embedded")
    try:
        port = free_port()
        public = f"http://localhost:{port}"
        node = portal.start_node("browser-passkeys", port=port, env={"PTA_PUBLIC_URL": public})
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        start_agent(portal, node, tenant, ad_testbed)
        wait_for(lambda: local_agents(node) == 1, timeout=10, message="the agent to connect")
        portal.manage("tenant_policy", tenant, "--mfa", "all")
        redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
        registered = portal.manage("app_register", "--tenant", tenant, "--name", "Wiki",
                                   "--redirect-uri", redirect_uri).stdout
        app = dict(line.split("=", 1) for line in registered.splitlines() if "=" in line)
        yield {"portal": portal, "node": node, "url": public, "tenant": tenant, "app": app,
               "redirect_uri": redirect_uri}
    finally:
        portal.close()


def virtual_authenticator(page):
    """A platform authenticator with resident keys and user verification, answering without a touch."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    authenticator = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})["authenticatorId"]
    return cdp, authenticator


@pytest.fixture(scope="module")
def holder(chromium, site):
    """The passkey holder's browser (alice's, then ivan's passkeys live in its authenticator)."""
    context = chromium.new_context(locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(15_000)
    cdp, authenticator = virtual_authenticator(page)
    yield {"context": context, "page": page, "cdp": cdp, "authenticator": authenticator}
    context.close()


def to_factor(page, site, user: dict, *, next_url: str = "") -> None:
    """Username and password through the pages, to the second factor's page (or its enrolment)."""
    page.goto(f"{site['url']}/login/" + (f"?next={quote(next_url)}" if next_url else ""))
    page.get_by_label("Username").fill(user["upn"])
    page.get_by_role("button", name="Next").click()
    page.wait_for_url("**/login/password/")
    page.get_by_label("Password", exact=True).fill(user["password"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/login/mfa/**")


def signed_in(page, site) -> bool:
    page.goto(f"{site['url']}/login/done/")
    return "/login/done/" in page.url


def sign_out(page, site) -> None:
    page.context.clear_cookies()


def record(site, upn: str) -> tuple[str, str]:
    """The latest sign-in record of upn: (outcome, factor)."""
    return tuple(site["portal"].sql(
        "SELECT outcome, mfa_factor FROM signin_signinevent WHERE username = %s ORDER BY id DESC LIMIT 1",
        (upn,))[0])


def shell(site, code: str) -> str:
    return site["portal"].manage("shell", "-c", code).stdout


def give_totp(site, upn: str) -> None:
    shell(site, "from django_otp.plugins.otp_totp.models import TOTPDevice\n"
                "from tenant.models import User\n"
                f"TOTPDevice.objects.create(user=User.objects.get(upn={upn.lower()!r}), name='app', confirmed=True, "
                f"key={TOTP_KEY!r})")


def authorize_url(site) -> tuple[OAuth2Client, str, str]:
    client = OAuth2Client(site["app"]["client_id"], site["app"]["client_secret"], redirect_uri=site["redirect_uri"],
                          scope="openid profile", code_challenge_method="S256", timeout=20)
    verifier = generate_token(48)
    url, _ = client.create_authorization_url(f"{site['url']}/authorize/", code_verifier=verifier,
                                             nonce=generate_token(20))
    return client, url, verifier


def id_token_claims(token: dict) -> dict:
    payload = token["id_token"].split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_enrol_a_passkey_then_sign_in_with_it_and_the_id_token_says_hwk(holder, site, ad_testbed):
    page, alice = holder["page"], ad_testbed.user("alice")
    client, url, verifier = authorize_url(site)
    page.goto(url)
    page.wait_for_url("**/login/?next=**")
    next_url = parse_qs(urlsplit(page.url).query)["next"][0]
    to_factor(page, site, alice, next_url=next_url)
    # No factor yet: the enrolment page offers a passkey first, and the authenticator app.
    assert page.url.endswith("/login/mfa/enrol/")
    starters = page.locator("[data-factor]")
    assert [starters.nth(i).get_attribute("data-factor") for i in range(starters.count())] == ["passkey", "totp"]
    assert_accessible(page)
    page.get_by_label("Name for this passkey").fill("Work laptop")
    page.locator("[data-factor='passkey']").click()
    # Stored, then used at once: the sign-in completes with an assertion of the new passkey.
    page.wait_for_url("**/login/mfa/")
    assert page.locator("[data-factor='passkey']").is_visible()
    assert_accessible(page)
    page.locator("[data-factor='passkey']").click()
    # First factor of this account: its recovery codes, then on to the application.
    page.locator("#recovery-codes").wait_for()
    assert page.locator("#recovery-codes li").count() == 10
    with page.expect_request(lambda request: request.url.startswith(site["redirect_uri"])) as back:
        page.get_by_role("link", name="Continue").click()
    token_url = f"{site['node'].url}/token/"  # the same node, by address (the test's own HTTP client)
    token = client.fetch_token(token_url, authorization_response=back.value.url, code_verifier=verifier)
    claims = id_token_claims(token)
    assert claims["amr"] == ["pwd", "hwk", "mfa"]
    # An ID token from a refresh says how that sign-in was made, and when (OpenID Connect Core 12.2).
    refreshed = id_token_claims(client.refresh_token(token_url, refresh_token=token["refresh_token"]))
    assert (refreshed["amr"], refreshed["auth_time"]) == (claims["amr"], claims["auth_time"])
    assert record(site, alice["upn"]) == ("success", "passkey")
    name, last_used = site["portal"].sql("SELECT name, last_used_at FROM signin_passkeydevice")[0]
    assert name == "Work laptop" and last_used is not None
    sign_out(page, site)


def test_a_ceremony_relayed_from_another_origin_is_refused(chromium, holder, site, ad_testbed):
    """Real-time phishing: the attacker has alice's password and starts the sign-in at the portal; a page of their
    own (another origin, same host: the RP ID matches, so the browser signs) asks alice's authenticator to answer
    the portal's challenge, and the attacker hands that answer to the portal. Its clientDataJSON names the
    attacker's origin: refused, and the attacker is not signed in."""
    alice = ad_testbed.user("alice")
    attacker = chromium.new_context(locale="en-GB")
    try:
        mallory = attacker.new_page()
        mallory.set_default_timeout(15_000)
        to_factor(mallory, site, alice)
        options = mallory.evaluate("JSON.parse(document.getElementById('passkey-options').textContent)")
        assert (options["rpId"], options["userVerification"]) == ("localhost", "preferred")

        lure = f"http://localhost:{free_port()}/sign-in"
        victim = holder["page"]
        holder["context"].route(lure, lambda route: route.fulfill(status=200, content_type="text/html",
                                                                  body="<!doctype html><title>Sign in</title>"))
        victim.goto(lure)
        relayed = victim.evaluate(RELAY_ASSERTION, options)
        origin = json.loads(base64.urlsafe_b64decode(json.loads(relayed)["response"]["clientDataJSON"] + "=="))
        assert origin["origin"] == lure.rsplit("/", 1)[0] and origin["challenge"] == options["challenge"]

        with mallory.expect_navigation():
            mallory.evaluate("(answer) => { const form = document.getElementById('passkey-form');"
                             " form.elements.credential.value = answer; form.submit(); }", relayed)
        assert mallory.get_attribute("main", "data-outcome") == "mfa_failed"
        assert not signed_in(mallory, site)
        assert "Unexpected client data origin" in site["node"].log()
        assert record(site, alice["upn"]) == ("mfa_failed", "")
    finally:
        attacker.close()


def test_a_cloned_authenticator_whose_counter_is_behind_is_refused(chromium, holder, site, ad_testbed):
    """alice's key copied out of her authenticator (WebAuthn.getCredentials) into another one with a lower
    signature counter: its assertion is well signed, by the right key, for the right origin, and refused."""
    alice = ad_testbed.user("alice")
    credential = holder["cdp"].send("WebAuthn.getCredentials", {"authenticatorId": holder["authenticator"]})[
        "credentials"][0]
    stored = site["portal"].sql("SELECT sign_count FROM signin_passkeydevice")[0][0]
    assert credential["signCount"] >= stored >= 1
    copy = chromium.new_context(locale="en-GB")
    try:
        page = copy.new_page()
        page.set_default_timeout(15_000)
        cdp, authenticator = virtual_authenticator(page)
        cdp.send("WebAuthn.addCredential", {"authenticatorId": authenticator,
                                            "credential": {**credential, "signCount": 0}})
        to_factor(page, site, alice)
        page.locator("[data-factor='passkey']").click()
        page.locator("main[data-outcome='mfa_failed']").wait_for()
        assert not signed_in(page, site)
        assert f"not greater than current count of {stored}" in site["node"].log()
        assert site["portal"].sql("SELECT sign_count FROM signin_passkeydevice")[0][0] == stored
    finally:
        copy.close()


def test_the_phishing_resistant_rule_refuses_codes_and_enrols_a_passkey_after_the_existing_factor(
        chromium, holder, site, ad_testbed):
    page, alice, ivan = holder["page"], ad_testbed.user("alice"), ad_testbed.user("ivan")
    give_totp(site, alice["upn"])
    site["portal"].manage("tenant_policy", site["tenant"], "--phishing-resistant", "on")
    try:
        # alice has a passkey and an authenticator app: no code field, and a right code sent anyway is refused.
        sign_out(page, site)
        to_factor(page, site, alice)
        assert page.locator("[data-factor='totp']").count() == 0
        assert page.locator("#passkey-required").is_visible()
        with page.expect_navigation():
            page.evaluate("(code) => { const form = document.createElement('form'); form.method = 'post';"
                          " form.action = '/login/mfa/'; form.innerHTML = '<input name=otp>';"
                          " form.elements.otp.value = code;"
                          " form.append(document.querySelector('[name=csrfmiddlewaretoken]').cloneNode());"
                          " document.body.append(form); form.submit(); }", totp_now())
        assert page.get_attribute("main", "data-outcome") == "mfa_failed"
        assert "requires a passkey" in page.inner_text("#otp-error")
        assert not signed_in(page, site)
        # Her passkey, offered first, is all it takes.
        to_factor(page, site, alice)
        assert page.locator("[data-factor]").first.get_attribute("data-factor") == "passkey"
        page.locator("[data-factor='passkey']").click()
        page.wait_for_url("**/login/done/")
        assert record(site, alice["upn"]) == ("success", "passkey")

        # ivan's first sign-in here (his account is made): no factor, so a passkey is all he may enrol.
        sign_out(page, site)
        to_factor(page, site, ivan)
        assert page.url.endswith("/login/mfa/enrol/") and page.locator("#totp-secret").count() == 0
        # Say he had an authenticator app: his code first, then a passkey is enrolled (no app offered) and used.
        give_totp(site, ivan["upn"])
        to_factor(page, site, ivan)
        assert page.url.endswith("/login/mfa/")
        page.locator("[data-factor='totp']").wait_for()
        page.get_by_label("Code or recovery code").fill(totp_now())
        page.locator("[data-factor='totp']").click()
        page.wait_for_url("**/login/mfa/enrol/")
        assert page.locator("#totp-secret").count() == 0 and page.locator("[data-factor='totp']").count() == 0
        page.locator("[data-factor='passkey']").click()
        page.wait_for_url("**/login/mfa/")
        page.locator("[data-factor='passkey']").click()
        page.wait_for_url("**/login/done/")
        assert record(site, ivan["upn"]) == ("success", "passkey")
    finally:
        site["portal"].manage("tenant_policy", site["tenant"], "--phishing-resistant", "off")
        sign_out(page, site)


def test_without_javascript_the_page_says_so_and_offers_the_code(chromium, site, ad_testbed):
    alice = ad_testbed.user("alice")  # a passkey and an authenticator app (the test above)
    context = chromium.new_context(locale="en-GB", java_script_enabled=False)
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        to_factor(page, site, alice)
        assert "A passkey needs JavaScript" in page.inner_text("main")
        assert not page.locator("[data-factor='passkey']").is_visible()
        # Both of her factors on the page, the passkey first (its button stays hidden without JavaScript).
        starters = page.locator("[data-factor]")
        assert [starters.nth(i).get_attribute("data-factor") for i in range(starters.count())] == ["passkey", "totp"]
        page.get_by_label("Code or recovery code").fill(totp_now())
        page.locator("[data-factor='totp']").click()
        page.wait_for_url("**/login/done/")
        assert record(site, alice["upn"]) == ("success", "totp")
    finally:
        context.close()


def test_the_security_page_shows_last_use_and_renames_removes_and_adds_a_passkey(holder, site, ad_testbed):
    page, ivan = holder["page"], ad_testbed.user("ivan")  # his passkey from the rule's test
    sign_out(page, site)
    to_factor(page, site, ivan)
    page.locator("[data-factor='passkey']").click()
    page.wait_for_url("**/login/done/")
    page.get_by_role("link", name="Your passkeys").click()  # linked from the signed-in page
    page.wait_for_url("**/login/security/")
    row = page.locator("#passkeys tbody tr")
    assert row.count() == 1 and row.locator(".last-used").inner_text() != "Never"
    assert_accessible(page)
    row.get_by_label("Name of passkey 1").fill("Blue key")
    row.get_by_role("button", name="Rename").click()
    page.locator("#security-notice").wait_for()
    assert page.locator("#passkeys tbody tr").get_by_label("Name of passkey 1").input_value() == "Blue key"
    page.get_by_role("button", name="Remove Blue key").click()
    page.locator("#no-passkeys").wait_for()
    assert ivans_passkeys(site, ivan) == []
    # A new one, named here, from the same page (its sign-in's passkey is still the fresh factor).
    page.get_by_label("Name for this passkey").fill("Spare key")
    page.locator("[data-factor='passkey']").click()
    page.locator("#security-notice").wait_for()
    assert page.locator("#passkeys tbody tr").get_by_label("Name of passkey 1").input_value() == "Spare key"
    assert ivans_passkeys(site, ivan) == ["Spare key"]
    log = site["node"].log()  # the user's own changes: in the portal's log
    assert "removed by its user" in log and "passkey 'Spare key' added by its user" in log
    sign_out(page, site)


def ivans_passkeys(site, ivan: dict) -> list[str]:
    return [name for (name,) in site["portal"].sql(
        "SELECT d.name FROM signin_passkeydevice d JOIN tenant_user u ON u.id = d.user_id WHERE u.upn = %s",
        (ivan["upn"].lower(),))]


def test_an_administrator_lists_a_users_factors_and_removes_a_passkey_and_it_is_recorded(chromium, site,
                                                                                           ad_testbed):
    alice = ad_testbed.user("alice")
    admin = {"upn": f"helpdesk@{ad_testbed.upn_suffix}", "password": "Help-desk-pa55-word"}
    shell(site, "from tenant.models import Tenant\nfrom tenant.services import tenant_admin_create\n"
                f"tenant_admin_create(tenant=Tenant.objects.get(slug={site['tenant']!r}), upn={admin['upn']!r}, "
                f"display_name='Helpdesk', password={admin['password']!r})")
    give_totp(site, admin["upn"])
    context = chromium.new_context(locale="en-GB")
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        to_factor(page, site, admin, next_url="/admin/")
        page.get_by_label("Code or recovery code").fill(totp_now())
        page.locator("[data-factor='totp']").click()
        page.wait_for_url("**/admin/")
        page.goto(f"{site['url']}/admin/otp_totp/totpdevice/?q={quote(alice['upn'].lower())}")
        assert page.locator("#result_list tbody tr").count() == 1
        page.goto(f"{site['url']}/admin/signin/passkeydevice/?q={quote(alice['upn'].lower())}")
        rows = page.locator("#result_list tbody tr")
        assert rows.count() == 1 and "Work laptop" in rows.inner_text()
        passkey = site["portal"].sql("SELECT d.id FROM signin_passkeydevice d JOIN tenant_user u ON u.id = d.user_id "
                                     "WHERE u.upn = %s", (alice["upn"].lower(),))[0][0]
        page.goto(f"{site['url']}/admin/signin/passkeydevice/{passkey}/delete/")
        page.get_by_role("button", name="Yes, I’m sure").click()
        page.locator(".messagelist .success").wait_for()
        assert site["portal"].sql("SELECT count(*) FROM signin_passkeydevice WHERE id = %s", (passkey,))[0][0] == 0
        # Recorded: the console's own history ("Recent actions"), the audit trail and the portal's log.
        assert site["portal"].sql("SELECT object_repr FROM django_admin_log WHERE action_flag = 3 "
                                  "AND object_id = %s", (str(passkey),))
        trail = site["portal"].sql("SELECT actor FROM trail_auditevent WHERE action = 'mfa_passkey.removed' "
                                   "AND object_id = %s", (str(passkey),))
        assert [actor.lower() for (actor,) in trail] == [admin["upn"].lower()]  # and the audit trail, by whom
        assert "second factor removed by an administrator: passkey 'Work laptop'" in site["node"].log()
    finally:
        context.close()
