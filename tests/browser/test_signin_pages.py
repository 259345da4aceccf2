"""A person signing in with a keyboard in Chromium: username, Next, password, Sign in."""

import pytest

from tests.fixtures.browser import screenshot
from tests.fixtures.portal import site_with_agent

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def portal_with_agent(ad_testbed):
    with site_with_agent(ad_testbed, node_name="browser") as (_, node, _, _):
        yield node


def test_sign_in_through_the_two_pages(page, portal_with_agent, ad_testbed):
    node, user = portal_with_agent, ad_testbed.user("alice")
    page.goto(f"{node.url}/login/")
    assert page.evaluate("document.activeElement.name") == "username"  # focus is where typing starts
    assert page.get_by_label("Username").is_visible()
    page.keyboard.type(user["upn"])
    screenshot(page, "signin-1-username")
    page.keyboard.press("Enter")
    page.wait_for_url("**/login/password/")
    assert "Contoso" in page.inner_text("main")  # the organisation's name
    assert page.evaluate("document.activeElement.name") == "password"
    page.get_by_label("Password").fill(user["password"])
    screenshot(page, "signin-2-password")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/login/done/")
    assert page.get_attribute("main", "data-outcome") == "success"
    assert user["display_name"] in page.inner_text("main")
    screenshot(page, "signin-3-signed-in")


def test_a_wrong_password_says_so_on_the_page(page, portal_with_agent, ad_testbed):
    node, user = portal_with_agent, ad_testbed.user("bob")
    page.goto(f"{node.url}/login/")
    page.get_by_label("Username").fill(user["upn"])
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_attribute("main", "data-outcome") == "invalid_credentials"
    assert page.get_by_role("alert").inner_text() == "Your account or password is incorrect."
    screenshot(page, "signin-wrong-password")
    page.get_by_label("Password").fill(user["password"])  # and the right one still works (AD not locked)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/login/done/")


def test_a_disabled_account_is_told_so(page, portal_with_agent, ad_testbed):
    node, user = portal_with_agent, ad_testbed.user("carol")
    page.goto(f"{node.url}/login/")
    page.get_by_label("Username").fill(user["upn"])
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Password").fill(user["password"])
    page.get_by_role("button", name="Sign in").click()
    assert page.get_attribute("main", "data-outcome") == "account_disabled"
    assert "Your account has been disabled." in page.inner_text("main")
