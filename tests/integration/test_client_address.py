"""The client's address through a real Daphne (docs/SECURITY.md, "The client's address"): one node behind a
proxy (the test client plays it: PTA_TRUSTED_PROXIES=127.0.0.1) and one reached by a peer that is not its
proxy (PTA_TRUSTED_PROXIES=10.9.9.9), both with PTA_BEHIND_PROXY=1. The password POST goes through the
password consumer, the rest through Django. Cloud-only accounts: no agent needed. Behind real nginx over TLS:
test_tls.py."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.fixtures.http import _csrf, sign_in
from tests.fixtures.portal import make_portal

pytestmark = pytest.mark.integration

DOMAIN = "proxied.example.test"
PASSWORD = "Cl0ud-Adm1n-pa55"
ACCOUNTS = ("records", "lockout", "direct")


@pytest.fixture(scope="module")
def site():
    portal = make_portal("embedded")
    try:
        tenant = portal.tenant_create("Proxied", DOMAIN)
        portal.manage("tenant_policy", tenant, "--lockout-threshold", "3")
        portal.manage("shell", "-c", (
            "from tenant.models import Tenant\n"
            "from tenant.services import tenant_admin_create\n"
            f"t = Tenant.objects.get(slug='{tenant}')\n"
            + "".join(f"tenant_admin_create(tenant=t, upn='{name}@{DOMAIN}', password='{PASSWORD}')\n"
                      for name in ACCOUNTS)))
        behind = portal.start_node("behind", env={"PTA_TRUSTED_PROXIES": "127.0.0.1", "PTA_BEHIND_PROXY": "1"})
        direct = portal.start_node("direct", env={"PTA_TRUSTED_PROXIES": "10.9.9.9", "PTA_BEHIND_PROXY": "1"})
        yield portal, behind, direct
    finally:
        portal.close()


def through(node, chain: str, upn: str, password: str = PASSWORD) -> str | None:
    """One sign-in whose every request carries X-Forwarded-For ``chain``; its outcome."""
    with httpx.Client(base_url=node.url, follow_redirects=False, timeout=20,
                      headers={"X-Forwarded-For": chain}) as client:
        return sign_in(node.url, upn, password, client=client).outcome


def recorded_address(portal, upn: str) -> str:
    rows = portal.sql("SELECT ip_address FROM signin_signinevent WHERE username = %s ORDER BY created_at DESC, "
                      "id DESC LIMIT 1", (upn,))
    return str(rows[0][0])


def test_a_forged_forwarded_for_from_an_untrusted_peer_is_ignored(site):
    portal, _, direct = site
    assert through(direct, "198.51.100.7", f"direct@{DOMAIN}") == "success"
    assert recorded_address(portal, f"direct@{DOMAIN}") == "127.0.0.1"  # the peer


def test_through_a_trusted_proxy_the_client_is_its_right_most_hop(site):
    portal, behind, _ = site
    upn = f"records@{DOMAIN}"
    assert through(behind, "198.51.100.7", upn) == "success"
    assert recorded_address(portal, upn) == "198.51.100.7"
    # What the client itself sent stays on the left, where it is never believed.
    assert through(behind, "10.9.9.9, 6.6.6.6, 2001:db8::7", upn, "Wrong-guess") == "invalid_credentials"
    assert recorded_address(portal, upn) == "2001:db8::7"


def test_lockouts_familiar_bucket_follows_the_client_behind_the_proxy(site):
    """Both come through the one proxy: the user who signed in from A before is not locked out by B's guesses."""
    portal, behind, _ = site
    upn, user, attacker = f"lockout@{DOMAIN}", "198.51.100.20", "203.0.113.66"
    assert through(behind, user, upn) == "success"
    guesses = [through(behind, f"{user}, {attacker}", upn, f"Wrong-{i}") for i in range(5)]
    assert guesses == ["invalid_credentials"] * 3 + ["cloud_locked"] * 2
    assert through(behind, user, upn) == "success"
    assert recorded_address(portal, upn) == user


@pytest.mark.parametrize(("node_name", "status"), [("behind", 302), ("direct", 403)])
def test_the_scheme_is_believed_from_the_trusted_proxy_only(site, node_name, status):
    """An https Origin passes Django's CSRF check only on a request it believes is https: X-Forwarded-Proto from
    the trusted proxy is believed, from any other peer it never reaches Django."""
    node = site[1] if node_name == "behind" else site[2]
    host = re.sub(r"^http://", "", node.url)
    with httpx.Client(base_url=node.url, follow_redirects=False, timeout=20,
                      headers={"X-Forwarded-Proto": "https"}) as client:
        token = _csrf(client.get("/login/"))
        response = client.post("/login/", data={"username": f"records@{DOMAIN}", "csrfmiddlewaretoken": token},
                               headers={"Origin": f"https://{host}", "Referer": f"https://{host}/login/"})
    assert response.status_code == status, response.text[:300]
