"""scripts/demo, run as a person runs it (on the session's Samba DC, PTA_DEMO_AD_DIR, so that it provisions none),
shows what it advertises: its agent has the test bed's service account, so a user whose password must change is
offered the change on the sign-in page; its application signs a user in through the portal and its sign-out
comes back to it (the post-logout redirect URI is registered); Ctrl-C stops everything it started, and leaves a
test bed it did not start running."""

from __future__ import annotations

import html
import os
import re
import signal
import stat
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.fixtures.http import sign_in
from tests.fixtures.portal import free_port, tail, wait_for

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)"(?: value="([^"]*)")?')


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def demo(ad_testbed, tmp_path_factory):
    state = tmp_path_factory.mktemp("demo")
    port, app_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env.update(PTA_DEMO_STATE_DIR=str(state), PTA_DEMO_AD_DIR=ad_testbed.dir, PTA_DEMO_PORT=str(port),
               PTA_DEMO_APP_PORT=str(app_port))
    out = (state / "demo.out").open("w")
    # Ctrl-C's SIGINT as a terminal delivers it: by default. The test process may ignore SIGINT (a worker of
    # pytest-xdist, a library before this test), and a signal ignored when bash starts cannot be trapped.
    process = subprocess.Popen([str(REPO_ROOT / "scripts" / "demo")], cwd=REPO_ROOT, env=env, stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    printed = state / "demo.out"
    try:
        wait_for(lambda: "MFA policy" in printed.read_text() or process.poll() is not None, timeout=180,
                 message="the demo's summary")
        assert process.poll() is None, tail(printed)
        yield {"state": state, "portal": f"http://127.0.0.1:{port}", "app": f"http://127.0.0.1:{app_port}",
               "printed": printed.read_text(), "process": process}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C: the script's trap stops what it started
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        out.close()


def test_the_demos_agent_has_the_test_beds_service_account(demo, ad_testbed):
    config = tomllib.loads((demo["state"] / "agent" / "agent.toml").read_text())
    assert config["directory"]["service_account"] == ad_testbed.service_account["upn"]
    password_file = Path(config["directory"]["service_password_file"])
    assert password_file.read_text() == ad_testbed.service_account["password"]
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert ad_testbed.service_account["password"] not in (demo["state"] / "agent.log").read_text()


def test_a_user_whose_password_must_change_is_offered_the_change(demo, ad_testbed):
    erin = next(iter(ad_testbed.users_in_state("must_change_password").values()))
    with httpx.Client(base_url=demo["portal"], follow_redirects=False, timeout=30) as web:
        attempt = sign_in(demo["portal"], erin["upn"], erin["password"], client=web)
        assert attempt.outcome == "password_must_change", attempt.text[:300]
        # Straight to the change form: the agent has the service account a change needs.
        assert attempt.status == 302 and attempt.location == "/login/password/change/"
        form = web.get(attempt.location).text
    assert 'name="new_password"' in form and 'id="helpdesk-hint"' not in form
    assert "then change it on the page" in demo["printed"]


def test_the_demo_application_signs_in_and_its_sign_out_comes_back(demo, ad_testbed):
    user, app, portal = ad_testbed.user("judy"), demo["app"], demo["portal"]
    with httpx.Client(base_url=portal, follow_redirects=False, timeout=30) as web:
        to_portal = web.get(f"{app}/login")
        assert to_portal.status_code == 302 and to_portal.headers["location"].startswith(f"{portal}/authorize/")
        to_sign_in = web.get(to_portal.headers["location"])
        assert to_sign_in.status_code == 302, to_sign_in.text[:300]
        next_url = parse_qs(urlsplit(to_sign_in.headers["location"]).query)["next"][0]
        attempt = sign_in(portal, user["upn"], user["password"], next_url=next_url, client=web)
        assert attempt.outcome == "success" and attempt.location == next_url, attempt.text[:300]
        to_app = web.get(next_url)
        assert to_app.headers["location"].startswith(f"{app}/callback?"), to_app.text[:300]
        back_home = web.get(to_app.headers["location"]).headers["location"]
        home = web.get(app + back_home if back_home.startswith("/") else back_home)
        assert 'id="welcome"' in home.text and user["upn"] in home.text, home.text[:300]

        to_logout = web.get(f"{app}/logout")
        assert to_logout.headers["location"].startswith(f"{portal}/logout/?")
        confirm = web.get(to_logout.headers["location"])
        assert confirm.status_code == 200 and "Sign out" in confirm.text, confirm.text[:500]
        form = {name: html.unescape(value or "") for name, value in _HIDDEN.findall(confirm.text)}
        done = web.post("/logout/", data=form)
        assert done.status_code == 302 and done.headers["location"].split("?")[0] == f"{app}/", done.text[:500]
        assert "You are not signed in" in web.get(done.headers["location"]).text
        # The portal's session ended too: signing in again goes through the sign-in pages.
        again = web.get(web.get(f"{app}/login").headers["location"])
        assert urlsplit(again.headers["location"]).path == "/login/", again.text[:300]


def test_ctrl_c_stops_what_the_demo_started_and_leaves_the_test_bed(demo, ad_testbed):
    process = demo["process"]
    children = subprocess.run(["pgrep", "-g", str(process.pid)], capture_output=True, text=True).stdout.split()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) is not None
    wait_for(lambda: not any(alive(int(pid)) for pid in children if int(pid) != process.pid), timeout=20,
             message="the demo's processes to stop")
    assert "demo stopped" in (demo["state"] / "demo.out").read_text()
    assert alive(ad_testbed.pid)  # a test bed it did not start is left running
