"""A tenant administrator registers an application in the admin console in Chromium: the secret is shown once
and the Copy button puts it on the clipboard; the application's page then says only that a secret is set, and
rotating it shows a new one. Screenshots: docs/screenshots/application-add.png, application-secret.png,
application-change.png."""

from __future__ import annotations

import pytest

from tests.fixtures.browser import screenshot, sealed_submit
from tests.fixtures.portal import make_portal

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "Cl0ud-Adm1n-pa55"
LAPTOP = {"width": 1366, "height": 900}


@pytest.fixture(scope="module")
def site(ad_testbed):
    """An embedded portal, tenant Contoso with a cloud-only administrator (no agent: nobody signs in from AD)."""
    portal = make_portal("embedded")
    try:
        node = portal.start_node("apps")
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        admin = f"admin@{ad_testbed.upn_suffix}"
        portal.manage("shell", "-c", (
            "from tenant.models import Tenant\nfrom tenant.services import tenant_admin_create\n"
            f"tenant_admin_create(tenant=Tenant.objects.get(slug='{tenant}'), upn='{admin}', "
            f"password='{ADMIN_PASSWORD}')\n"))
        yield portal, node, admin
    finally:
        portal.close()


def test_the_secret_is_shown_once_copied_and_rotated(chromium, site):
    portal, node, admin = site
    context = chromium.new_context(viewport=LAPTOP, locale="en-GB")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=node.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(f"{node.url}/admin/applications/application/add/")
        page.wait_for_url("**/login/**")
        page.get_by_label("Username").fill(admin)
        page.get_by_role("button", name="Next").click()
        page.get_by_label("Password", exact=True).fill(ADMIN_PASSWORD)
        sealed_submit(page)
        page.wait_for_url("**/admin/applications/application/add/")

        assert page.locator("input[name=client_secret]").count() == 0
        assert page.locator(".field-client_secret_status").count() == 1
        assert [o.get_attribute("value") for o in page.locator("select[name=authorization_grant_type] option").all()] \
            == ["authorization-code", "password"]
        # Exact: the groups claim's format and the inline of groups assigned by name also have "name" in theirs.
        page.get_by_role("textbox", name="Name:", exact=True).fill("Wiki")
        page.locator("#id_redirect_uris").fill("https://wiki.contoso.test/callback")
        screenshot(page, "application-add")
        page.locator("input[name=_save]").click()

        secret = page.get_by_label("Client secret").input_value()
        assert len(secret) >= 40
        page.get_by_role("button", name="Copy").click()
        page.wait_for_selector("#copy-status:has-text('Copied')")
        assert page.evaluate("navigator.clipboard.readText()") == secret
        screenshot(page, "application-secret")

        page.get_by_role("link", name="Done: I copied it").click()
        row = page.locator(".field-client_secret_status")
        assert "Stored hashed: it cannot be shown" in row.inner_text() and secret not in page.content()
        screenshot(page, "application-change")

        row.get_by_role("link", name="Rotate the client secret").click()
        page.get_by_role("button", name="Rotate the client secret").click()
        rotated = page.get_by_label("Client secret").input_value()
        assert rotated and rotated != secret
        page.get_by_role("link", name="Done: I copied it").click()
        assert "last rotated" in page.locator(".field-client_secret_status").inner_text()
    finally:
        context.close()
