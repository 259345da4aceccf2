"""Named locations: the ranges (IPv4, IPv6, IPv4-mapped IPv6), which location an address is in, the
tenant_location command and the admin console's page."""

from __future__ import annotations

import io
import ipaddress

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from tenant.locations import RangeError, address_in_ranges, address_normalised, range_parse, ranges_parse
from tenant.models import Location
from tenant.selectors import location_for_address
from tenant.services import location_set

# --- the ranges: pure -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "ranges", "inside"), [
    ("192.0.2.7", ["192.0.2.0/24"], True),
    ("192.0.3.7", ["192.0.2.0/24"], False),
    ("10.1.2.3", ["192.0.2.0/24", "10.0.0.0/8"], True),
    ("2001:db8:1::5", ["2001:db8:1::/48"], True),
    ("2001:db8:2::5", ["2001:db8:1::/48"], False),
    ("::ffff:192.0.2.7", ["192.0.2.0/24"], True),  # what a dual-stack socket reports for an IPv4 client
    ("192.0.2.7", ["::ffff:192.0.2.0/120"], True),  # a range written in the mapped form is the IPv4 one
    ("::ffff:192.0.3.7", ["::ffff:192.0.2.0/120"], False),
    ("192.0.2.7", ["2001:db8::/32"], False),  # an IPv4 address is never in an IPv6 range, nor the reverse
    ("2001:db8::1", ["0.0.0.0/0"], False),
    ("203.0.113.9", ["203.0.113.9"], True),  # a single address: a /32
    ("2001:db8::9", ["2001:db8::9"], True),
    ("fe80::1%eth0", ["fe80::/10"], True),  # a zone index names our interface, not the client
])
def test_an_address_is_in_its_ranges(address, ranges, inside):
    assert address_in_ranges(address_normalised(address), ranges_parse(ranges)) is inside


def test_garbage_is_in_no_range():
    assert address_normalised("unknown") is None
    assert not address_in_ranges(None, ranges_parse(["0.0.0.0/0"]))


@pytest.mark.parametrize(("text", "problem"), [
    ("10.0.0.1/8", "host bits set: did you mean 10.0.0.0/8?"),
    ("300.1.1.0/24", "is not an IPv4 or IPv6 network"),
    ("office", "is not an IPv4 or IPv6 network"),
    ("10.0.0.0/33", "is not an IPv4 or IPv6 network"),
    ("2001:db8::1/32", "did you mean 2001:db8::/32?"),
])
def test_a_bad_range_is_named_with_why(text, problem):
    with pytest.raises(RangeError, match=problem.replace("?", r"\?").replace(".", r"\.")):
        range_parse(text)


def test_every_bad_range_is_named_at_once_and_repeats_are_dropped():
    with pytest.raises(RangeError) as caught:
        ranges_parse(["10.0.0.0/8", "nope", "192.0.2.1/24"])
    assert "nope" in str(caught.value) and "192.0.2.0/24" in str(caught.value)
    assert ranges_parse(["10.0.0.0/8", " 10.0.0.0/8 ", "::ffff:10.0.0.0/104"]) == [ipaddress.ip_network("10.0.0.0/8")]
    with pytest.raises(RangeError, match="at least one range"):
        ranges_parse(["", "  "])


# --- which location: the database ------------------------------------------------------------------------

@pytest.mark.django_db
def test_blocked_wins_over_trusted_and_other_tenants_do_not_count(tenant_a, tenant_b):
    location_set(tenant=tenant_a, name="HQ", ranges=["192.0.2.0/24", "2001:db8:a::/48"], kind=Location.Kind.TRUSTED)
    location_set(tenant=tenant_a, name="Guest wifi", ranges=["192.0.2.128/25"], kind=Location.Kind.BLOCKED)
    location_set(tenant=tenant_b, name="B blocked", ranges=["198.51.100.0/24"], kind=Location.Kind.BLOCKED)
    hq = location_for_address(tenant=tenant_a, ip="192.0.2.7")
    assert hq is not None and (hq.name, hq.trusted) == ("HQ", True)
    guest = location_for_address(tenant=tenant_a, ip="::ffff:192.0.2.200")
    assert guest is not None and (guest.name, guest.blocked) == ("Guest wifi", True)
    v6 = location_for_address(tenant=tenant_a, ip="2001:db8:a::77")
    assert v6 is not None and v6.name == "HQ"
    assert location_for_address(tenant=tenant_a, ip="198.51.100.1") is None  # tenant B's
    assert location_for_address(tenant=None, ip="192.0.2.7") is None  # platform accounts have no locations
    assert location_for_address(tenant=tenant_a, ip="") is None


# --- the command ---------------------------------------------------------------------------------------

def run(*args) -> str:
    out = io.StringIO()
    call_command("tenant_location", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_command_adds_replaces_lists_and_removes(tenant_a):
    slug = tenant_a.slug
    out = run(slug, "--name", "HQ", "--range", "192.0.2.0/24", "--range", "2001:db8::/32", "--trusted")
    assert out == "HQ\ttrusted\t192.0.2.0/24 2001:db8::/32\n"
    out = run(slug, "--name", "HQ", "--range", "10.0.0.0/8", "--blocked")  # replaced, not added to
    assert out == "HQ\tblocked\t10.0.0.0/8\n"
    run(slug, "--name", "Branch", "--range", "::ffff:198.51.100.0/120", "--trusted")
    assert run(slug) == "Branch\ttrusted\t198.51.100.0/24\nHQ\tblocked\t10.0.0.0/8\n"
    assert run(slug, "--remove", "HQ") == "Branch\ttrusted\t198.51.100.0/24\n"
    assert list(Location.objects.filter(tenant=tenant_a).values_list("name", flat=True)) == ["Branch"]


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "message"), [
    (["--name", "HQ", "--range", "10.0.0.1/8", "--trusted"], "ranges: 10.0.0.1/8 has host bits set"),
    (["--name", "HQ", "--range", "intranet", "--blocked"], "intranet is not an IPv4 or IPv6 network"),
    (["--name", "HQ", "--trusted"], "at least one --range"),
    (["--name", "HQ", "--range", "10.0.0.0/8"], "--trusted or --blocked"),
    (["--range", "10.0.0.0/8", "--trusted"], "need --name"),
    (["--remove", "Nowhere"], "no location named 'Nowhere'"),
    (["--remove", "HQ", "--name", "HQ"], "--remove takes no --name"),
])
def test_command_refuses_bad_input_clearly(tenant_a, args, message):
    with pytest.raises(CommandError, match=message):
        run(tenant_a.slug, *args)
    assert not Location.objects.exists()


@pytest.mark.django_db
def test_command_names_an_unknown_tenant():
    with pytest.raises(CommandError, match="No tenant with slug 'nobody'"):
        run("nobody")


# --- the admin console ---------------------------------------------------------------------------------

@pytest.fixture
def admin_client(client, tenant_a, tenant_admin_factory):
    client.force_login(tenant_admin_factory(tenant_a))
    return client


def test_admin_adds_a_location_in_its_own_tenant(admin_client, tenant_a):
    url = reverse("admin:tenant_location_add")
    page = admin_client.get(url)
    assert page.status_code == 200 and 'name="tenant"' not in page.content.decode()  # scoped: no tenant choice
    response = admin_client.post(url, {"name": "HQ", "kind": "trusted",
                                       "ranges": "192.0.2.0/24\n2001:db8::/32, ::ffff:10.0.0.0/104"})
    assert response.status_code == 302, response.content.decode()[:2000]
    location = Location.objects.get(name="HQ")
    assert location.tenant == tenant_a and location.ranges == "192.0.2.0/24\n2001:db8::/32\n10.0.0.0/8"
    listed = admin_client.get(reverse("admin:tenant_location_changelist")).content.decode()
    assert "192.0.2.0/24, 2001:db8::/32, 10.0.0.0/8" in listed


def test_admin_says_which_range_is_wrong(admin_client):
    response = admin_client.post(reverse("admin:tenant_location_add"),
                                 {"name": "HQ", "kind": "blocked", "ranges": "192.0.2.0/24\n192.0.2.1/16\nlobby"})
    assert response.status_code == 200
    text = response.content.decode()
    assert "192.0.2.1/16 has host bits set: did you mean 192.0.0.0/16?" in text
    assert "lobby is not an IPv4 or IPv6 network" in text
    assert not Location.objects.exists()


def test_admin_refuses_a_second_location_of_the_same_name(admin_client, tenant_a):
    location_set(tenant=tenant_a, name="HQ", ranges=["192.0.2.0/24"], kind=Location.Kind.TRUSTED)
    response = admin_client.post(reverse("admin:tenant_location_add"),
                                 {"name": "HQ", "kind": "blocked", "ranges": "198.51.100.0/24"})
    assert response.status_code == 200 and "already has a location named HQ" in response.content.decode()
    assert Location.objects.count() == 1
