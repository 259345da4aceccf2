"""A person in Chromium with examples/spa/, the browser-only (public) client: the page → the portal's username and
password pages → back at the page, which exchanges the code with a cross-origin fetch (PKCE S256, no secret),
calls /userinfo/ and shows who they are; then a silent renewal (prompt=none, top-level), sign-out, and
login_required. The same page served from an origin the application did not register cannot read the token
answer: CORS is exact. Screenshots go to docs/screenshots/spa-*.png.

Registered origins are https:// only (DOT's ALLOWED_SCHEMES), so the page is served over TLS on loopback with a
self-signed certificate made here, which this test's browser context accepts; the portal stays on plain http on
loopback (a potentially trustworthy origin, so no mixed-content block)."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from tests.fixtures.browser import screenshot, sealed_submit
from tests.fixtures.portal import (
    REPO_ROOT,
    free_port,
    local_agents,
    make_portal,
    port_open,
    start_agent,
    stop_process,
    tail,
    wait_for,
)

pytestmark = pytest.mark.integration

SPA_DIRECTORY = REPO_ROOT / "examples" / "spa"
# python3 -m http.server, over TLS (its --tls-cert option is Python 3.14's): argv = port, directory, cert, key.
SERVE_OVER_TLS = """
import functools, http.server, ssl, sys
port, directory, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def loopback_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for https://127.0.0.1 (cert and key PEM files in ``directory``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "spa-cert.pem", directory / "spa-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def serve_spa(port: int, directory: Path, cert: Path, key: Path) -> subprocess.Popen:
    log_path = directory / f"spa-{port}.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen([sys.executable, "-c", SERVE_OVER_TLS, str(port), str(SPA_DIRECTORY), str(cert),
                                   str(key)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for(lambda: port_open(port) or server.poll() is not None, timeout=10, message=f"the SPA on port {port}")
    assert server.poll() is None, tail(log_path)
    return server


def two_free_ports() -> tuple[int, int]:
    first = free_port()
    second = wait_for(lambda: (port := free_port()) != first and port, timeout=5, message="a second free port")
    return first, second


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture(scope="module")
def site(ad_testbed):
    """The portal (its issuer its own address), tenant Contoso on the DC's domain with a connected agent, and the
    SPA registered as a public client for two loopback addresses of which only the first origin is allowed; the
    page served on both."""
    portal = make_portal("embedded")
    servers: list[subprocess.Popen] = []
    try:
        port = free_port()
        node = portal.start_node("browser-spa", port=port, env={"PTA_PUBLIC_URL": f"http://127.0.0.1:{port}"})
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        start_agent(portal, node, tenant, ad_testbed)
        wait_for(lambda: local_agents(node) == 1, timeout=10, message="the agent to connect")

        spa_port, other_port = two_free_ports()
        spa_url = f"https://127.0.0.1:{spa_port}/index.html"
        other_url = f"https://127.0.0.1:{other_port}/index.html"
        # Both redirect URIs are registered: the second page differs from the first by its origin only.
        registered = portal.manage("app_register", "--tenant", tenant, "--name", "SPA", "--public",
                                   "--redirect-uri", spa_url, "--redirect-uri", other_url,
                                   "--allowed-origin", origin(spa_url)).stdout
        client_id = dict(line.split("=", 1) for line in registered.splitlines() if "=" in line)["client_id"]

        cert, key = loopback_certificate(Path(portal.directory))
        servers += [serve_spa(p, Path(portal.directory), cert, key) for p in (spa_port, other_port)]
        yield {"portal": portal, "node": node, "client_id": client_id, "spa_url": spa_url, "other_url": other_url}
    finally:
        for server in servers:
            stop_process(server)
        portal.close()


@pytest.fixture
def spa_page(chromium):
    """A fresh browser context that accepts the SPA's self-signed loopback certificate."""
    context = chromium.new_context(viewport={"width": 900, "height": 700}, locale="en-GB", ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def open_spa(page, site, url: str) -> None:
    page.goto(f"{url}?{urlencode({'portal': site['node'].url, 'client_id': site['client_id']})}")
    settled(page)


def settled(page) -> str:
    """Wait until the page has finished (signed in, signed out or an error); its state. Call it once the page
    being waited for is loaded: the one before may have finished too."""
    page.wait_for_function("() => ['signed-in', 'signed-out', 'error'].includes(document.getElementById('app')"
                           ".dataset.state)")
    return page.get_attribute("#app", "data-state")


def sign_in_at_portal(page, site, user: dict, *, shots: str = "") -> None:
    page.wait_for_url(lambda url: url.startswith(f"{site['node'].url}/login/?next="))
    page.get_by_label("Username").fill(user["upn"])
    if shots:
        screenshot(page, f"{shots}-2-username")
    page.get_by_role("button", name="Next").click()
    page.wait_for_url("**/login/password/")
    page.get_by_label("Password", exact=True).fill(user["password"])
    if shots:
        screenshot(page, f"{shots}-3-password")
    sealed_submit(page)


def back_at(page, url: str) -> None:
    page.wait_for_url(lambda current: current.startswith(url))


def token_answers(page, site) -> list:
    """The token endpoint's answers to the page's requests, as they arrive."""
    answers, endpoint = [], f"{site['node'].url}/token/"

    def keep(response) -> None:
        if response.url == endpoint and response.request.method == "POST":
            answers.append(response)

    page.on("response", keep)
    return answers


def access_tokens_issued(site) -> int:
    """The SPA's access tokens in the portal's database (revoked ones are deleted)."""
    (count,), = site["portal"].sql("SELECT COUNT(*) FROM oauth2_provider_accesstoken t JOIN applications_application a"
                                   " ON a.id = t.application_id WHERE a.client_id = %s", (site["client_id"],))
    return count


def test_browser_only_client_signs_in_renews_silently_and_signs_out(spa_page, site, ad_testbed):
    page, user = spa_page, ad_testbed.user("judy")
    spa_origin, token_endpoint = origin(site["spa_url"]), f"{site['node'].url}/token/"
    answers, portal_pages = token_answers(page, site), []

    def keep(frame) -> None:
        if frame.url.startswith(site["node"].url):
            portal_pages.append(frame.url)

    page.on("framenavigated", keep)

    open_spa(page, site, site["spa_url"])
    assert page.inner_text("#status") == "Not signed in."
    assert page.url == site["spa_url"]  # the configuration left the address bar for sessionStorage
    screenshot(page, "spa-1-application")
    page.click("#sign-in")
    sign_in_at_portal(page, site, user, shots="spa")

    back_at(page, site["spa_url"])
    assert settled(page) == "signed-in", page.inner_text("#error")
    assert page.inner_text("#who") == user["display_name"]
    assert page.inner_text("#upn") == user["upn"].lower()
    (subject, tenant_id), = site["portal"].sql("SELECT u.subject, u.tenant_id FROM tenant_user u WHERE u.upn = %s",
                                              (user["upn"].lower(),))
    assert page.inner_text("#sub").replace("-", "") == str(subject).replace("-", "")
    assert page.inner_text("#tid").replace("-", "") == str(tenant_id).replace("-", "")
    assert page.inner_text("#refresh") == "none"  # a public client gets no refresh token
    # The exchange was the page's own cross-origin fetch, answered for exactly its origin (else no userinfo).
    (answer,) = answers
    assert answer.request.resource_type == "fetch" and answer.request.all_headers()["origin"] == spa_origin
    assert answer.status == 200 and answer.all_headers()["access-control-allow-origin"] == spa_origin
    assert "code=" not in page.url
    screenshot(page, "spa-4-signed-in")

    # Silent renewal: a top-level prompt=none round trip that shows no portal page and gets a new token.
    assert any(url.endswith("/login/password/") for url in portal_pages), portal_pages  # the recorder works
    portal_pages.clear()
    with page.expect_response(lambda r: r.url == token_endpoint and r.request.method == "POST") as renewed:
        page.click("#renew")
    assert renewed.value.status == 200
    assert settled(page) == "signed-in", page.inner_text("#error")
    assert page.inner_text("#upn") == user["upn"].lower() and page.inner_text("#refresh") == "none"
    assert not portal_pages, portal_pages  # /authorize/ answered with a redirect straight back

    # Sign-out at the portal's end_session_endpoint, confirmed there, back to the page.
    page.click("#sign-out")
    page.wait_for_url(lambda url: url.startswith(f"{site['node'].url}/logout/?"))
    screenshot(page, "spa-5-sign-out")
    page.get_by_role("button", name="Sign out").click()
    back_at(page, site["spa_url"])
    assert settled(page) == "signed-out" and page.inner_text("#status") == "Signed out of the portal."
    screenshot(page, "spa-6-signed-out")

    # Without a portal session a silent renewal comes back with login_required, never a page.
    page.click("#renew")
    page.wait_for_selector("#app[data-state=error]")
    assert page.get_attribute("#error", "data-error") == "login_required", page.inner_text("#error")
    assert len(answers) == 2  # no third exchange
    screenshot(page, "spa-7-login-required")


def test_an_unregistered_origin_cannot_read_the_token_answer(spa_page, site, ad_testbed):
    page, other_origin = spa_page, origin(site["other_url"])
    endpoint, failed = f"{site['node'].url}/token/", []

    def keep(request) -> None:
        if request.url == endpoint:
            failed.append(request)

    page.on("requestfailed", keep)
    issued = access_tokens_issued(site)

    open_spa(page, site, site["other_url"])
    page.click("#sign-in")
    sign_in_at_portal(page, site, ad_testbed.user("judy"))

    back_at(page, site["other_url"])
    assert settled(page) == "error"
    assert page.get_attribute("#error", "data-error") == "network", page.inner_text("#error")
    assert page.is_hidden("#signed-in")
    screenshot(page, "spa-8-unregistered-origin")
    # The portal did answer (the code and verifier were right, a token was issued), but named no origin: the
    # browser kept the answer from the page.
    (request,) = failed
    assert request.method == "POST" and request.failure == "net::ERR_FAILED", request.failure
    assert page.evaluate("location.origin") == other_origin
    assert access_tokens_issued(site) == issued + 1
