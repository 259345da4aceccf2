"""The portal never holds the password (issue 28): Chromium through the real pages, a Samba DC and two real agents,
passwords that are markers. What the browser sends (every request body, captured in the browser) never holds a
marker, in a plain sign-in, a failover after an agent was killed between the username and the password steps, and
a password change, and every outcome still shows on the page; a core dump of the portal's process holds none
either. The same sign-in with JavaScript off takes the server-side path, and its core dump holds the marker: what
the feature takes out of the portal's memory."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from tests.fixtures.axe import assert_accessible
from tests.fixtures.browser import sealed_submit
from tests.fixtures.directory_admin import DirectoryAdmin
from tests.fixtures.portal import local_agents, make_portal, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sealing_site(ad_testbed):
    """Tenant "Contoso" on the test bed's domain and two agents that can change passwords, on one node."""
    portal = make_portal("embedded")
    try:
        node = portal.start_node("sealing")
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        agents = []
        for name in ("first", "second"):
            config, result = portal.agent_register(node, portal.agent_token(tenant), name=name,
                                                   ldap_urls=(ad_testbed.ldaps_url,),
                                                   extra=portal.directory_options(ad_testbed, service_account=True))
            assert result.returncode == 0, result.stderr
            agents.append(portal.agent_run(config))
        wait_for(lambda: local_agents(node) == 2, timeout=15, message="both agents to connect")
        yield portal, node, agents
    finally:
        portal.close()


@pytest.fixture(scope="module")
def directory(ad_testbed):
    admin = DirectoryAdmin(ad_testbed)
    yield admin
    admin.close()


def new_user(directory: DirectoryAdmin, *, must_change: bool = False) -> tuple[str, str]:
    """An AD user of this test's own, whose password is a marker nobody else types."""
    password = "Seal-Marker-" + DirectoryAdmin.unique("")
    return directory.add_user(directory.unique("seal"), password, must_change=must_change), password


def captured(page) -> list[bytes]:
    """Every request body the page sends, as the browser sends it."""
    bodies: list[bytes] = []
    page.on("request", lambda request: bodies.append(request.post_data_buffer or b""))
    return bodies


def holds(data: bytes, marker: str) -> bool:
    """Whether ``data`` holds the marker in any form a body or a process could hold it in."""
    forms = {marker, quote_plus(marker), quote(marker, safe=""), json.dumps(marker)[1:-1]}
    return any(form.encode() in data for form in forms) or marker.encode("utf-16-le") in data


def sign_in(page, node, upn: str, password: str, *, outcome: str) -> None:
    page.goto(f"{node.url}/login/")
    page.get_by_label("Username").fill(upn)
    page.get_by_role("button", name="Next").click()
    page.wait_for_url("**/login/password/")
    page.get_by_label("Password", exact=True).fill(password)
    with page.expect_navigation():  # with JavaScript on, it starts once the script has sealed
        page.get_by_role("button", name="Sign in").click()
    page.wait_for_function(f"document.querySelector('main[data-outcome=\"{outcome}\"]') !== null")


def core_of(pid: int, tmp_path: Path) -> bytes:
    """A core dump of a running process (gdb's gcore: the process goes on afterwards)."""
    if not shutil.which("gcore"):
        pytest.fail("gcore is missing: install gdb (scripts/test's need_apt lists it)")
    done = subprocess.run(["gcore", "-o", str(tmp_path / "core"), str(pid)], capture_output=True, text=True,
                          timeout=120, check=False)
    core = tmp_path / f"core.{pid}"
    assert core.exists(), done.stderr[-2000:]
    try:
        return core.read_bytes()
    finally:
        core.unlink()


def passwords_posted(bodies: list[bytes]) -> list[bytes]:
    return [body for body in bodies if b"csrfmiddlewaretoken" in body and b"sealed=" in body]


def test_sealed_sign_ins_leave_no_marker_in_what_is_sent_nor_in_the_portals_memory(
        page, chromium, sealing_site, directory, tmp_path):
    portal, node, _ = sealing_site
    upn, password = new_user(directory)
    wrong = "Seal-Marker-wrong-" + DirectoryAdmin.unique("")
    bodies = captured(page)
    sign_in(page, node, upn, wrong, outcome="invalid_credentials")
    assert page.get_attribute("main", "data-outcome") == "invalid_credentials"
    assert page.evaluate("document.getElementById('id_password').name") == ""  # never posted
    assert_accessible(page)
    page.get_by_label("Password", exact=True).fill(password)
    sealed_submit(page)
    page.wait_for_url("**/login/done/")
    assert page.get_attribute("main", "data-outcome") == "success"
    assert len(passwords_posted(bodies)) == 2
    assert not any(holds(body, marker) for body in bodies for marker in (password, wrong))
    assert portal.sql("SELECT outcome, sealed_by FROM signin_signinevent WHERE username = %s ORDER BY id",
                      (upn,)) == [("invalid_credentials", "browser"), ("success", "browser")]
    core = core_of(node.proc.pid, tmp_path)
    assert not holds(core, password) and not holds(core, wrong)

    # The control: JavaScript off, the server-side path (the form posts the password; the portal seals it).
    plain = chromium.new_context(java_script_enabled=False)
    try:
        off = plain.new_page()
        off_bodies = captured(off)
        control = "Seal-Marker-plain-" + DirectoryAdmin.unique("")
        sign_in(off, node, upn, control, outcome="invalid_credentials")
        assert any(holds(body, control) for body in off_bodies)  # what the feature keeps off the wire
        assert off.get_attribute("main", "data-outcome") == "invalid_credentials"  # usable without JavaScript
    finally:
        plain.close()
    assert portal.sql("SELECT sealed_by FROM signin_signinevent WHERE username = %s ORDER BY id DESC LIMIT 1",
                      (upn,)) == [("portal",)]
    assert holds(core_of(node.proc.pid, tmp_path), control), "the server-side path's password is in memory"


def test_failover_after_an_agent_was_killed_between_the_two_steps(page, sealing_site, directory):
    portal, node, agents = sealing_site
    upn, password = new_user(directory)
    bodies = captured(page)
    page.goto(f"{node.url}/login/")
    page.get_by_label("Username").fill(upn)
    page.get_by_role("button", name="Next").click()
    page.wait_for_url("**/login/password/")
    offered = json.loads(page.inner_text("#pta-seal"))["candidates"]
    assert len(offered) == 2  # both agents' keys, from the username step
    agents[0].stop(kill=True)
    wait_for(lambda: local_agents(node) == 1, timeout=10, message="the portal to see the agent gone")
    page.get_by_label("Password", exact=True).fill(password)
    sealed_submit(page)
    page.wait_for_url("**/login/done/")
    assert page.get_attribute("main", "data-outcome") == "success"
    posted = passwords_posted(bodies)
    assert len(posted) == 1 and not any(holds(body, password) for body in bodies)
    assert portal.sql("SELECT sealed_by FROM signin_signinevent WHERE username = %s", (upn,)) == [("browser",)]


def test_a_password_change_is_sealed_in_the_browser_too(page, sealing_site, directory):
    portal, node, _ = sealing_site
    upn, current = new_user(directory, must_change=True)
    new = "Seal-Marker-new-" + DirectoryAdmin.unique("") + "!Aa1"
    bodies = captured(page)
    sign_in(page, node, upn, current, outcome="password_must_change")
    page.wait_for_url("**/login/password/change/")
    page.get_by_label("Current password").fill(current)
    page.get_by_label("New password", exact=True).fill(new)
    page.get_by_label("Confirm new password").fill(new + "x")
    page.get_by_role("button", name="Change password").click()
    assert page.get_by_text("The new passwords don't match.").is_visible()  # the script compares them
    page.get_by_label("Confirm new password").fill(new)
    page.get_by_role("button", name="Change password").click()
    page.wait_for_url("**/login/done/")
    assert page.get_attribute("main", "data-outcome") == "success"
    assert not any(holds(body, marker) for body in bodies for marker in (current, new))
    assert portal.sql("SELECT password_change, sealed_by FROM signin_signinevent WHERE username = %s ORDER BY id",
                      (upn,))[-1] == (1, "browser")
