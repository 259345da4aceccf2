"""Sealed in the browser, the heavier variant (issue 28; the test command's, one node with the same core dumps
and MONITOR, is at the end of tests/browser/test_signin_pages.py): the production profile, two nodes with an agent
each (half the sealed requests cross Redis pub/sub), Chromium signing in through both with passwords that are
markers, a wrong one and a right one each. Then nothing holds a marker: the bodies the browser sent, the production
Redis's every command (MONITOR), a core dump (gdb's ``gcore``) of every portal process. The control: the same
sign-in with JavaScript off takes the server-side path, and the core dump of the node that served it holds its
marker: what the feature takes out of the portal's memory."""

from __future__ import annotations

import pytest

from tests.fixtures.browser import holds_marker, request_bodies, sealed_submit
from tests.fixtures.directory_admin import DirectoryAdmin
from tests.fixtures.memory import RedisCapture, core_markers, encodings
from tests.fixtures.portal import RedisServer
from tests.resilience.site import site_build

pytestmark = [pytest.mark.integration, pytest.mark.resilience]


def sign_in(page, url: str, upn: str, password: str) -> str:
    page.goto(f"{url}/login/")
    page.get_by_label("Username").fill(upn)
    page.get_by_role("button", name="Next").click()
    page.wait_for_url("**/login/password/")
    page.get_by_label("Password", exact=True).fill(password)
    sealed_submit(page)
    return page.get_attribute("main", "data-outcome") or ""


def test_no_marker_in_redis_nor_in_any_portal_process_after_sealed_sign_ins(ad_testbed, chromium, page, tmp_path):
    server = RedisServer(tmp_path).start()
    site = None
    directory = DirectoryAdmin(ad_testbed)
    try:
        site = site_build(ad_testbed, nodes=("a", "b"), agent_nodes=(0, 1), redis_url=server.url)
        capture = RedisCapture(server.url).start()
        markers: list[str] = []
        bodies = request_bodies(page)
        for node in site.nodes:
            password = "Seal-Marker-" + DirectoryAdmin.unique("")
            wrong = "Seal-Marker-wrong-" + DirectoryAdmin.unique("")
            upn = directory.add_user(directory.unique("seal"), password)
            markers += [password, wrong]
            assert sign_in(page, node.url, upn, wrong) == "invalid_credentials"
            page.get_by_label("Password", exact=True).fill(password)
            sealed_submit(page)
            page.wait_for_url("**/login/done/")
            assert page.get_attribute("main", "data-outcome") == "success"
        captured = capture.stop()
        for marker in markers:
            assert not any(holds_marker(body, marker) for body in bodies)
            assert not any(form in captured for form in encodings(marker).values()), "a marker in Redis"
        assert site.portal.sql("SELECT DISTINCT sealed_by FROM signin_signinevent WHERE username LIKE %s",
                               ("seal%",)) == [("browser",)]
        for node in site.nodes:
            assert core_markers(node.proc, tmp_path, markers) == [], f"a marker in node {node.name}"

        # The control: JavaScript off; the portal receives the password and seals it itself.
        context = chromium.new_context(java_script_enabled=False)
        try:
            off = context.new_page()
            control = "Seal-Marker-plain-" + DirectoryAdmin.unique("")
            upn = directory.add_user(directory.unique("seal"), "Seal-Marker-" + DirectoryAdmin.unique(""))
            off.goto(f"{site.nodes[0].url}/login/")
            off.get_by_label("Username").fill(upn)
            off.get_by_role("button", name="Next").click()
            off.get_by_label("Password", exact=True).fill(control)
            off.get_by_role("button", name="Sign in").click()
            assert off.get_attribute("main", "data-outcome") == "invalid_credentials"
        finally:
            context.close()
        assert core_markers(site.nodes[0].proc, tmp_path, [control]) == [control], (
            "the server-side path's password is in the portal's memory: the reason for sealing in the browser")
    finally:
        directory.close()
        if site is not None:
            site.close()
        server.stop()
