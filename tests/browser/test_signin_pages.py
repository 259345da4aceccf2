"""A person signing in with a keyboard in Chromium: username, Next, password, Sign in; and the pages that guide
when that is not enough (issue 22), each checked with axe-core: the change form for an expired password, what
to do next (the helpdesk contact) for a disabled, expired, locked or out-of-hours account, when a cloud lock
ends, a network the organisation blocks, an application the user is not assigned to (issue 23), "Can't access
your account?", the Show button, the focus ring's contrast, the front page and the icon. Last, the password
sealed in the browser (issue 28): no request body holds a password, in a sign-in, a password change, a failover
after an agent was killed between the two steps and a new ticket when every candidate went away; without
WebCrypto or JavaScript the portal seals, and the record says so; then no portal process's core dump nor the
module's Redis traffic holds any password a page sealed, while the JavaScript-off control's is in the node's
memory. The portal runs the production profile (PostgreSQL, and a Redis of its own, recorded by MONITOR)."""

import base64
import hashlib
import json
import re
from urllib.parse import parse_qs, urlencode

import pytest

from tests.fixtures.axe import assert_accessible
from tests.fixtures.browser import contrast_ratio, holds_marker, request_bodies, screenshot, sealed_submit
from tests.fixtures.directory_admin import DirectoryAdmin
from tests.fixtures.memory import RedisCapture, core_markers, encodings
from tests.fixtures.portal import RedisServer, local_agents, make_portal, wait_for

pytestmark = pytest.mark.integration
HELPDESK = "https://help.contoso.example/it"
HELP_TEXT = "Forgot your password? Call the Contoso service desk on 0100 (8:00-18:00).\nLocked out? Wait 30 minutes."


@pytest.fixture(scope="module")
def site(ad_testbed, tmp_path_factory):
    """Tenant "Contoso" on the test bed's domain, its helpdesk contact and help text set, and an agent with a
    service account (it can change passwords): the portal, its node and the tenant's slug. The production profile,
    on a Redis of its own whose every command is recorded from the start (``portal.traffic``, MONITOR): the sealing
    tests at the end look for passwords in it."""
    redis_server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    portal = make_portal("production", redis_url=redis_server.url)
    portal.traffic = RedisCapture(redis_server.url).start()  # type: ignore[attr-defined]
    try:
        node = portal.start_node("browser")
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        config, result = portal.agent_register(node, portal.agent_token(tenant), ldap_urls=(ad_testbed.ldaps_url,),
                                               extra=portal.directory_options(ad_testbed, service_account=True))
        assert result.returncode == 0, result.stderr
        portal.agent_run(config)
        wait_for(lambda: local_agents(node) == 1, timeout=10, message="the agent to connect")
        portal.manage("tenant_policy", tenant, "--helpdesk-contact", HELPDESK, "--help-text", HELP_TEXT)
        yield portal, node, tenant
    finally:
        portal.traffic.stop()  # type: ignore[attr-defined]
        portal.close()
        redis_server.stop(kill=True)


@pytest.fixture(scope="module")
def portal_with_agent(site):
    return site[1]


def to_password_page(page, node, upn: str, *, wait: bool = True) -> None:
    """The username step; with ``wait``, until the password page is there (some answers stop at the first)."""
    page.goto(f"{node.url}/login/")
    page.get_by_label("Username").fill(upn)
    page.get_by_role("button", name="Next").click()
    if wait:
        page.wait_for_url("**/login/password/")


def password_answer(page, node, upn: str, password: str) -> None:
    to_password_page(page, node, upn, wait=False)
    page.get_by_label("Password", exact=True).fill(password)
    sealed_submit(page)


def test_sign_in_through_the_two_pages(page, portal_with_agent, ad_testbed):
    node, user = portal_with_agent, ad_testbed.user("alice")
    page.goto(f"{node.url}/login/")
    assert page.evaluate("document.activeElement.name") == "username"  # focus is where typing starts
    assert page.get_by_label("Username").is_visible()
    assert_accessible(page)
    page.keyboard.type(user["upn"])
    screenshot(page, "signin-1-username")
    page.keyboard.press("Enter")
    page.wait_for_url("**/login/password/")
    assert "Contoso" in page.inner_text("main")  # the organisation's name
    assert page.evaluate("document.activeElement.id") == "id_password"  # no name: sealed in the browser (issue 28)
    page.get_by_label("Password", exact=True).fill(user["password"])
    assert_accessible(page)
    screenshot(page, "signin-2-password")
    sealed_submit(page)
    page.wait_for_url("**/login/done/")
    assert page.get_attribute("main", "data-outcome") == "success"
    assert user["display_name"] in page.inner_text("main")
    screenshot(page, "signin-3-signed-in")


def test_a_wrong_password_says_so_on_the_page(page, portal_with_agent, ad_testbed):
    node, user = portal_with_agent, ad_testbed.user("bob")
    page.goto(f"{node.url}/login/")
    page.get_by_label("Username").fill(user["upn"])
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Password", exact=True).fill("not the password")
    sealed_submit(page)
    assert page.get_attribute("main", "data-outcome") == "invalid_credentials"
    assert page.get_by_role("alert").inner_text() == "Your account or password is incorrect."
    assert_accessible(page)
    screenshot(page, "signin-wrong-password")
    page.get_by_label("Password", exact=True).fill(user["password"])  # and the right one still works (AD not locked)
    sealed_submit(page)
    page.wait_for_url("**/login/done/")


def test_a_disabled_account_is_told_what_to_do_next(page, portal_with_agent, ad_testbed):
    node, user = portal_with_agent, ad_testbed.user("carol")
    password_answer(page, node, user["upn"], user["password"])
    assert page.get_attribute("main", "data-outcome") == "account_disabled"
    assert "Your account has been disabled." in page.inner_text("main")
    assert "Only your organisation can enable it again" in page.inner_text("#next-steps")
    assert page.get_by_role("link", name=HELPDESK).get_attribute("href") == HELPDESK
    assert page.get_by_label("Password", exact=True).count() == 0  # no password box with "Sign in" as its action
    assert_accessible(page)
    screenshot(page, "signin-disabled-helpdesk")


@pytest.mark.parametrize(("name", "outcome", "words"), [
    ("dave", "account_expired", "end date"),
    ("grace", "logon_hours", "certain hours only"),
    ("heidi", "account_locked", "your helpdesk can unlock it now"),
])
def test_expired_out_of_hours_and_locked_accounts_say_what_to_do(page, portal_with_agent, ad_testbed, name,
                                                                  outcome, words):
    node, user = portal_with_agent, ad_testbed.user(name)
    password_answer(page, node, user["upn"], user["password"])
    assert page.get_attribute("main", "data-outcome") == outcome
    assert words in page.inner_text("#next-steps") and HELPDESK in page.inner_text("#helpdesk-contact")
    page.get_by_role("link", name="Try again").click()  # the password form is one link away
    page.wait_for_url("**/login/password/")
    assert page.get_by_label("Password", exact=True).is_visible()


def test_an_expired_password_goes_straight_to_the_change_form(page, portal_with_agent, ad_testbed):
    node, user = portal_with_agent, ad_testbed.user("frank")  # AD 532; the form is only shown, not sent
    password_answer(page, node, user["upn"], user["password"])
    page.wait_for_url("**/login/password/change/")
    assert page.get_attribute("main", "data-outcome") == "password_expired"
    assert "Your password has expired. Choose a new one to sign in." in page.inner_text("#change-why")
    assert page.evaluate("document.activeElement.id") == "id_current_password"
    page.get_by_label("Current password").fill(user["password"])
    assert_accessible(page)
    screenshot(page, "password-expired-change")


def test_a_must_change_password_goes_straight_to_the_change_form(page, portal_with_agent, ad_testbed):
    node, user = portal_with_agent, ad_testbed.user("erin")  # AD 773
    password_answer(page, node, user["upn"], user["password"])
    page.wait_for_url("**/login/password/change/")
    assert page.get_attribute("main", "data-outcome") == "password_must_change"
    assert page.get_by_label("Confirm new password").is_visible()


def test_a_cloud_lock_says_when_it_ends(page, site, ad_testbed):
    portal, node, _ = site
    upn = ad_testbed.unknown_user["upn"]  # nobody: AD's own counters stay untouched
    for guess in range(5):  # the tenant's threshold
        password_answer(page, node, upn, f"wrong-{guess}")
        assert page.get_attribute("main", "data-outcome") == "invalid_credentials"
    password_answer(page, node, upn, "wrong-5")
    assert page.get_attribute("main", "data-outcome") == "cloud_locked"
    # The guesses were sealed in the browser: the portal reserved each against lockout all the same (issue 28).
    assert portal.sql("SELECT outcome, sealed_by FROM signin_signinevent WHERE username = %s ORDER BY id",
                      (upn,)) == [("invalid_credentials", "browser")] * 5 + [("cloud_locked", "")]
    assert re.fullmatch(r"You can try again after \d\d:\d\d UTC \(in about [12] minutes?\)\.",
                        page.inner_text("#lock-ends"))
    assert_accessible(page)


def test_a_blocked_network_is_told_so_with_a_next_step(page, site, ad_testbed):
    portal, node, tenant = site
    user = ad_testbed.user("alice")
    # The browser's own address (loopback here) in a location the tenant blocks, for this test only.
    portal.manage("tenant_location", tenant, "--name", "Blocked here", "--range", "127.0.0.0/8", "--range",
                  "::1/128", "--blocked")
    try:
        password_answer(page, node, user["upn"], user["password"])
        assert page.get_attribute("main", "data-outcome") == "location_blocked"
        assert "network or location" in page.get_by_role("alert").inner_text()
        assert "127.0.0" not in page.inner_text("main")  # the ranges are the tenant's business
        assert page.get_by_label("Password", exact=True).count() == 0
        assert_accessible(page)
        screenshot(page, "signin-location-blocked")
        assert page.request.get(f"{node.url}/login/done/", max_redirects=0).status == 302  # nobody signed in
    finally:
        portal.manage("tenant_location", tenant, "--remove", "Blocked here")


def test_an_application_the_user_is_not_assigned_to_says_so_after_the_sign_in(page, site, ad_testbed):
    portal, node, tenant = site
    user = ad_testbed.user("alice")
    redirect_uri = "http://127.0.0.1:9/callback"  # nothing listens: the browser never gets there
    # Assigned to a group nobody is in (a name no sign-in has reported: it waits, and admits nobody meanwhile).
    printed = portal.manage("app_register", "--tenant", tenant, "--name", "Payroll", "--redirect-uri", redirect_uri,
                            "--assign-group", "Payroll-Clerks").stdout
    app = dict(line.split("=", 1) for line in printed.splitlines() if "=" in line)
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    page.goto(f"{node.url}/authorize/?" + urlencode({
        "response_type": "code", "client_id": app["client_id"], "redirect_uri": redirect_uri, "scope": "openid",
        "state": "s1", "nonce": "n1", "code_challenge": challenge, "code_challenge_method": "S256"}))
    page.wait_for_url("**/login/**")
    page.get_by_label("Username").fill(user["upn"])
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Password", exact=True).fill(user["password"])
    sealed_submit(page)
    page.wait_for_url("**/authorize/**")
    assert page.get_by_role("heading", level=1).inner_text() == "You don't have access to this application"
    assert "Payroll" in page.inner_text("#application-name") and "Payroll-Clerks" not in page.inner_text("main")
    assert HELPDESK in page.inner_text("main")
    assert page.get_by_role("link", name="Sign in again").is_visible()
    assert_accessible(page)
    screenshot(page, "signin-app-not-assigned")


def test_cant_access_your_account_is_generic_then_the_tenants(page, portal_with_agent, ad_testbed):
    node = portal_with_agent
    page.goto(f"{node.url}/login/")
    page.get_by_role("link", name="Can't access your account?").click()
    page.wait_for_url("**/login/help/")
    assert "contact your organisation's helpdesk" in page.inner_text("#help-text")
    assert "Contoso service desk" not in page.inner_text("main")
    assert_accessible(page)
    page.get_by_role("link", name="Back to sign-in").click()
    page.get_by_label("Username").fill(ad_testbed.user("alice")["upn"])
    page.get_by_role("button", name="Next").click()
    page.get_by_role("link", name="Can't access your account?").click()
    page.wait_for_url("**/login/help/")
    assert page.inner_text("#help-text") == HELP_TEXT  # plain text, its line breaks kept
    assert page.get_by_role("link", name=HELPDESK).is_visible()
    assert_accessible(page)
    screenshot(page, "signin-help")
    page.get_by_role("link", name="Back to sign-in").click()
    page.wait_for_url("**/login/password/")


def test_the_show_button_reveals_the_password_and_says_so(page, portal_with_agent, ad_testbed):
    node, user = portal_with_agent, ad_testbed.user("alice")
    page.goto(f"{node.url}/login/")
    page.get_by_label("Username").fill(user["upn"])
    page.keyboard.press("Enter")
    page.wait_for_url("**/login/password/")
    field, button = page.get_by_label("Password", exact=True), page.get_by_role("button", name="Show password")
    field.fill("typed secret")  # (fill focuses the field: typing may start before autofocus applied)
    assert field.get_attribute("type") == "password" and button.get_attribute("aria-pressed") == "false"
    page.keyboard.press("Tab")  # from the field to its button, by keyboard
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Show password"
    page.keyboard.press("Enter")
    assert field.get_attribute("type") == "text" and button.get_attribute("aria-pressed") == "true"
    assert field.input_value() == "typed secret"
    button.click()
    assert field.get_attribute("type") == "password" and button.get_attribute("aria-pressed") == "false"


def test_the_focus_ring_has_3_to_1_against_what_is_around_it(page, portal_with_agent):
    node = portal_with_agent
    page.goto(f"{node.url}/login/")
    card = page.evaluate("getComputedStyle(document.querySelector('main')).backgroundColor")
    for _ in range(3):  # the username field (autofocus), then by keyboard: the Next button, the help link
        ring = page.evaluate("""() => { const s = getComputedStyle(document.activeElement);
                                        return [s.outlineStyle, s.outlineWidth, s.outlineColor]; }""")
        assert ring[0] == "solid" and float(ring[1].removesuffix("px")) >= 2
        assert contrast_ratio(ring[2], card) >= 3, (ring, card)
        page.keyboard.press("Tab")


def test_the_front_page_and_the_icon(page, portal_with_agent):
    node = portal_with_agent
    page.goto(f"{node.url}/")
    assert "signs you in to your organisation's applications" in page.inner_text("main")
    assert_accessible(page)
    page.get_by_role("link", name="Sign in").click()
    page.wait_for_url("**/login/")
    icon = page.request.get(f"{node.url}/favicon.ico")  # redirected to the SVG, served from static
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text().startswith("<svg")
    linked = page.get_attribute("link[rel=icon]", "href")
    assert page.request.get(f"{node.url}{linked}").status == 200


# --- sealed in the browser (issue 28) ----------------------------------------------------------------------
# Passwords are markers; every request body the browser sends is captured in the browser. Each password a page
# sealed goes into ``sealed_markers``: after those sign-ins, the last test looks for every one of them in a core dump
# of every portal process and in the module's whole Redis traffic (MONITOR), with a JavaScript-off control.

@pytest.fixture(scope="module")
def second_agent(site, ad_testbed):
    """A second agent that can change passwords, for failover; started for the tests below only."""
    portal, node, tenant = site
    config, result = portal.agent_register(node, portal.agent_token(tenant), name="second",
                                           ldap_urls=(ad_testbed.ldaps_url,),
                                           extra=portal.directory_options(ad_testbed, service_account=True))
    assert result.returncode == 0, result.stderr
    agent = portal.agent_run(config)
    wait_for(lambda: local_agents(node) == 2, timeout=10, message="the second agent to connect")
    yield agent
    agent.stop()


@pytest.fixture(scope="module")
def sealed_markers() -> list[str]:
    """Every password typed into a page that sealed it (the tests below add theirs): none may reach the portal."""
    return []


@pytest.fixture
def directory(ad_testbed):
    admin = DirectoryAdmin(ad_testbed)
    yield admin
    admin.close()


def marker(kind: str = "") -> str:
    """A password nobody else types, found by its prefix in a core dump (tests.fixtures.memory.markers_held)."""
    return "Seal-Marker-" + kind + DirectoryAdmin.unique("")


def marker_user(directory: DirectoryAdmin, *, must_change: bool = False) -> tuple[str, str]:
    """An AD user of the calling test's own, whose password is a marker."""
    password = marker()
    return directory.add_user(directory.unique("seal"), password, must_change=must_change), password


def sealed_posts(bodies: list[bytes]) -> list[dict]:
    """The sealed field of every form post the page sent: {request_id, envelopes}."""
    return [json.loads(parse_qs(body.decode())["sealed"][0]) for body in bodies
            if b"csrfmiddlewaretoken" in body and b"sealed=" in body]


def signed_in_without_javascript(chromium, node, upn: str, password: str) -> tuple[str, list[bytes]]:
    """The two pages with JavaScript off: the outcome the password page shows, and the bodies the browser sent."""
    context = chromium.new_context(java_script_enabled=False)
    try:
        off = context.new_page()
        bodies = request_bodies(off)
        off.goto(f"{node.url}/login/")
        off.get_by_label("Username").fill(upn)
        off.get_by_role("button", name="Next").click()
        off.get_by_label("Password", exact=True).fill(password)
        off.get_by_role("button", name="Sign in").click()
        return off.get_attribute("main", "data-outcome") or "", bodies
    finally:
        context.close()


def test_sealed_in_the_browser_no_request_holds_the_password(page, site, second_agent, directory, sealed_markers):
    portal, node, _ = site
    upn, password = marker_user(directory)
    wrong = marker("wrong-")
    sealed_markers.extend((password, wrong))
    bodies = request_bodies(page)
    password_answer(page, node, upn, wrong)
    assert page.get_attribute("main", "data-outcome") == "invalid_credentials"
    assert page.evaluate("document.getElementById('id_password').name") == ""  # never posted
    assert_accessible(page)
    page.get_by_label("Password", exact=True).fill(password)
    sealed_submit(page)
    page.wait_for_url("**/login/done/")
    assert page.get_attribute("main", "data-outcome") == "success"
    assert len(sealed_posts(bodies)) == 2
    assert not any(holds_marker(body, marker) for body in bodies for marker in (password, wrong))
    assert portal.sql("SELECT outcome, sealed_by FROM signin_signinevent WHERE username = %s ORDER BY id",
                      (upn,)) == [("invalid_credentials", "browser"), ("success", "browser")]


def test_without_webcrypto_the_page_posts_the_password_and_the_record_says_so(page, site, directory):
    """A browser without WebCrypto (crypto.subtle is missing outside a secure context, and in old browsers): the
    script leaves the form alone, the portal seals as without JavaScript."""
    portal, node, _ = site
    upn, password = marker_user(directory)
    page.add_init_script("Object.defineProperty(Crypto.prototype, 'subtle', { get: () => undefined });")
    bodies = request_bodies(page)
    password_answer(page, node, upn, password)
    page.wait_for_url("**/login/done/")
    assert page.get_attribute("main", "data-outcome") == "success"
    assert any(holds_marker(body, password) for body in bodies) and not sealed_posts(bodies)
    assert portal.sql("SELECT sealed_by FROM signin_signinevent WHERE username = %s", (upn,)) == [("portal",)]


def test_a_password_change_is_sealed_in_the_browser_too(page, site, second_agent, directory, sealed_markers):
    portal, node, _ = site
    upn, current = marker_user(directory, must_change=True)
    new = marker("new-") + "!Aa1"
    sealed_markers.extend((current, new, new + "x"))
    bodies = request_bodies(page)
    password_answer(page, node, upn, current)
    page.wait_for_url("**/login/password/change/")
    page.get_by_label("Current password").fill(current)
    page.get_by_label("New password", exact=True).fill(new)
    page.get_by_label("Confirm new password").fill(new + "x")
    page.get_by_role("button", name="Change password").click()
    assert page.get_by_text("The new passwords don't match.").is_visible()  # the script compares them
    assert_accessible(page)  # its message included
    page.get_by_label("Confirm new password").fill(new)
    sealed_submit(page, "Change password")
    page.wait_for_url("**/login/done/")
    assert page.get_attribute("main", "data-outcome") == "success"
    assert not any(holds_marker(body, marker) for body in bodies for marker in (current, new))
    assert portal.sql("SELECT password_change, sealed_by FROM signin_signinevent WHERE username = %s ORDER BY id",
                      (upn,))[-1] == (True, "browser")


def test_a_script_changed_on_its_way_is_not_run(page, site):
    """A cache or a proxy in front of the portal serves a script that also sends the password elsewhere: its hash
    is not the one in the page's integrity attribute, so the browser never runs it (the page then works as without
    JavaScript), and an inline script slipped into a page would not run either (the CSP)."""
    _, node, _ = site
    page.route("**/static/signin/signin.js", lambda route: route.fulfill(
        content_type="text/javascript",
        body="document.addEventListener('submit', () => fetch('/stolen/?p=' + "
             "document.querySelector('input[type=password]').value));"))

    def with_inline_script(route) -> None:
        if route.request.method != "GET":
            route.continue_()
            return
        served = route.fetch()
        route.fulfill(response=served, body=served.text().replace(
            "</main>", "<script>document.title = 'inline ran';</script></main>"))

    page.route("**/login/", with_inline_script)
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{node.url}/login/")
    assert page.title() != "inline ran"
    page.get_by_label("Username").fill("someone@nowhere.example.test")
    page.get_by_role("button", name="Next").click()
    page.wait_for_url("**/login/password/")
    assert page.evaluate("document.getElementById('id_password').name") == "password"  # the script never ran
    page.get_by_label("Password", exact=True).fill("Seal-Marker-tampered")
    page.get_by_role("button", name="Sign in").click()
    assert not any("/stolen/" in url for url in requests)
    assert any("integrity" in text for text in refused), refused


def test_sealed_failover_after_an_agent_was_killed_between_the_two_steps(page, site, second_agent, directory,
                                                                         sealed_markers):
    portal, node, _ = site
    upn, password = marker_user(directory)
    sealed_markers.append(password)
    bodies = request_bodies(page)
    to_password_page(page, node, upn)
    assert len(json.loads(page.inner_text("#pta-seal"))["candidates"]) == 2  # both agents' keys, from the username step
    second_agent.stop(kill=True)
    wait_for(lambda: local_agents(node) == 1, timeout=10, message="the portal to see the agent gone")
    page.get_by_label("Password", exact=True).fill(password)
    sealed_submit(page)
    page.wait_for_url("**/login/done/")
    assert page.get_attribute("main", "data-outcome") == "success"
    assert len(sealed_posts(bodies)) == 1 and not any(holds_marker(body, password) for body in bodies)
    assert portal.sql("SELECT sealed_by FROM signin_signinevent WHERE username = %s", (upn,)) == [("browser",)]


def test_with_every_candidate_gone_the_page_seals_again_without_asking_anything(page, site, second_agent,
                                                                               directory, sealed_markers):
    """The agents the password page was given all went away before the password was sent, and another one is
    connected now: the script asks for the ticket to use just before it seals, is given a new one for the agent
    connected now, and seals for that one. The person typed the password once."""
    portal, node, _ = site
    first = next(agent for agent in portal.agents if agent.running and agent is not second_agent)
    second_agent.stop(kill=True)  # (the failover test above killed it already)
    wait_for(lambda: local_agents(node) == 1, timeout=10, message="the second agent to be gone")
    upn, password = marker_user(directory)
    sealed_markers.append(password)
    bodies = request_bodies(page)
    to_password_page(page, node, upn)
    given = json.loads(page.inner_text("#pta-seal"))
    assert len(given["candidates"]) == 1  # the first agent's key only
    first.stop(kill=True)
    wait_for(lambda: local_agents(node) == 0, timeout=10, message="the portal to see the first agent gone")
    newcomer = portal.agent_run(second_agent.config_path)
    try:
        wait_for(lambda: local_agents(node) == 1, timeout=10, message="the second agent to connect again")
        page.get_by_label("Password", exact=True).fill(password)
        sealed_submit(page)
        page.wait_for_url("**/login/done/")
        assert page.get_attribute("main", "data-outcome") == "success"
        [posted] = sealed_posts(bodies)
        assert posted["request_id"] != given["request_id"]  # sealed for a new ticket, not the page's
        assert given["candidates"][0]["key_id"] not in posted["envelopes"]  # nor for the agent that went away
        assert not any(holds_marker(body, password) for body in bodies)
        assert portal.sql("SELECT outcome, sealed_by FROM signin_signinevent WHERE username = %s",
                          (upn,)) == [("success", "browser")]
    finally:  # the module's first agent back, for whatever runs next
        newcomer.stop(kill=True)
        portal.agent_run(first.config_path)
        wait_for(lambda: local_agents(node) == 1, timeout=10, message="the first agent to connect again")


def test_no_portal_process_nor_redis_holds_a_password_sealed_in_the_browser(page, chromium, site, directory,
                                                                            sealed_markers, tmp_path):
    """After the sealed sign-ins above (and one of its own, should it run alone): a core dump of every portal
    process (gdb's gcore: the node, and the process that ran the portal's commands) and every command the
    production profile's Redis ran in this module (MONITOR) hold none of their passwords. The control: with
    JavaScript off the server-side path still works, and its password is in the node's memory afterwards, which is
    what sealing in the browser takes out of the portal."""
    portal, node, _ = site
    upn, password = marker_user(directory)
    sealed_markers.append(password)
    password_answer(page, node, upn, password)
    page.wait_for_url("**/login/done/")
    assert page.get_attribute("main", "data-outcome") == "success"
    # The control: JavaScript off, the form posts the password and the portal seals it, as before.
    plain = marker("plain-")
    outcome, off_bodies = signed_in_without_javascript(chromium, node, upn, plain)
    assert outcome == "invalid_credentials"  # usable without JavaScript, the outcome on the page
    assert any(holds_marker(body, plain) for body in off_bodies)  # what sealing keeps off the wire
    assert portal.sql("SELECT sealed_by FROM signin_signinevent WHERE username = %s ORDER BY id",
                      (upn,)) == [("browser",), ("portal",)]

    captured = portal.traffic.so_far()
    assert portal.redis_prefix.encode() in captured  # the capture saw the portal's traffic
    for secret in (*sealed_markers, plain):  # on either path: the portal never puts a password in Redis
        assert not any(form in captured for form in encodings(secret).values()), "a password in Redis"
    processes = [node.proc, *([portal.manager.proc] if portal.manager is not None else [])]
    for proc in processes:
        held = core_markers(proc, tmp_path, [*sealed_markers, plain])
        assert [secret for secret in held if secret != plain] == [], f"a sealed password in process {proc.pid}"
        if proc is node.proc:  # the server-side path's password is there: the reason for sealing in the browser
            assert plain in held, "the control's password is not in the node's memory: the search cannot find one"
