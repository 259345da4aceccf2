"""A tenant administrator keeps the agent health page open in Chromium while one of two real agents stops: the
page shows it without a reload, where the administrator had scrolled to. The page names the tenant, tells the
outcomes apart by colour and pattern with a legend, fits a phone's width and has no axe-core violation.
Screenshots, light and dark, go to docs/screenshots/health-light.png and health-dark.png."""

from __future__ import annotations

import ast
from concurrent.futures import ThreadPoolExecutor

import pta_protocol as protocol
import pytest

from tests.fixtures.axe import assert_accessible
from tests.fixtures.browser import screenshot, sealed_submit
from tests.fixtures.http import sign_in
from tests.fixtures.portal import local_agents, make_portal, start_agent, wait_for

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "Cl0ud-Adm1n-pa55"
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def site(ad_testbed):
    """An embedded portal, tenant Contoso on the test bed's domain with a cloud-only administrator, two agents
    on the DC, and a few sign-ins already rolled up for the charts."""
    portal = make_portal("embedded")
    try:
        node = portal.start_node("health")
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        admin = f"admin@{ad_testbed.upn_suffix}"
        portal.manage("shell", "-c", (
            "from tenant.models import Tenant\nfrom tenant.services import tenant_admin_create\n"
            f"tenant_admin_create(tenant=Tenant.objects.get(slug='{tenant}'), upn='{admin}', "
            f"password='{ADMIN_PASSWORD}')\n"))
        agents = [start_agent(portal, node, tenant, ad_testbed, name=name) for name in ("dc-east", "dc-west")]
        wait_for(lambda: local_agents(node) == 2, timeout=20, message="both agents to connect")
        alice, bob = ad_testbed.user("alice"), ad_testbed.user("bob")
        # Both agents must have answered for the chart to draw a line of each. The portal asks the least busy,
        # then the one that beat last: sequential sign-ins may all go to one agent between two heartbeats. Two at
        # once spread (the first keeps its agent busy), and pairs go on until each agent has answered one.
        successes = 0
        with ThreadPoolExecutor(max_workers=2) as pool:
            for _ in range(10):
                pair = pool.map(lambda _: sign_in(node.url, alice["upn"], alice["password"]).outcome, range(2))
                assert list(pair) == ["success"] * 2
                successes += 2
                if successes >= 4 and len(agents_answered(portal)) == 2:
                    break
            else:
                pytest.fail(f"one agent answered all {successes} sign-ins: {agents_answered(portal)}")
        assert sign_in(node.url, bob["upn"], "not the password").outcome == "invalid_credentials"
        # Rolled up now rather than at the portal's next periodic run.
        portal.manage("shell", "-c", "from health.services.rollups import signin_rollups_compute\n"
                                     "signin_rollups_compute()")
        yield portal, node, admin, agents, successes
    finally:
        portal.close()


def agents_answered(portal) -> list[str]:
    """The agents that answered a sign-in so far."""
    result = portal.manage("shell", "-c", "from signin.models import SignInEvent\n"
                           "print(sorted({str(a) for a in SignInEvent.objects.exclude(agent=None)"
                           ".values_list('agent_id', flat=True)}))")
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


def open_health_page(page, node, admin) -> None:
    page.goto(f"{node.url}/admin/agents/agent/health/")
    page.wait_for_url("**/login/**")  # the admin console signs in through the portal's own pages
    page.get_by_label("Username").fill(admin)
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Password", exact=True).fill(ADMIN_PASSWORD)
    sealed_submit(page)
    page.wait_for_url("**/admin/agents/agent/health/")


def fill_of(page, selector: str) -> str:
    return page.evaluate(f"getComputedStyle(document.querySelector('{selector}')).fill")


def test_the_page_names_the_tenant_tells_outcomes_apart_fits_a_phone_and_passes_axe(page, site):
    _, node, admin, _, successes = site
    page.set_viewport_size(LAPTOP)
    open_health_page(page, node, admin)
    assert page.inner_text(".health-level strong") == "Contoso"  # its name, not its slug or id
    legend = {li.get_attribute("data-outcome"): li.inner_text()
              for li in page.locator(".legend li[data-outcome]").all()}
    assert legend == {"success": f"success {successes}", "invalid_credentials": "invalid credentials 1"}
    # Each outcome's bars and legend swatch are filled with its own pattern, of its own colour.
    success = page.get_attribute("svg.chart rect.o-success", "fill")
    wrong = page.get_attribute("svg.chart rect.o-invalid_credentials", "fill")
    assert success != wrong
    for outcome, fill in (("success", success), ("invalid_credentials", wrong)):
        assert page.get_attribute(f'.legend li[data-outcome="{outcome}"] rect', "fill") == fill
    pattern_of = {o: f.removeprefix("url(#").removesuffix(")") for o, f in (("success", success),
                                                                            ("invalid_credentials", wrong))}
    colours = {o: fill_of(page, f"#{p} rect.bg") for o, p in pattern_of.items()}
    assert colours["success"] != colours["invalid_credentials"]
    assert page.locator(f"#{pattern_of['invalid_credentials']} .ink").count() == 1  # stripes over the colour
    assert page.locator(f"#{pattern_of['success']} .ink").count() == 0  # success alone is plain
    # The agents' lines: a marker shape each, in the chart and the legend.
    shapes = [m.get_attribute("class") for m in page.locator(".legend li[data-agent] .marker").all()]
    assert len(shapes) == 2 and len(set(shapes)) == 2
    assert_accessible(page)

    page.set_viewport_size(PHONE)
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth"), \
        page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert page.locator("svg.chart").first.bounding_box()["width"] <= PHONE["width"]
    screenshot(page, "health-phone")


def test_the_page_shows_a_stopped_agent_without_a_reload(page, site):
    _, node, admin, (east, west), _ = site
    page.set_viewport_size(LAPTOP)
    open_health_page(page, node, admin)
    for agent in (east, west):
        assert page.get_attribute(f'tr[data-agent="{agent.agent_id}"]', "data-status") == "active"
    assert page.get_attribute(".health-level", "data-level") == "ok"
    assert page.locator("svg.chart rect.o-success").count() >= 1  # the rolled-up sign-ins are charted

    page.evaluate("window.notReloaded = true")
    page.set_viewport_size({"width": LAPTOP["width"], "height": 420})
    page.evaluate("window.scrollTo(0, 120)")  # down to the table, short of the bottom the page could shrink to
    assert page.evaluate("window.scrollY") == 120
    west.stop()  # SIGTERM: it finishes, closes, and its presence goes at once
    page.wait_for_selector(f'tr[data-agent="{west.agent_id}"][data-status="inactive"]',
                           timeout=protocol.PRESENCE_TTL_SECONDS * 1000)
    assert page.evaluate("window.notReloaded") is True
    assert page.evaluate("window.scrollY") == 120
    assert page.get_attribute(f'tr[data-agent="{east.agent_id}"]', "data-status") == "active"
    assert page.get_attribute(".health-level", "data-level") == "warning"
    assert page.is_hidden("#health-stale")

    page.set_viewport_size(LAPTOP)
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "health-light")
    page.emulate_media(color_scheme="dark")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(18, 18, 18)"
    screenshot(page, "health-dark")

    page.context.clear_cookies()  # the session ends: the sign-in page must not be swapped in as the live part
    page.wait_for_selector("#health-stale", state="visible", timeout=protocol.PRESENCE_TTL_SECONDS * 1000)
    assert page.locator(f'tr[data-agent="{east.agent_id}"]').count() == 1
