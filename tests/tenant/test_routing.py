"""Routing (domain → tenant) remembered in the process, and forgotten on every change (tenant/routing.py). Across
real processes and nodes: tests/integration/test_routing.py."""

import pytest

from tenant.models import Domain, Location, Tenant
from tenant.routing import _stamp_replace, routes
from tenant.selectors import LocationMatch, location_for_address, tenant_for_username
from tenant.services import domain_add, location_remove, location_set, tenant_create, tenant_policy_set

pytestmark = pytest.mark.django_db(transaction=True)  # the word of a change goes out when it commits


def routed(username: str) -> Tenant:
    tenant = tenant_for_username(username=username)
    assert tenant is not None, f"{username} routes to no tenant"
    return tenant


@pytest.fixture
def kept(settings, tmp_path):
    """This process keeps routes, as a portal node does (the embedded profile's way: the stamp file)."""
    settings.STATE_DIR, settings.PTA_REDIS_URL = tmp_path, ""
    routes.stamp_follow(tmp_path / "routing.stamp")
    routes.keep(True)
    yield routes
    routes.keep(False)
    routes.stamp_follow(None)


def test_a_kept_route_is_read_once_and_each_caller_gets_its_own_tenant(kept, tenant_a, django_assert_num_queries):
    first = tenant_for_username(username="alice@alpha.example.test")
    assert tenant_for_username(username="carol@nowhere.example.test") is None
    with django_assert_num_queries(0):
        again = tenant_for_username(username="bob@alpha.example.test")
        assert tenant_for_username(username="dave@nowhere.example.test") is None  # unknown: remembered as such
    assert again == first == tenant_a and again is not first
    again.mfa_policy = Tenant.MfaPolicy.ALL  # a caller's change is its own
    assert routed("alice@alpha.example.test").mfa_policy == Tenant.MfaPolicy.OFF


def test_changes_made_in_this_process_are_followed_at_once(kept, tenant_a):
    assert routed("alice@alpha.example.test").mfa_policy == Tenant.MfaPolicy.OFF
    assert tenant_for_username(username="bob@beta.example.test") is None
    tenant_policy_set(tenant=tenant_a, mfa_policy=Tenant.MfaPolicy.ALL)
    assert routed("alice@alpha.example.test").mfa_policy == Tenant.MfaPolicy.ALL
    tenant_b = tenant_create(name="Beta Corp", domains=["beta.example.test"])
    assert tenant_for_username(username="bob@beta.example.test") == tenant_b
    Domain.objects.get(name="alpha.example.test").delete()
    assert tenant_for_username(username="alice@alpha.example.test") is None
    domain_add(tenant=tenant_b, name="gamma.example.test")  # unverified: routes nothing
    assert tenant_for_username(username="carol@gamma.example.test") is None
    tenant_b.delete()
    assert tenant_for_username(username="bob@beta.example.test") is None


def test_a_change_another_process_stamped_is_followed(kept, tenant_a):
    assert routed("alice@alpha.example.test").name == "Alpha Corp"
    Tenant.objects.filter(pk=tenant_a.pk).update(name="Alpha Ltd")  # no signal here: another process's change
    assert routed("alice@alpha.example.test").name == "Alpha Corp"
    _stamp_replace(kept._stamp)  # what that process does once its change commits
    assert routed("alice@alpha.example.test").name == "Alpha Ltd"


def test_a_read_overtaken_by_a_change_is_not_kept(kept, tenant_a, django_assert_num_queries):
    def read_while_it_changes(name):
        found = Domain.objects.select_related("tenant").get(name=name, verified=True).tenant
        routes.forget()  # the word of a change arrives while the read is on its way
        return found

    routes.tenant("alpha.example.test", read_while_it_changes)
    with django_assert_num_queries(1):
        tenant_for_username(username="alice@alpha.example.test")


def test_a_process_that_did_not_start_routing_reads_every_time(tenant_a, django_assert_num_queries):
    assert not routes.kept
    with django_assert_num_queries(2):
        tenant_for_username(username="alice@alpha.example.test")
        tenant_for_username(username="alice@alpha.example.test")


def test_a_tenants_locations_are_read_once_and_follow_every_change(kept, tenant_a, django_assert_num_queries):
    location_set(tenant=tenant_a, name="HQ", ranges=["192.0.2.0/24"], kind=Location.Kind.TRUSTED)
    assert location_for_address(tenant=tenant_a, ip="192.0.2.7") == LocationMatch(name="HQ", kind="trusted")
    with django_assert_num_queries(0):  # every later sign-in of the tenant: parsed once, remembered
        assert location_for_address(tenant=tenant_a, ip="192.0.2.8") == LocationMatch(name="HQ", kind="trusted")
        assert location_for_address(tenant=tenant_a, ip="198.51.100.1") is None
    location_set(tenant=tenant_a, name="Guest wifi", ranges=["198.51.100.0/24"], kind=Location.Kind.BLOCKED)
    assert location_for_address(tenant=tenant_a, ip="198.51.100.1") == LocationMatch(name="Guest wifi",
                                                                                      kind="blocked")
    location_remove(tenant=tenant_a, name="Guest wifi")
    assert location_for_address(tenant=tenant_a, ip="198.51.100.1") is None
