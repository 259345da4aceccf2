"""Company branding in Chromium: a tenant administrator sets a logo, a colour and a text in the admin console; a
user of that tenant sees them on the password page once the username step has named the tenant, and the
username page keeps the portal's own look. axe-core finds nothing on either. Screenshot:
docs/screenshots/signin-branded.png."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw

from tests.fixtures.axe import assert_accessible
from tests.fixtures.browser import screenshot, sealed_submit
from tests.fixtures.portal import site_with_agent

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "Cl0ud-Adm1n-pa55"
ACCENT = "#5a2d82"
ACCENT_RGB = "rgb(90, 45, 130)"
DEFAULT_RGB = "rgb(11, 92, 173)"  # the portal's own --accent
TEXT = "Contoso staff only. Trouble signing in? Call the service desk on 0800 555 0100.\n<script>alert(1)</script>"


def logo_png() -> bytes:
    image = Image.new("RGBA", (280, 60), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, 56, 56), radius=10, fill=(90, 45, 130, 255))
    draw.text((16, 18), "C", fill="white", font_size=26)
    draw.text((70, 14), "Contoso", fill=(40, 20, 60, 255), font_size=28)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def site(ad_testbed):
    with site_with_agent(ad_testbed, node_name="branding") as (portal, node, tenant, _):
        admin = f"brandadmin@{ad_testbed.upn_suffix}"
        portal.manage("shell", "-c", (
            "from tenant.models import Tenant\nfrom tenant.services import tenant_admin_create\n"
            f"tenant_admin_create(tenant=Tenant.objects.get(slug='{tenant}'), upn='{admin}', "
            f"password='{ADMIN_PASSWORD}')\n"))
        yield node, admin


def sign_in_steps(page, node, upn: str) -> None:
    page.get_by_label("Username").fill(upn)
    page.get_by_role("button", name="Next").click()
    page.wait_for_url("**/login/password/")


def button_colour(page) -> str:
    return page.evaluate("getComputedStyle(document.querySelector('button[type=submit]')).backgroundColor")


def test_the_tenant_s_branding_shows_once_the_username_names_the_tenant(page, site, ad_testbed, tmp_path):
    node, admin = site
    # The administrator sets it in the admin console (signing in through the portal's pages, unbranded so far).
    page.goto(f"{node.url}/admin/branding/branding/")
    page.wait_for_url("**/login/**")
    sign_in_steps(page, node, admin)
    assert page.locator(".brand").count() == 0
    page.get_by_label("Password", exact=True).fill(ADMIN_PASSWORD)
    sealed_submit(page)
    page.wait_for_url("**/admin/branding/branding/add/")  # none yet: straight to its form
    logo = tmp_path / "logo.png"
    logo.write_bytes(logo_png())
    page.set_input_files("#id_logo_upload", str(logo))
    page.fill("#id_accent_colour", "#ffee00")  # too light for white text: refused, saying why
    page.fill("#id_signin_text", TEXT)
    page.get_by_role("button", name="Save", exact=True).click()
    assert "too light" in page.inner_text(".errorlist")
    page.set_input_files("#id_logo_upload", str(logo))  # a refused form keeps no upload
    page.fill("#id_accent_colour", ACCENT)
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url("**/admin/branding/branding/*/change/")  # the list is the one form: back to it
    assert page.evaluate("document.querySelector(\"img[alt='Current logo']\").naturalWidth") == 280
    page.context.clear_cookies()

    # A user of the tenant: the username page is the portal's own.
    user = ad_testbed.user("alice")
    page.goto(f"{node.url}/login/")
    assert page.locator(".brand").count() == 0
    assert button_colour(page) == DEFAULT_RGB
    assert_accessible(page)
    sign_in_steps(page, node, user["upn"])
    logo_img = page.locator("#brand-logo")
    assert logo_img.get_attribute("alt") == "Contoso"
    assert page.evaluate("document.querySelector('#brand-logo').complete && "
                         "document.querySelector('#brand-logo').naturalWidth") == 280
    assert button_colour(page) == ACCENT_RGB
    assert page.inner_text("#brand-text") == TEXT  # shown as typed, the markup as text
    assert page.locator("main script").count() == 0
    page.get_by_label("Password", exact=True).fill(user["password"])
    screenshot(page, "signin-branded")
    assert_accessible(page)
    sealed_submit(page)
    page.wait_for_url("**/login/done/")
    assert page.locator("#brand-logo").count() == 1  # the result page too


def test_a_tenant_without_branding_keeps_the_portal_s_look_after_the_username(page, site):
    node, _ = site
    page.goto(f"{node.url}/login/")
    sign_in_steps(page, node, "someone@unknown-domain.example")
    assert page.locator(".brand").count() == 0
    assert button_colour(page) == DEFAULT_RGB
