"""Each portal node remembers which tenant a domain routes to, and forgets it on every node when a domain or a tenant
changes (tenant/routing.py): real Daphne nodes, the change made by another process (manage.py), PostgreSQL and
Redis for the production profile. Routes are kept for an hour here, so only the word of the change explains a
node that follows it. No directory is needed: the username step tells where a name routes."""

from __future__ import annotations

import html

import httpx
import pytest
from django.conf import settings

from tests.fixtures.http import found
from tests.fixtures.portal import DaphneNode, Portal, make_portal, wait_for

pytestmark = pytest.mark.integration

DOMAIN = "contoso.example.test"
KEPT = {"PTA_ROUTING_CACHE_SECONDS": "3600"}


def organisation(node: DaphneNode, upn: str) -> str | None:
    """The organisation the username step routes ``upn`` to, or None (a domain no tenant verified: the password
    page names the platform, whatever the name)."""
    with httpx.Client(base_url=node.url, follow_redirects=False, timeout=30) as client:
        token = found(r'name="csrfmiddlewaretoken" value="([^"]+)"', client.get("/login/").text)
        response = client.post("/login/", data={"username": upn, "csrfmiddlewaretoken": token})
        assert response.status_code == 302, f"{node.name}: {response.status_code} {response.text[:300]}"
        shown = html.unescape(found(r'<p class="org">([^<]*)</p>', client.get("/login/password/").text))
        return None if shown == settings.PTA_PLATFORM_NAME else shown


def change(portal: Portal, code: str) -> None:
    """A change made through the models (as the admin and the commands make them), by another process."""
    portal.manage("shell", "-c", f"from tenant.models import Domain, Tenant; {code}")


def routed_everywhere(nodes: list[DaphneNode], upn: str, expected: str | None) -> bool:
    return all(organisation(node, upn) == expected for node in nodes)


@pytest.fixture(params=["embedded", "production"])
def site(request):
    """A portal in each profile with tenant Contoso: one node (embedded), two (production), keeping routes."""
    portal = make_portal(request.param, timings=KEPT)
    try:
        portal.tenant_create("Contoso", DOMAIN)
        nodes = [portal.start_node("web1")]
        if portal.production:
            nodes.append(portal.start_node("web2"))
            channel = f"{portal.redis_prefix}:routing"
            with portal.redis() as client:  # each node keeps routes once its listener is subscribed
                wait_for(lambda: client.pubsub_numsub(channel)[0][1] == len(nodes), timeout=30,
                         message="every node's routing listener")
        yield portal, nodes
    finally:
        portal.close()


def test_every_node_follows_a_change_made_elsewhere(site):
    portal, nodes = site
    upn = f"alice@{DOMAIN}"
    assert routed_everywhere(nodes, upn, "Contoso")
    # Behind the portal's back (no model, no word): the nodes keep what they read.
    portal.sql("UPDATE tenant_tenant SET name = %s", ("Renamed in SQL",))
    assert routed_everywhere(nodes, upn, "Contoso")

    change(portal, "t = Tenant.objects.get(); t.name = 'Contoso Ltd'; t.save()")
    wait_for(lambda: routed_everywhere(nodes, upn, "Contoso Ltd"), timeout=15, message="every node to follow")

    assert routed_everywhere(nodes, "bob@fabrikam.example.test", None)  # unknown: remembered as such
    portal.tenant_create("Fabrikam", "fabrikam.example.test")
    wait_for(lambda: routed_everywhere(nodes, "bob@fabrikam.example.test", "Fabrikam"), timeout=15,
             message="every node to route the new domain")

    change(portal, f"Domain.objects.get(name='{DOMAIN}').delete()")
    wait_for(lambda: routed_everywhere(nodes, upn, None), timeout=15, message="every node to forget the domain")


def test_a_node_whose_listener_was_cut_off_forgets_what_it_kept(redis_server):
    """Redis restarted: a change told meanwhile is lost, so a node forgets its routes when it subscribes again."""
    portal = make_portal("production", redis_url=redis_server.url, timings=KEPT)
    try:
        portal.tenant_create("Contoso", DOMAIN)
        node = portal.start_node("web1")
        channel = f"{portal.redis_prefix}:routing"
        with portal.redis() as client:
            wait_for(lambda: client.pubsub_numsub(channel)[0][1] == 1, timeout=30, message="the routing listener")
        upn = f"alice@{DOMAIN}"
        assert organisation(node, upn) == "Contoso"
        portal.sql("UPDATE tenant_tenant SET name = %s", ("Contoso Ltd",))  # a change whose word was lost
        assert organisation(node, upn) == "Contoso"
        redis_server.restart()
        with portal.redis() as client:
            wait_for(lambda: client.pubsub_numsub(channel)[0][1] == 1, timeout=30,
                     message="the routing listener to subscribe again")
        wait_for(lambda: organisation(node, upn) == "Contoso Ltd", timeout=15, message="the node to read again")
    finally:
        portal.close()
