"""A person in Chromium: the demo application → the portal's username and password pages → setting up an
authenticator app (TOTP) → back at the application, which shows who they are. Screenshots of every page go to
docs/screenshots/."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django_otp.oath import TOTP

from tests.fixtures.axe import assert_accessible
from tests.fixtures.browser import screenshot, sealed_submit
from tests.fixtures.portal import (
    REPO_ROOT,
    free_port,
    local_agents,
    make_portal,
    port_open,
    start_agent,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration


def totp_code(secret: str) -> str:
    totp = TOTP(base64.b32decode(secret + "=" * (-len(secret) % 8)))
    totp.time = time.time()
    return f"{totp.token():06d}"


@pytest.fixture(scope="module")
def demo(ad_testbed):
    """The portal (MFA for all users of the tenant), an agent on the DC, and examples/demo_app registered and
    running as its OpenID Connect client."""
    portal = make_portal("embedded")
    app = None
    try:
        port = free_port()
        node = portal.start_node("browser-mfa", port=port, env={"PTA_PUBLIC_URL": f"http://127.0.0.1:{port}"})
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        start_agent(portal, node, tenant, ad_testbed)
        wait_for(lambda: local_agents(node) == 1, timeout=10, message="the agent to connect")
        portal.manage("tenant_policy", tenant, "--mfa", "all")
        app_port = free_port()
        registered = portal.manage("app_register", "--tenant", tenant, "--name", "Demo app",
                                   "--redirect-uri", f"http://127.0.0.1:{app_port}/callback",
                                   "--post-logout-redirect-uri", f"http://127.0.0.1:{app_port}/").stdout
        credentials = dict(line.split("=", 1) for line in registered.splitlines() if "=" in line)
        log_path = Path(portal.directory) / "demo-app.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PTA_", "DATABASE_", "REDIS_"))}
        env.update(PORTAL_URL=node.url, CLIENT_ID=credentials["client_id"],
                   CLIENT_SECRET=credentials["client_secret"], PYTHONUNBUFFERED="1")
        with log_path.open("wb") as log:
            app = subprocess.Popen([sys.executable, "examples/demo_app/app.py", "--port", str(app_port)],
                                   cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: port_open(app_port) or app.poll() is not None, timeout=20, message="the demo app")
        assert app.poll() is None, log_path.read_text()
        yield {"node": node, "app_url": f"http://127.0.0.1:{app_port}", "portal": portal}
    finally:
        if app is not None:
            stop_process(app)
        portal.close()


def test_application_to_sign_in_to_totp_enrolment_and_back(page, demo, ad_testbed):
    user, app_url = ad_testbed.user("judy"), demo["app_url"]
    page.goto(app_url + "/")
    assert "You are not signed in." in page.inner_text("main")
    screenshot(page, "mfa-1-application")
    page.get_by_role("link", name="Sign in with your organisation").click()

    page.wait_for_url(lambda url: url.startswith(f"{demo['node'].url}/login/?next="))
    page.get_by_label("Username").fill(user["upn"])
    screenshot(page, "mfa-2-username")
    page.get_by_role("button", name="Next").click()

    page.wait_for_url("**/login/password/")
    page.get_by_label("Password", exact=True).fill(user["password"])
    screenshot(page, "mfa-3-password")
    sealed_submit(page)

    page.wait_for_url("**/login/mfa/enrol/")
    assert page.get_attribute("main", "data-outcome") == "mfa_required"
    assert page.locator(".qr svg").is_visible()
    secret = page.inner_text("#totp-secret").strip()
    screenshot(page, "mfa-4-enrolment")
    page.get_by_label("Code").fill(totp_code(secret))
    page.get_by_role("button", name="Verify").click()

    assert page.get_attribute("main", "data-outcome") == "success"
    assert page.locator("#recovery-codes li").count() == 10
    recovery_code = page.locator("#recovery-codes li").first.inner_text().strip()
    screenshot(page, "mfa-5-recovery-codes")
    page.get_by_role("link", name="Continue").click()

    page.wait_for_url(app_url + "/")
    assert page.inner_text("#claim-upn") == user["upn"].lower()
    assert page.inner_text("#claim-name") == user["display_name"]
    tenant_id = demo["portal"].sql("SELECT id FROM tenant_tenant")[0][0]
    assert page.inner_text("#claim-tid").replace("-", "") == str(tenant_id).replace("-", "")
    screenshot(page, "mfa-6-back-at-the-application")

    # Sign-out: the application's id_token_hint, confirmed at the portal, back to its registered page.
    page.get_by_role("link", name="Sign out").click()
    page.wait_for_url(lambda url: url.startswith(f"{demo['node'].url}/logout/?"))
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(app_url + "/")
    assert "You are not signed in." in page.inner_text("main")

    # Again, with a recovery code: the code field takes letters (a phone shows its full keyboard), axe finds
    # nothing to fault on the page, and the code signs in.
    page.get_by_role("link", name="Sign in with your organisation").click()
    page.get_by_label("Username").fill(user["upn"])
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Password", exact=True).fill(user["password"])
    sealed_submit(page)
    page.wait_for_url("**/login/mfa/")
    field = page.get_by_label("Code or recovery code")
    assert field.get_attribute("inputmode") == "text" and field.get_attribute("pattern") is None
    assert_accessible(page)
    field.fill(recovery_code.upper())  # as a phone's keyboard may capitalise it
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(app_url + "/")
    assert page.inner_text("#claim-upn") == user["upn"].lower()


def test_a_planted_session_cookie_never_reaches_the_victims_second_factor(chromium, demo, ad_testbed):
    """Session fixation into MFA enrolment (issue 20, finding 3), in two Chromium browsers: the attacker starts a
    sign-in, plants their session cookie in the victim's browser (as a sibling subdomain or a shared machine
    can), the victim signs in with their directory password (a real agent, the DC), and the attacker opens the
    enrolment page with the key they planted: no TOTP secret, no sign-in."""
    node, user = demo["node"], ad_testbed.user("bob")
    attacker, victim = (chromium.new_context(locale="en-GB") for _ in range(2))
    try:
        mallory = attacker.new_page()
        mallory.set_default_timeout(15_000)
        mallory.goto(f"{node.url}/login/")
        mallory.get_by_label("Username").fill(f"someone@{ad_testbed.upn_suffix}")
        mallory.get_by_role("button", name="Next").click()
        mallory.wait_for_url("**/login/password/")
        planted = next(c["value"] for c in attacker.cookies() if c["name"] == "sessionid")
        victim.add_cookies([{"name": "sessionid", "value": planted, "url": node.url}])

        page = victim.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{node.url}/login/")
        page.get_by_label("Username").fill(user["upn"])
        page.get_by_role("button", name="Next").click()
        page.wait_for_url("**/login/password/")
        page.get_by_label("Password", exact=True).fill(user["password"])
        sealed_submit(page)
        page.wait_for_url("**/login/mfa/enrol/")
        assert page.inner_text("#totp-secret").strip()  # the victim's own secret, on the victim's page

        mallory.goto(f"{node.url}/login/mfa/enrol/")
        assert mallory.locator("#totp-secret").count() == 0, "the attacker read the victim's TOTP secret"
        assert mallory.url.startswith(f"{node.url}/login/") and "/mfa/" not in mallory.url
        mallory.goto(f"{node.url}/login/done/")
        assert "/login/done/" not in mallory.url, "the attacker is signed in as the victim"
        assert next(c["value"] for c in victim.cookies() if c["name"] == "sessionid") != planted
    finally:
        attacker.close()
        victim.close()
