"""SAML 2.0 end to end: the Samba DC, a real pta-agent, a live Daphne, service providers built with OneLogin's
python3-saml (strict mode) whose ACS is a real HTTP server on loopback, and Chromium for the HTTP-POST binding.

- Chromium, SP-initiated by HTTP-Redirect: the sign-in pages, then the page that posts the response to the ACS by
  itself; RelayState unchanged; the SP validates the signed assertion (attributes, groups); and the same without
  JavaScript, through the noscript Continue button. Then by HTTP-POST from another site's page: the session is
  reused though its SameSite=Lax cookie does not come with a cross-site POST.
- A plain HTTP client (no JavaScript), the HTTP-POST binding: the persistent NameID is the same over two sign-ins
  (the second by ForceAuthn, which asks the password again) and different at another SP.
"""

from __future__ import annotations

import html
import http.server
import re
import threading
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.fixtures.browser import sealed_submit
from tests.fixtures.directory_admin import DirectoryAdmin
from tests.fixtures.http import sign_in
from tests.fixtures.portal import free_port, local_agents, make_portal, wait_for
from tests.integration.test_groups import PASSWORD, kv, register_agent
from tests.samlidp.onelogin_sp import OneLoginSP

pytestmark = pytest.mark.integration


class Acs:
    """The SPs' assertion consumer services: an HTTP server on loopback that keeps every form posted to it."""

    def __init__(self):
        self.port = free_port()
        self.posts: list[dict[str, str]] = []
        self.pages: dict[str, bytes] = {}  # what a GET of a path shows (an SP's page that posts a request)
        acs = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                page = acs.pages.get(self.path, b"")
                self.send_response(200 if page else 404)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                acs.posts.append({k: v[0] for k, v in parse_qs(body).items()} | {"path": self.path})
                page = b"<!doctype html><title>ACS</title><p id=acs>received</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}/acs"


@pytest.fixture(scope="module")
def site(ad_testbed, tmp_path_factory):
    portal = make_portal("embedded")
    directory = DirectoryAdmin(ad_testbed)
    acs = Acs()
    try:
        port = free_port()
        node = portal.start_node("web", port=port, env={"PTA_PUBLIC_URL": f"http://127.0.0.1:{port}"})
        tenant = portal.tenant_create("Contoso", ad_testbed.upn_suffix)
        register_agent(portal, node, tenant, ad_testbed)
        wait_for(lambda: local_agents(node) == 1, timeout=10, message="the agent to connect")
        metadata = httpx.get(f"{node.url}/saml/{tenant}/metadata/", timeout=20)
        assert metadata.status_code == 200 and "public" in metadata.headers["Cache-Control"]
        sps = {}
        for name in ("wiki", "crm"):
            sp = OneLoginSP(entity_id=f"https://{name}.contoso.test/", acs_url=acs.url(name),
                            idp_metadata_xml=metadata.text)
            certificate = tmp_path_factory.mktemp("sp") / f"{name}.pem"
            certificate.write_text(sp.certificate)  # its requests must be signed
            printed = kv(portal.manage("app_register", "--tenant", tenant, "--name", name, "--saml", "--entity-id",
                                       sp.entity_id, "--acs-url", sp.acs_url, "--send-groups",
                                       "--signing-cert-file", str(certificate)).stdout)
            assert printed["saml_sso_url"].endswith(f"/saml/{tenant}/sso/")  # after PTA_PUBLIC_URL
            sps[name] = sp
        yield {"portal": portal, "node": node, "tenant": tenant, "directory": directory, "acs": acs, "sps": sps}
    finally:
        acs.server.shutdown()
        directory.close()
        portal.close()


@pytest.fixture(scope="module")
def person(site):
    directory = site["directory"]
    name, group = directory.unique("sa"), directory.unique("sg")
    upn = directory.add_user(name, PASSWORD)
    directory.add_group(group, name)
    return {"upn": upn, "group": group}


def test_chromium_signs_in_by_redirect_and_the_response_posts_itself_to_the_acs(site, person, chromium):
    sp, acs = site["sps"]["wiki"], site["acs"]
    for javascript in (True, False):
        context = chromium.new_context(java_script_enabled=javascript)
        page = context.new_page()
        page.set_default_timeout(20_000)
        try:
            url, request_id = sp.redirect_url(relay_state="https://wiki.contoso.test/page?a=1&b=2")
            before = len(acs.posts)
            page.goto(url)
            page.fill("input[name=username]", person["upn"])
            page.click("button[type=submit]")
            page.fill("#id_password", PASSWORD)  # with JavaScript on, the field has no name: the page seals it
            if javascript:
                sealed_submit(page)
            else:
                page.click("button[type=submit]")
                page.click("#continue")  # the noscript button of the page that carries the response
            page.wait_for_selector("#acs")
            posted = acs.posts[before]
            assert posted["path"] == "/wiki/acs"
            assert posted["RelayState"] == "https://wiki.contoso.test/page?a=1&b=2"
            auth = sp.process(posted["SAMLResponse"], request_id)
            assert auth.get_friendlyname_attribute("upn") == [person["upn"]]
            assert person["group"] in (auth.get_friendlyname_attribute("groups") or [])
            assert auth.get_session_index()
            if javascript:
                _post_binding_from_another_site(site, page)
        finally:
            context.close()


def _post_binding_from_another_site(site, page) -> None:
    """The HTTP-POST binding as browsers send it: from the SP's page on another site (localhost, where the portal is
    127.0.0.1), so the portal's SameSite=Lax session cookie does not come with the POST. The session is reused all
    the same: no sign-in page, the response at the ACS."""
    sp, acs = site["sps"]["crm"], site["acs"]
    fields, request_id = sp.post_request(relay_state="rs-post")
    inputs = "".join(f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
                     for name, value in fields.items())
    acs.pages["/crm/start"] = (f'<!doctype html><title>SP</title><body onload="document.forms[0].submit()">'
                               f'<form method="post" action="{site["node"].url}/saml/{site["tenant"]}/sso/">'
                               f'{inputs}</form>').encode()
    before = len(acs.posts)
    page.goto(f"http://localhost:{acs.port}/crm/start")
    page.wait_for_url("**/crm/acs")
    posted = acs.posts[before]
    assert posted["path"] == "/crm/acs" and posted["RelayState"] == "rs-post"
    assert sp.process(posted["SAMLResponse"], request_id).get_nameid()


def test_post_binding_persistent_name_id_stable_over_force_authn_and_pairwise(site, person):
    node, tenant = site["node"], site["tenant"]
    browser = httpx.Client(base_url=node.url, follow_redirects=False, timeout=20)
    sso = f"/saml/{tenant}/sso/"

    def answer(sp: OneLoginSP, *, force_authn: bool = False, sign_in_first: bool = True) -> str:
        fields, request_id = sp.post_request(relay_state="rs-1", force_authn=force_authn)
        posted = browser.post(sso, data=fields)
        assert posted.status_code == 303, posted.text[:300]  # back by a GET, which brings the session cookie
        first = browser.get(sso + posted.headers["location"])
        if first.status_code == 302:  # the sign-in pages, then back
            assert sign_in_first, first.headers["location"]
            next_url = parse_qs(urlsplit(first.headers["location"]).query)["next"][0]
            attempt = sign_in(node.url, person["upn"], PASSWORD, next_url=next_url, client=browser)
            assert attempt.outcome == "success", attempt.text[:300]
            first = browser.get(next_url)
        assert first.status_code == 200, first.text[:300]
        form = dict(re.findall(r'name="(SAMLResponse|RelayState)" value="([^"]*)"', first.text))
        assert form["RelayState"] == "rs-1"
        return sp.process(html.unescape(form["SAMLResponse"]), request_id).get_nameid()

    wiki, crm = site["sps"]["wiki"], site["sps"]["crm"]
    first = answer(wiki)
    # ForceAuthn: the session is there, yet the password is asked again (a redirect to the sign-in pages).
    fields, _ = wiki.post_request(force_authn=True)
    ticket = browser.post(sso, data=fields).headers["location"]
    assert browser.get(sso + ticket).headers["location"].startswith("/login/")
    assert answer(wiki, force_authn=True) == first
    assert answer(crm, sign_in_first=False) != first  # the session is reused, the NameID is another


def test_chromium_the_portals_own_sign_out_posts_the_saml_sp_a_logout_request(site, person, chromium, tmp_path):
    """Signed in to an SP with an SLO URL, the person signs out on the portal's own page (/logout/): the
    signed-out page's hidden frame (the page's CSP and the frame's X-Frame-Options as served by Daphne) posts the
    SP a signed LogoutRequest that the SP, strict, accepts for the NameID and SessionIndex it was given."""
    acs, node = site["acs"], site["node"]
    sp = OneLoginSP(entity_id="https://slo.contoso.test/", acs_url=acs.url("slo"), idp_metadata_xml=httpx.get(
        f"{node.url}/saml/{site['tenant']}/metadata/", timeout=20).text, slo_url=f"http://127.0.0.1:{acs.port}/slo/slo")
    certificate = tmp_path / "slo.pem"
    certificate.write_text(sp.certificate)
    site["portal"].manage("app_register", "--tenant", site["tenant"], "--name", "slo", "--saml", "--entity-id",
                          sp.entity_id, "--acs-url", sp.acs_url, "--slo-url", sp.slo_url,
                          "--signing-cert-file", str(certificate))
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        url, request_id = sp.redirect_url()
        page.goto(url)
        page.fill("input[name=username]", person["upn"])
        page.click("button[type=submit]")
        page.fill("input[type=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("#acs")
        at_sp = sp.process(acs.posts[-1]["SAMLResponse"], request_id)
        before = len(acs.posts)
        page.goto(f"{node.url}/logout/")
        page.click("button[type=submit]")
        page.wait_for_selector("#signed-out")
        wait_for(lambda: len(acs.posts) > before, timeout=15, message="the SP's SLO URL to get the LogoutRequest")
        posted = acs.posts[before]
        assert posted["path"] == "/slo/slo"
        told = sp.logout_request(posted["SAMLRequest"])
        assert told["name_id"] == at_sp.get_nameid() and told["session_indexes"] == [at_sp.get_session_index()]
    finally:
        context.close()
