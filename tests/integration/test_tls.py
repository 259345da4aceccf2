"""Production as operators run it (docs/deploy.md): nginx from Debian with the reference configuration
(deploy/nginx/pta-portal.conf) terminating TLS in front of two Daphne nodes on PostgreSQL and Redis, an agent
registered and connected through it over https:// and wss:// against the Samba DC, Chromium signing in over
HTTPS through the OIDC demo application.

How the browser's address is told from nginx's, all on loopback: nginx listens on [::1] only, so Chromium
reaches it from ::1 (nginx's $remote_addr, in its access log), while nginx reaches the nodes on 127.0.0.1 from
127.0.0.1, the only trusted proxy (PTA_TRUSTED_PROXIES=127.0.0.1; ::1 is not trusted). A node believes
X-Forwarded-Proto only from a trusted peer, so the HSTS header on its pages shows that the node's peer was
127.0.0.1; the record's ::1 can then only come from the X-Forwarded-For nginx appended, and the browser's own
forged X-Forwarded-For (left of it) is ignored.

Chromium trusts the test CA's server key through --ignore-certificate-errors-spki-list (that one key, no other
certificate error is ignored); the agent and the demo application are given the CA file itself.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from tests.fixtures.browser import CHROMIUM_ARGS, chromium_executable, sync_playwright_or_fail
from tests.fixtures.dns import DnsServer, dnsmasq_executable
from tests.fixtures.http import Attempt, sign_in
from tests.fixtures.nginx import Nginx, TestCA, free_port
from tests.fixtures.portal import (
    REPO_ROOT,
    local_agents,
    make_portal,
    port_open,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration

BROWSER_HOST = "::1"  # nginx listens here: the browser's address as nginx sees it
PROXY_SOURCE = "127.0.0.1"  # nginx reaches the nodes from here: the only trusted proxy
FORGED = "203.0.113.66"  # what the browser claims in its own X-Forwarded-For
FIRST_DOMAIN = "tls-operator.example.test"  # the tenant's first domain, verified on the operator's word


@pytest.fixture(scope="module")
def site(ad_testbed, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    tls = TestCA.make(directory / "tls", [BROWSER_HOST, "localhost"])
    try:
        https_port = free_port(BROWSER_HOST)
    except OSError as exc:
        pytest.fail(f"This test needs IPv6 on loopback ({BROWSER_HOST}: the browser's side, told from nginx's "
                    f"127.0.0.1): {exc}. Enable it with `sysctl -w net.ipv6.conf.lo.disable_ipv6=0`.", pytrace=False)
    public_url = f"https://[{BROWSER_HOST}]:{https_port}"
    portal = make_portal("production")
    dns = DnsServer(dnsmasq_executable())
    proxy = app = agent = None
    try:
        # Production settings as in deploy/pta-portal.env: the https public URL, Secure cookies (no lab override).
        portal.env.pop("PTA_INSECURE_COOKIES")
        portal.env.update(PTA_PUBLIC_URL=public_url, PTA_TRUSTED_PROXIES=PROXY_SOURCE, PTA_BEHIND_PROXY="1",
                          DJANGO_ALLOWED_HOSTS=f"[{BROWSER_HOST}],127.0.0.1")  # 127.0.0.1: the /metrics scrapes
        portal.manage("collectstatic", "--noinput", "-v", "0")
        nodes = [portal.start_node("tls-node1"), portal.start_node("tls-node2")]
        proxy = Nginx(directory / "nginx", BROWSER_HOST, [f"{PROXY_SOURCE}:{node.port}" for node in nodes],
                      static_root=Path(portal.env["PTA_STATE_DIR"]) / "static", tls=tls, https_port=https_port).start()

        # The first tenant; the directory's domain is proven by its DNS TXT record (docs/deploy.md).
        tenant = portal.tenant_create("Contoso", FIRST_DOMAIN)
        added = dict(line.split("=", 1) for line in portal.manage("domain_add", "--tenant", tenant,
                                                                   ad_testbed.upn_suffix).stdout.splitlines()
                     if "=" in line and not line.startswith("Added"))
        dns.serve({added["name"]: added["value"]})
        portal.env["PTA_DNS_NAMESERVERS"] = dns.nameserver
        portal.manage("domain_verify", "--tenant", tenant, ad_testbed.upn_suffix)

        # The agent registers and connects through nginx: https:// then wss://, the portal's CA given to it.
        token = portal.agent_token(tenant)
        config, result = portal.agent_register(
            proxy, token, name="tls-agent", ldap_urls=(ad_testbed.ldaps_url,),
            extra=("--ca-file", ad_testbed.ca_file, "--portal-ca-file", str(tls.ca_path)))
        assert result.returncode == 0, result.stderr
        agent = portal.agent_run(config)
        wait_for(lambda: sum(local_agents(node) for node in nodes) == 1, timeout=20,
                 message=lambda: f"the agent to connect through nginx:\n{agent.log()[-2000:]}")

        app_port = free_port("127.0.0.1")
        registered = portal.manage("app_register", "--tenant", tenant, "--name", "Demo app",
                                   "--redirect-uri", f"http://127.0.0.1:{app_port}/callback").stdout
        credentials = dict(line.split("=", 1) for line in registered.splitlines() if "=" in line)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PTA_", "DATABASE_", "REDIS_"))}
        env.update(PORTAL_URL=public_url, CLIENT_ID=credentials["client_id"], PYTHONUNBUFFERED="1",
                   CLIENT_SECRET=credentials["client_secret"], REQUESTS_CA_BUNDLE=str(tls.ca_path))
        app_log = portal.directory / "demo-app.log"
        with app_log.open("wb") as log:
            app = subprocess.Popen([sys.executable, "examples/demo_app/app.py", "--port", str(app_port)],
                                   cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: port_open(app_port) or app.poll() is not None, timeout=20, message="the demo app")
        assert app.poll() is None, app_log.read_text()
        yield SimpleNamespace(portal=portal, nodes=nodes, proxy=proxy, tls=tls, agent=agent, tenant=tenant,
                              app_url=f"http://127.0.0.1:{app_port}", public_url=public_url)
    finally:
        if app is not None:
            stop_process(app)
        if agent is not None:
            agent.stop()
        if proxy is not None:
            proxy.stop()
        dns.stop()
        portal.close()


def https_client(site) -> httpx.Client:
    """A client of the public URL that trusts the test CA. Django's CSRF check of an https POST wants a
    same-origin Referer (or Origin), as a browser sends."""
    return httpx.Client(base_url=site.public_url, verify=ssl.create_default_context(cafile=str(site.tls.ca_path)),
                        follow_redirects=False, timeout=30, headers={"Referer": f"{site.public_url}/login/"})


def sign_in_through_nginx(site, user: dict) -> Attempt:
    # directory_unavailable is the DC's answer (a shared test DC may be busy with fault tests), never TLS's.
    for _ in range(3):
        with https_client(site) as client:
            attempt = sign_in(site.public_url, user["upn"], user["password"], client=client)
        if attempt.outcome != "directory_unavailable":
            return attempt
        time.sleep(3)
    return attempt


def agent_connections(site) -> int:
    return site.agent.log().count("connected to ")


def latest_record(site, upn: str) -> tuple[str, str]:
    rows = site.portal.sql("SELECT ip_address, outcome FROM signin_signinevent WHERE username = %s "
                           "ORDER BY created_at DESC LIMIT 1", (upn,))
    assert rows, f"no sign-in record for {upn}"
    return str(rows[0][0]), rows[0][1]


def test_chromium_signs_in_over_https_with_secure_cookies_hsts_and_its_own_address(site, ad_testbed):
    user = ad_testbed.user("ivan")
    with sync_playwright_or_fail() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable(), headless=True, args=[
            *CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={site.tls.spki_sha256}"])
        try:
            context = browser.new_context(extra_http_headers={"X-Forwarded-For": FORGED})
            page = context.new_page()
            page.set_default_timeout(20_000)
            portal_pages: list = []
            page.on("response", lambda r: portal_pages.append(r) if r.url.startswith(site.public_url) else None)

            page.goto(site.app_url + "/")
            page.get_by_role("link", name="Sign in with your organisation").click()
            page.wait_for_url(lambda url: url.startswith(f"{site.public_url}/login/?next="))
            page.get_by_label("Username").fill(user["upn"])
            page.get_by_role("button", name="Next").click()
            page.wait_for_url("**/login/password/")
            page.get_by_label("Password", exact=True).fill(user["password"])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(site.app_url + "/")
            assert page.inner_text("#claim-upn") == user["upn"].lower()

            cookies = {cookie["name"]: cookie for cookie in context.cookies(site.public_url)}
            assert cookies["sessionid"]["secure"] and cookies["csrftoken"]["secure"], cookies
            assert cookies["sessionid"]["httpOnly"]
            answered = [r for r in portal_pages if "/login/" in r.url]
            assert answered and all("max-age=31536000" in (r.headers.get("strict-transport-security") or "")
                                    for r in answered), [(r.url, r.headers) for r in answered]
        finally:
            browser.close()

    address, outcome = latest_record(site, user["upn"].lower())
    assert outcome == "success"
    seen_by_nginx = [line.split(" ", 1)[0] for line in site.proxy.access_lines()
                     if '"POST /login/password/ ' in line]
    assert seen_by_nginx and seen_by_nginx[-1] == BROWSER_HOST
    assert address == BROWSER_HOST  # the browser, as nginx saw it: neither its forged claim nor nginx itself
    assert address not in (FORGED, PROXY_SOURCE)


def test_nginx_serves_static_files_redirects_http_and_refuses_big_bodies(site):
    with https_client(site) as client:
        static = client.get("/static/admin/css/base.css")
        assert static.status_code == 200 and "max-age=3600" in static.headers["cache-control"]
        big = client.post("/login/", content=b"x" * (2 * 1024 * 1024),
                          headers={"content-type": "application/x-www-form-urlencoded"})
        assert big.status_code == 413
    # Answered by nginx itself (no upstream); a refused body's line is logged once nginx has discarded it.
    def logged_without_upstream(request: str, status: str) -> bool:
        return any(f'"{request} ' in line and f" {status} " in line and line.endswith("upstream=-")
                   for line in site.proxy.access_lines())

    wait_for(lambda: logged_without_upstream("GET /static/admin/css/base.css", "200"), timeout=10,
             message="the static file in nginx's access log, answered without a node")
    wait_for(lambda: logged_without_upstream("POST /login/", "413"), timeout=10,
             message="the refused body in nginx's access log, answered without a node")
    plain = httpx.get(f"http://[{BROWSER_HOST}]:{site.proxy.http_port}/login/", follow_redirects=False, timeout=10)
    assert plain.status_code == 301 and plain.headers["location"].startswith("https://")


def test_the_agent_stays_connected_across_an_nginx_reload(site, ad_testbed):
    connected = agent_connections(site)
    site.proxy.reload()
    time.sleep(3)  # several heartbeats (1 s here) through the old worker, which keeps the upgraded connection
    assert site.agent.running
    assert agent_connections(site) == connected, site.agent.log()[-2000:]
    assert sum(local_agents(node) for node in site.nodes) == 1
    attempt = sign_in_through_nginx(site, ad_testbed.user("bob"))  # through the new workers
    assert attempt.outcome == "success", attempt.text[:500]
    assert latest_record(site, ad_testbed.user("bob")["upn"].lower()) == (BROWSER_HOST, "success")


def test_a_node_restart_behind_nginx_finds_its_agent_back(site, ad_testbed):
    holder = next(node for node in site.nodes if local_agents(node) == 1)
    connected = agent_connections(site)
    holder.restart()
    wait_for(lambda: agent_connections(site) > connected
             and sum(local_agents(node) for node in site.nodes if node.running) == 1, timeout=30,
             message=lambda: f"the agent to reconnect through nginx:\n{site.agent.log()[-2000:]}")
    attempt = sign_in_through_nginx(site, ad_testbed.user("alice"))
    assert attempt.outcome == "success", attempt.text[:500]
