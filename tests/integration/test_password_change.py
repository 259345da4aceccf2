"""Expired (532) and must-change (773) passwords changed on the sign-in page, through a pta-agent with a service
account, against the Samba DC: the user comes back to the OpenID Connect application (Authlib) with a code, and
AD takes the new password and refuses the old one. A wrong current password counts towards cloud lockout, AD's
policy refusals are shown with their reason, and an agent without a service account is never asked.

Users are this module's own (the test bed's erin and frank stay as they are). Samba 4.17 treats a maximum
password age of one day or less as "never expires" (and pwdLastSet can only be written 0 or -1), so the
expired user is created three days in the past (faketime + samba-tool on the DC's own database, as the test bed
makes frank) and a fine-grained password policy (PSO) with a two-day maximum age is applied to them.
"""

from __future__ import annotations

import re
import secrets
import shutil
import sqlite3
import ssl
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import ldap3
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client

from tests.fixtures.browser import screenshot
from tests.fixtures.http import Attempt, _attempt, _csrf, found, sign_in
from tests.fixtures.portal import free_port, local_agents, make_portal, wait_for

pytestmark = pytest.mark.integration

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
REDIRECT_URI = "http://127.0.0.1:9/callback"  # nothing listens: the test reads the redirect itself
DAY = 24 * 3600 * 10_000_000  # AD intervals: 100 ns
# Every password this module types: none may appear in a log, the database or a page it should not.
USED_PASSWORDS: list[str] = []


def password(tag: str) -> str:
    """A password that satisfies AD's complexity rules, with a marker no other text contains."""
    value = f"{tag}!Mk{secrets.token_hex(4)}-Zq9"
    USED_PASSWORDS.append(value)
    return value


def kv(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


class Directory:
    """The test bed's AD as its administrator: this module's own users, in the states it needs."""

    def __init__(self, ad) -> None:
        self.ad = ad
        self.tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ad.ca_file)
        self.conn = ldap3.Connection(self._server(), user=ad.admin_upn, password=ad.admin_password, auto_bind=True)
        self.made: list[str] = []

    def _server(self) -> ldap3.Server:
        return ldap3.Server(self.ad.ldaps_url, use_ssl=True, tls=self.tls, get_info=ldap3.NONE)

    def hire_must_change(self, sam: str, current: str) -> str:
        """A user whose password must be changed at next logon (pwdLastSet=0): binds answer 773."""
        dn, upn = f"CN={sam},CN=Users,{self.ad.base_dn}", f"{sam}@{self.ad.upn_suffix}"
        assert self.conn.add(dn, ["top", "person", "organizationalPerson", "user"], {
            "sAMAccountName": sam, "userPrincipalName": upn, "displayName": sam.title(),
            "unicodePwd": f'"{current}"'.encode("utf-16-le"), "userAccountControl": "512", "pwdLastSet": "0"}
        ), self.conn.result
        self.made.append(dn)
        assert self.bind(upn, current) == "773"
        return upn

    def hire_expired(self, sam: str, current: str) -> tuple[str, str]:
        """A user whose password expired (532): set three days ago, under a PSO whose maximum age is two."""
        faketime = shutil.which("faketime")
        if faketime is None:
            pytest.fail("faketime is needed to date a password in the past: apt-get install faketime", pytrace=False)
        subprocess.run([faketime, "-3 days", "samba-tool", "user", "create", sam, current,
                        "-s", self.ad.raw["smb_conf"]], check=True, capture_output=True, timeout=120)
        upn = f"{sam}@{self.ad.upn_suffix}"
        dn = f"CN={sam},CN=Users,{self.ad.base_dn}"
        self.made.append(dn)
        pso = f"CN=pta-test-{sam},CN=Password Settings Container,CN=System,{self.ad.base_dn}"
        assert self.conn.add(pso, ["msDS-PasswordSettings"], {
            "msDS-PasswordSettingsPrecedence": "1", "msDS-PasswordReversibleEncryptionEnabled": "FALSE",
            "msDS-PasswordHistoryLength": "24", "msDS-PasswordComplexityEnabled": "TRUE",
            "msDS-MinimumPasswordLength": "7", "msDS-MinimumPasswordAge": "0",
            "msDS-MaximumPasswordAge": str(-2 * DAY), "msDS-LockoutThreshold": "0",
            "msDS-LockoutObservationWindow": str(-600 * 10_000_000), "msDS-LockoutDuration": str(-600 * 10_000_000),
            "msDS-PSOAppliesTo": [dn]}), self.conn.result
        self.made.insert(0, pso)  # removed first
        wait_for(lambda: self.bind(upn, current) == "532", timeout=30, interval=0.5,
                 message=lambda: f"{upn} to answer 532 (it answers {self.bind(upn, current)})")
        return upn, pso

    def remove(self, dn: str) -> None:
        if dn in self.made:
            self.made.remove(dn)
        self.conn.delete(dn)

    def bind(self, upn: str, secret: str) -> str:
        """'success', or AD's data sub-code, of a direct LDAPS simple bind."""
        # Bytes, as the agent sends them (ldap3 takes both; types-ldap3 says str only).
        conn = ldap3.Connection(self._server(), user=upn, password=secret.encode("utf-8"),  # type: ignore[arg-type]
                                raise_exceptions=False)
        try:
            if conn.bind():
                return "success"
            message = conn.result.get("message") or ""
            return message.split("data ", 1)[1].split(",", 1)[0] if "data " in message else message
        finally:
            conn.unbind()

    def close(self) -> None:
        for dn in list(self.made):
            self.conn.delete(dn)
        self.conn.unbind()


def start_site(ad, *, service_account: bool):
    portal = make_portal("embedded")
    port = free_port()
    node = portal.start_node("web", port=port, env={"PTA_PUBLIC_URL": f"http://127.0.0.1:{port}"})
    tenant = portal.tenant_create("Contoso", ad.upn_suffix)
    config, result = portal.agent_register(node, portal.agent_token(tenant), ldap_urls=(ad.ldaps_url,),
                                           extra=portal.directory_options(ad, service_account=service_account))
    assert result.returncode == 0, result.stderr
    agent = portal.agent_run(config)
    wait_for(lambda: local_agents(node) == 1, timeout=10, message="the agent to connect")
    app = kv(portal.manage("app_register", "--tenant", tenant, "--name", "Web app",
                           "--redirect-uri", REDIRECT_URI).stdout)
    return {"portal": portal, "node": node, "tenant": tenant, "app": app, "agent": agent, "config": config}


@pytest.fixture(scope="module")
def directory(ad_testbed):
    # By default Samba takes a user's previous password for 60 minutes after a change (LDAP simple binds too).
    if "old password allowed period = 0" not in Path(ad_testbed.raw["smb_conf"]).read_text():
        pytest.fail(f"The AD test bed in {ad_testbed.dir} predates `old password allowed period = 0` (scripts/"
                    f"ad-testbed sets it): stop it (scripts/ad-testbed stop --dir {ad_testbed.dir}) and let the "
                    "tests start a new one.", pytrace=False)
    directory = Directory(ad_testbed)
    yield directory
    directory.close()


@pytest.fixture(scope="module")
def site(ad_testbed):
    site = start_site(ad_testbed, service_account=True)
    yield site
    check_no_password_leaked(site)
    site["portal"].close()


@pytest.fixture(scope="module")
def plain_site(ad_testbed):
    site = start_site(ad_testbed, service_account=False)
    yield site
    check_no_password_leaked(site)
    site["portal"].close()


def check_no_password_leaked(site) -> None:
    """The marker passwords in no log (portal nodes, agent) and nowhere in the database (a full SQL dump)."""
    portal = site["portal"]
    texts = {f"daphne-{node.name}.log": node.log() for node in portal.nodes}
    texts |= {f"agent {agent.config_path.parent.name}": agent.log() for agent in portal.agents}
    with sqlite3.connect(portal.directory / "state" / "portal.sqlite3") as conn:
        texts["portal.sql"] = "\n".join(conn.iterdump())
    for where, text in texts.items():
        leaked = [p for p in USED_PASSWORDS if p in text]
        assert not leaked, f"a password appears in {where}"


def records(site, upn: str) -> list[tuple]:
    """(outcome, password_change, ad_subcode, detail, agent) of the user's sign-in records, oldest first."""
    return site["portal"].sql("SELECT outcome, password_change, ad_subcode, detail, agent_id FROM signin_signinevent "
                              "WHERE username = %s ORDER BY id", (upn,))


class Browser:
    """A browser without JavaScript at the authorization endpoint: the sign-in pages, then back with a code."""

    def __init__(self, site) -> None:
        self.site = site
        node, app = site["node"], site["app"]
        self.meta = httpx.get(f"{node.url}/.well-known/openid-configuration", timeout=10).json()
        self.oauth = OAuth2Client(app["client_id"], app["client_secret"], redirect_uri=REDIRECT_URI,
                                  scope="openid profile", code_challenge_method="S256", timeout=20)
        self.verifier = generate_token(48)
        url, _ = self.oauth.create_authorization_url(self.meta["authorization_endpoint"],
                                                     code_verifier=self.verifier, nonce=generate_token(20))
        self.client = httpx.Client(base_url=node.url, follow_redirects=False, timeout=30)
        login = urlparse(self.client.get(url).headers["location"])
        self.next_url = parse_qs(login.query)["next"][0]

    def sign_in(self, upn: str, secret: str) -> Attempt:
        return sign_in(self.site["node"].url, upn, secret, next_url=self.next_url, client=self.client)

    def change(self, current: str, new: str, confirm: str | None = None) -> Attempt:
        page = self.client.get("/login/password/change/")
        assert page.status_code == 200, page.text[:300]
        return _attempt(self.client.post("/login/password/change/", data={
            "csrfmiddlewaretoken": _csrf(page), "current_password": current, "new_password": new,
            "confirm_password": new if confirm is None else confirm}))

    def code(self) -> dict:
        """Back at the application: the code, exchanged for tokens."""
        location = self.client.get(self.next_url).headers["location"]
        assert location.startswith(REDIRECT_URI + "?code="), location
        return self.oauth.fetch_token(self.meta["token_endpoint"], authorization_response=location,
                                      code_verifier=self.verifier)

    def close(self) -> None:
        self.client.close()


def change_and_come_back(site, directory, upn: str, old: str, expected: str) -> None:
    browser = Browser(site)
    try:
        attempt = browser.sign_in(upn, old)
        assert attempt.outcome == expected, attempt.text[:300]
        assert attempt.status == 302 and attempt.location == "/login/password/change/"  # straight to the form
        new = password("New")
        changed = browser.change(old, new)
        assert changed.status == 302 and changed.outcome == "success", changed.text[:300]
        assert changed.location == browser.next_url  # back to /authorize/, which now gives the code
        tokens = browser.code()
        assert tokens["id_token"] and tokens["access_token"]
    finally:
        browser.close()
    assert directory.bind(upn, new) == "success"
    assert directory.bind(upn, old) == "52e"
    assert records(site, upn)[-1][:3] == ("success", 1, "")


def test_a_must_change_password_is_changed_on_the_sign_in_page_and_the_user_reaches_the_app(site, directory):
    sam = f"pc{secrets.token_hex(3)}"
    old = password("Old")
    upn = directory.hire_must_change(sam, old)
    change_and_come_back(site, directory, upn, old, "password_must_change")


def test_an_expired_password_is_changed_on_the_sign_in_page_and_the_user_reaches_the_app(site, directory):
    sam = f"pe{secrets.token_hex(3)}"
    old = password("Old")
    upn, pso = directory.hire_expired(sam, old)
    try:
        change_and_come_back(site, directory, upn, old, "password_expired")
    finally:
        directory.remove(pso)


def test_a_wrong_current_password_is_invalid_credentials_and_counts_towards_lockout(site, directory):
    sam = f"pw{secrets.token_hex(3)}"
    old = password("Old")
    upn = directory.hire_must_change(sam, old)
    browser = Browser(site)
    try:
        assert browser.sign_in(upn, old).outcome == "password_must_change"
        threshold = int(site["portal"].sql("SELECT lockout_threshold FROM tenant_tenant")[0][0])
        for _ in range(threshold):
            attempt = browser.change(password("Wrong"), password("New"))
            assert attempt.outcome == "invalid_credentials", attempt.text[:300]
        # The threshold's guesses are spent: the next one is refused by the portal, no agent asked.
        assert browser.change(old, password("New")).outcome == "cloud_locked"
    finally:
        browser.close()
    changes = [r for r in records(site, upn) if r[1]]
    assert [r[:3] for r in changes[:threshold]] == [("invalid_credentials", 1, "56")] * threshold
    assert changes[-1][0] == "cloud_locked" and changes[-1][4] is None
    assert directory.bind(upn, old) == "773"  # nothing changed


def test_ads_policy_refuses_a_new_password_with_its_reason(site, directory):
    sam = f"pr{secrets.token_hex(3)}"
    old = password("Old")
    upn = directory.hire_must_change(sam, old)
    browser = Browser(site)
    try:
        assert browser.sign_in(upn, old).outcome == "password_must_change"
        weak = "alllowercaseletters"
        USED_PASSWORDS.append(weak)
        refused = browser.change(old, weak)
        assert refused.outcome == "password_rejected", refused.text[:300]
        assert "complexity rules" in refused.text and "complexity criteria" in refused.text
        refused = browser.change(old, old)  # the current password is in AD's history
        assert refused.outcome == "password_rejected"
        assert "You have used it before." in refused.text
    finally:
        browser.close()
    changes = [r for r in records(site, upn) if r[1]]
    assert [(r[0], r[2], r[3]) for r in changes] == [("password_rejected", "52d", "complexity"),
                                                     ("password_rejected", "52d", "history")]
    assert directory.bind(upn, old) == "773"


def test_the_change_form_catches_a_mismatch_before_any_agent(site, directory):
    sam = f"pm{secrets.token_hex(3)}"
    old = password("Old")
    upn = directory.hire_must_change(sam, old)
    browser = Browser(site)
    try:
        assert browser.sign_in(upn, old).outcome == "password_must_change"
        attempt = browser.change(old, password("New"), confirm=password("Other"))
        assert attempt.status == 400 and "The new passwords don&#x27;t match." in attempt.text
    finally:
        browser.close()
    assert [r[1] for r in records(site, upn)] == [0]


def test_screenshots_of_the_change_page_and_of_a_policy_refusal(site, directory, page):
    sam = f"ps{secrets.token_hex(3)}"
    old = password("Old")
    upn = directory.hire_must_change(sam, old)
    node = site["node"]
    page.goto(f"{node.url}/login/")
    page.fill("#id_username", upn)
    page.click("button[type=submit]")
    page.fill("#id_password", old)
    page.click("button[type=submit]")
    # Straight to the change form (the redirect carries the outcome; the form's page shows it too).
    page.wait_for_url("**/login/password/change/")
    page.wait_for_selector('main[data-outcome="password_must_change"] #id_confirm_password')
    page.fill("#id_current_password", old)
    screenshot(page, "password-change")
    page.fill("#id_new_password", old)
    page.fill("#id_confirm_password", old)
    page.click("button[type=submit]")
    page.wait_for_selector('main[data-outcome="password_rejected"]')
    assert "You have used it before." in page.inner_text("#change-error")
    assert screenshot(page, "password-change-refused").exists()


def test_without_a_service_account_the_old_message_stays_and_no_agent_is_asked(plain_site, directory):
    sam = f"pn{secrets.token_hex(3)}"
    old = password("Old")
    upn = directory.hire_must_change(sam, old)
    browser = Browser(plain_site)
    try:
        attempt = browser.sign_in(upn, old)
        assert attempt.outcome == "password_must_change"
        assert "You must change your password." in attempt.text
        assert 'id="helpdesk-hint"' in attempt.text and 'id="change-password"' not in attempt.text
        page = browser.client.get("/login/password/change/")
        assert page.status_code == 200 and 'id="helpdesk-hint"' in page.text and "id_new_password" not in page.text
        forced = browser.client.post("/login/password/change/", data={
            "csrfmiddlewaretoken": found(CSRF, browser.client.get("/login/").text), "current_password": old,
            "new_password": password("New"),
            "confirm_password": USED_PASSWORDS[-1]})
        assert forced.status_code == 200 and 'id="helpdesk-hint"' in forced.text
    finally:
        browser.close()
    assert [r[:2] for r in records(plain_site, upn)] == [("password_must_change", 0)]
    agent_log = plain_site["agent"].log()
    assert "connected to" in agent_log and "password change" not in agent_log
    assert directory.bind(upn, old) == "773"


def test_a_change_relayed_between_nodes_leaves_no_password_in_redis_logs_or_database(ad_testbed, directory):
    """Production profile: the agent on one node, the change through the other, so the sealed envelope crosses
    Redis. Redis is captured with MONITOR meanwhile; the old and new passwords are nowhere afterwards."""
    import threading

    import psycopg

    portal = make_portal("production")
    try:
        holder, front = portal.start_node("node1"), portal.start_node("node2")
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        config, result = portal.agent_register(
            holder, portal.agent_token(tenant), ldap_urls=(ad_testbed.ldaps_url,),
            extra=portal.directory_options(ad_testbed, service_account=True))
        assert result.returncode == 0, result.stderr
        portal.agent_run(config)
        wait_for(lambda: local_agents(holder) == 1, timeout=15, message="the agent to connect to node1")
        old, new = password("Old"), password("New")
        upn = directory.hire_must_change(f"pr{secrets.token_hex(3)}", old)

        captured: list[str] = []
        stop = threading.Event()

        def capture() -> None:
            with portal.redis() as client, client.monitor() as monitor:
                for command in monitor.listen():
                    captured.append(str(command.get("command", "")))
                    if stop.is_set() or len(captured) > 200_000:
                        return

        watcher = threading.Thread(target=capture, daemon=True)
        watcher.start()
        time.sleep(0.3)
        with httpx.Client(base_url=front.url, follow_redirects=False, timeout=30) as client:
            attempt = sign_in(front.url, upn, old, client=client)
            assert attempt.outcome == "password_must_change", attempt.text[:300]
            page = client.get("/login/password/change/")
            changed = _attempt(client.post("/login/password/change/", data={
                "csrfmiddlewaretoken": _csrf(page), "current_password": old, "new_password": new,
                "confirm_password": new}))
        assert changed.outcome == "success", changed.text[:300]
        stop.set()
        with portal.redis() as client:
            client.ping()  # one more command, so the capture wakes up and sees the stop
        watcher.join(10)
        assert directory.bind(upn, new) == "success"
        assert any("publish" in c.lower() or "PUBLISH" in c for c in captured), "nothing crossed Redis"
        with psycopg.connect(portal.env["DATABASE_URL"]) as conn:
            rows = conn.execute("SELECT row_to_json(e)::text FROM signin_signinevent e").fetchall()
        texts = {"redis": "\n".join(captured), "records": "\n".join(r[0] for r in rows),
                 **{node.name: node.log() for node in portal.nodes},
                 **{f"agent {a.config_path.parent.name}": a.log() for a in portal.agents}}
        for where, text in texts.items():
            assert old not in text and new not in text, f"a password appears in {where}"
    finally:
        portal.close()
