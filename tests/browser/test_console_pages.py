"""Every admin console page the project renders, in Chromium through a real portal, checked with axe-core
(axe-playwright-python bundles it): no violation. A tenant administrator signs in through the portal's pages and
visits them; a platform administrator (second factor waived for the test) the MFA pages. The pages this work
changed are saved as screenshots: docs/screenshots/console-token.png, console-user.png, console-domain.png."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.axe import axe_violations
from tests.fixtures.browser import screenshot, sealed_submit
from tests.fixtures.portal import RawAgent, make_portal

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "Cl0ud-Adm1n-pa55"
ROOT_PASSWORD = "R00t-Adm1n-pa55"
DOMAIN = "contoso.example.test"
LAPTOP = {"width": 1280, "height": 800}

SETUP = f"""
import json
from django.db import transaction
from applications.services import application_register
from branding.services import branding_set
from health.models import Incident
from signin.models import SignInEvent
from tenant.models import Domain, GroupsState, Location, Tenant, User
from tenant.services import domain_add, location_set, tenant_admin_create, user_groups_record
tenant = Tenant.objects.get(slug=TENANT)
tenant_admin_create(tenant=tenant, upn='admin@{DOMAIN}', display_name='Ada Admin', password='{ADMIN_PASSWORD}')
ad = User.objects.create_user('bob@{DOMAIN}', tenant=tenant, source=User.Source.ON_PREMISES, display_name='Bob',
                              immutable_id='4f1c0c1e-0000-4000-8000-000000000001')
cloud = User.objects.create_user('carol@{DOMAIN}', 'Carol-cl0ud-pa55', tenant=tenant, source=User.Source.CLOUD,
                                 display_name='Carol')
claim = domain_add(tenant=tenant, name='eu.{DOMAIN}')
SignInEvent.objects.create(tenant=tenant, username='bob@{DOMAIN}', user=ad, outcome='success', ip_address='192.0.2.7',
                           total_ms=41.0, agent_ms=30.0)
event = SignInEvent.objects.latest('pk')
User.objects.create_superuser('root@platform.example.test', '{ROOT_PASSWORD}')
# What the pages of issues 22 and 23 show: an AD user's groups, an application that requires assignment (a group and
# a name not seen yet), a location, an incident, the tenant's branding.
user_groups_record(user=ad, state=GroupsState.CURRENT, groups=[
    {{"id": "9a1c0c1e-0000-4000-8000-00000000000a", "name": "Wiki-Editors",
      "dn": "CN=Wiki-Editors,OU=Groups,DC=contoso,DC=example,DC=test"}}])
app, _ = application_register(tenant=tenant, name='Wiki', redirect_uris=['https://wiki.{DOMAIN}/callback'],
                              assign_groups=['Wiki-Editors', 'Wiki-Readers'])
with transaction.atomic():
    location = location_set(tenant=tenant, name='Head office', ranges=['203.0.113.0/24', '2001:db8:1::/48'],
                            kind=Location.Kind.TRUSTED)
incident = Incident.objects.create(tenant=tenant, kind=Incident.Kind.FAILOVER_LOST, summary='Failover lost: one agent',
                                   details={{"active": 1, "threshold": 2}})
with transaction.atomic():
    branding_set(tenant=tenant, accent_colour='#0b5cad', signin_text='Contoso staff only.')
print(json.dumps({{"tenant": str(tenant.pk), "ad_user": ad.pk, "cloud_user": cloud.pk, "claim": claim.pk,
                  "event": event.pk, "application": app.pk, "location": location.pk, "incident": incident.pk}}))
"""


@pytest.fixture(scope="module")
def site():
    portal = make_portal("embedded")
    try:
        # The platform administrator's second factor is waived: the MFA flow has its own tests.
        node = portal.start_node("console", env={"PTA_PLATFORM_MFA": "off"})
        tenant = portal.tenant_create("Contoso", DOMAIN)
        ids = json.loads(portal.manage("shell", "-c", SETUP.replace("TENANT", repr(tenant))).stdout.splitlines()[-1])
        agent = RawAgent.register(node, portal.agent_token(tenant), name="dc-east")
        # The audit trail's page of an event with before and after (the agent's domains, set at registration).
        change = portal.sql("SELECT id FROM trail_auditevent WHERE action = 'agent.changed'")[0][0]
        yield node, {**ids, "agent": agent.agent_id, "audit_event": change}
    finally:
        portal.close()


def sign_in(page, node, username: str, password: str) -> None:
    page.goto(f"{node.url}/admin/")
    page.wait_for_url("**/login/**")  # the console signs in through the portal's own pages
    page.get_by_label("Username").fill(username)
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Password", exact=True).fill(password)
    sealed_submit(page)
    page.wait_for_url("**/admin/")


def check(page, url: str, problems: list[str], *, name: str = "") -> None:
    """Visit ``url`` and add what axe-core finds there, in the light and the dark theme, to ``problems``."""
    response = page.goto(url)
    assert response is not None and response.status == 200, f"{url}: {response and response.status}"
    check_here(page, url, problems, name=name)


def check_here(page, what: str, problems: list[str], *, name: str = "") -> None:
    """Add what axe-core finds on the page as it is now (an answer to a form: no URL to visit) to ``problems``."""
    page.wait_for_load_state("load")  # the admin's widgets (SelectFilter2.js) draw themselves at the load event
    for theme in ("light", "dark"):
        page.emulate_media(color_scheme=theme)
        problems += [f"{what} ({theme}) {violation}" for violation in axe_violations(page)]
    page.emulate_media(color_scheme="light")
    if name:
        screenshot(page, name)


def test_every_page_of_the_tenant_administrator_has_no_axe_violation(page, site):
    node, ids = site
    page.set_viewport_size(LAPTOP)
    sign_in(page, node, f"admin@{DOMAIN}", ADMIN_PASSWORD)
    admin = f"{node.url}/admin"
    problems: list[str] = []
    check(page, f"{admin}/", problems)
    check(page, f"{admin}/tenant/tenant/{ids['tenant']}/change/", problems)
    check(page, f"{admin}/tenant/domain/", problems)
    check(page, f"{admin}/tenant/domain/{ids['claim']}/change/", problems, name="console-domain")
    check(page, f"{admin}/tenant/user/", problems)
    check(page, f"{admin}/tenant/user/{ids['ad_user']}/change/", problems, name="console-user")
    check(page, f"{admin}/tenant/user/{ids['cloud_user']}/change/", problems)
    check(page, f"{admin}/tenant/user/add/", problems)
    check(page, f"{admin}/tenant/location/", problems)
    check(page, f"{admin}/tenant/location/add/", problems)
    check(page, f"{admin}/agents/agent/", problems)
    check(page, f"{admin}/agents/agent/{ids['agent']}/change/", problems)
    check(page, f"{admin}/agents/registrationtoken/", problems)
    check(page, f"{admin}/agents/registrationtoken/add/", problems)
    check(page, f"{admin}/applications/application/", problems)
    check(page, f"{admin}/applications/application/add/", problems)
    check(page, f"{admin}/applications/application/{ids['application']}/change/", problems)
    check(page, f"{admin}/applications/application/{ids['application']}/rotate-secret/", problems)
    check(page, f"{admin}/branding/branding/", problems)  # a tenant administrator's goes straight to its form
    check(page, f"{admin}/tenant/location/{ids['location']}/change/", problems)
    check(page, f"{admin}/signin/signinevent/", problems)
    check(page, f"{admin}/signin/signinevent/{ids['event']}/change/", problems)
    check(page, f"{admin}/health/alertsettings/", problems)
    check(page, f"{admin}/health/incident/", problems)
    check(page, f"{admin}/health/incident/{ids['incident']}/change/", problems)
    check(page, f"{admin}/agents/agent/health/", problems)
    check(page, f"{admin}/trail/auditevent/", problems)
    check(page, f"{admin}/trail/auditevent/{ids['audit_event']}/change/", problems)
    # The page that shows a new application's client secret once: the answer to the add form.
    page.goto(f"{admin}/applications/application/add/")
    page.get_by_role("textbox", name="Name:", exact=True).fill("Intranet")
    page.locator("#id_redirect_uris").fill(f"https://intranet.{DOMAIN}/callback")
    page.locator("input[name=_save]").click()
    page.get_by_role("button", name="Copy").wait_for()
    check_here(page, "the add form's answer (the secret shown once)", problems)
    assert problems == [], "axe-core found:\n" + "\n".join(problems)


def test_the_token_page_has_no_axe_violation_its_command_is_whole_and_copies(page, site):
    node, _ = site
    page.set_viewport_size({"width": 700, "height": 800})  # narrower than the command
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=node.url)
    sign_in(page, node, f"admin@{DOMAIN}", ADMIN_PASSWORD)
    page.goto(f"{node.url}/admin/agents/registrationtoken/add/")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_selector("#registration-token")
    assert page.locator(".messagelist .success").count() == 1 and page.locator(".errornote").count() == 0
    command = page.locator("#register-command")
    # Wrapped, not clipped: all of it is inside its box, and the box is no wider than the page (once the page's
    # stylesheets apply: on a busy machine the answer's first layout can come before them).
    page.wait_for_function("() => { const e = document.getElementById('register-command');"
                           " return e.scrollWidth <= e.clientWidth + 1; }", timeout=10_000)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    command.focus()
    assert page.evaluate("document.activeElement.id") == "register-command"
    page.get_by_role("button", name="Copy the command").click()
    page.wait_for_function("document.querySelector('.copy-status').textContent.length > 0")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == command.inner_text().strip() and copied.startswith("pta-agent register --portal ")
    for theme in ("light", "dark"):
        page.emulate_media(color_scheme=theme)
        violations = axe_violations(page)
        assert violations == [], f"token page ({theme}):\n" + "\n".join(violations)
    page.emulate_media(color_scheme="light")
    screenshot(page, "console-token")
    # A reload posts the form again: no token shown, a warning instead.
    page.once("dialog", lambda dialog: dialog.accept())
    page.reload()
    assert page.locator("#registration-token").count() == 0
    assert page.locator(".messagelist .warning").count() == 1


def test_the_mfa_pages_have_no_axe_violation(page, site):
    node, _ = site
    page.set_viewport_size(LAPTOP)
    sign_in(page, node, "root@platform.example.test", ROOT_PASSWORD)
    admin = f"{node.url}/admin"
    problems: list[str] = []
    check(page, f"{admin}/", problems)
    check(page, f"{admin}/otp_totp/totpdevice/", problems)
    check(page, f"{admin}/otp_static/staticdevice/", problems)
    check(page, f"{admin}/tenant/tenant/", problems)
    assert problems == [], "axe-core found:\n" + "\n".join(problems)
