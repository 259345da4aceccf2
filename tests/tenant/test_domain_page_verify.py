"""Verifying a domain from its own page in the admin console: the page shows the TXT record to publish, the last
look-up's time and result, and a "Verify now" button (a POST of its own) that looks the record up in a real DNS
server (dnsmasq, tests/fixtures/dns.py) and says what it found."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from tenant.models import Domain
from tenant.services import domain_add
from trail.models import AuditEvent


@pytest.fixture
def admin_client(client, tenant_a, tenant_admin_factory):
    admin = tenant_admin_factory(tenant_a)
    client.force_login(admin)
    client.admin_upn = admin.upn
    return client


@pytest.fixture
def claim(tenant_a):
    return domain_add(tenant=tenant_a, name="alpha-eu.example.test")


def page_of(client, domain):
    page = client.get(reverse("admin:tenant_domain_change", args=[domain.pk]))
    assert page.status_code == 200
    return page.content.decode()


def verify_url(domain) -> str:
    return reverse("admin:tenant_domain_verify", args=[domain.pk])


def last_check_of(html: str) -> str:
    found = re.search(r'<label>Last check:</label>\s*<div class="readonly">(.*?)</div>', html, re.S)
    assert found, "the page shows the last check"
    return found.group(1)


def messages_of(response) -> list[tuple[str, str]]:
    return [(message.level_tag, str(message)) for message in response.context["messages"]]


def test_the_page_shows_the_record_and_a_verify_now_button(admin_client, claim):
    html = page_of(admin_client, claim)
    assert claim.record_name in html and claim.record_value in html
    assert last_check_of(html) == "Not checked yet."
    form = re.search(r'<form id="domain-verify" method="post" action="([^"]+)">', html)
    assert form and form.group(1) == verify_url(claim)
    assert re.search(r'<button type="submit" form="domain-verify"[^>]*>Verify now</button>', html)


def test_verify_now_says_what_dns_holds_and_verifies_once_the_record_is_there(dns_server, admin_client, claim):
    missing = admin_client.post(verify_url(claim), follow=True)
    assert missing.redirect_chain == [(reverse("admin:tenant_domain_change", args=[claim.pk]), 302)]
    [(level, text)] = messages_of(missing)
    assert level == "error" and "No TXT record found" in text and claim.record_name in text
    assert "No TXT record found" in last_check_of(missing.content.decode())
    claim.refresh_from_db()
    assert not claim.verified and claim.last_check_at is not None

    dns_server.serve({claim.record_name: "pta-domain-verification=someone-elses-value"})
    wrong = admin_client.post(verify_url(claim), follow=True)
    assert "someone-elses-value" in messages_of(wrong)[0][1] and "someone-elses-value" in last_check_of(
        wrong.content.decode())

    dns_server.serve({claim.record_name: claim.record_value})
    done = admin_client.post(verify_url(claim), follow=True)
    [(level, text)] = messages_of(done)
    assert level == "success" and "is verified" in text
    claim.refresh_from_db()
    assert claim.verified and claim.verified_at is not None
    html = done.content.decode()
    assert "is verified" in last_check_of(html)
    assert "Verify now" not in html  # nothing left to verify
    # The audit trail has the verification, by this administrator from the console; the failed look-ups changed
    # nothing an administrator owns and are no event.
    [event] = AuditEvent.objects.filter(object_type="domain", object_id=str(claim.pk))
    assert (event.action, event.through, event.actor) == ("domain.verified", "console", admin_client.admin_upn)
    assert event.changes["verified"] == {"before": False, "after": True} and "/verify/" in event.detail
    # It routes: the sign-in page sends its users to this tenant.
    browser = Client()
    browser.post("/login/", {"username": "someone@alpha-eu.example.test"})
    assert browser.session["pta_signin"]["organisation"] == "Alpha Corp"


def test_a_get_of_verify_now_looks_nothing_up(dns_server, admin_client, claim):
    dns_server.serve({claim.record_name: claim.record_value})
    assert admin_client.get(verify_url(claim)).status_code == 405
    claim.refresh_from_db()
    assert not claim.verified and claim.last_check_at is None


def test_another_tenants_domain_cannot_be_verified_from_its_url(dns_server, client, tenant_b, tenant_admin_factory,
                                                                claim):
    dns_server.serve({claim.record_name: claim.record_value})
    client.force_login(tenant_admin_factory(tenant_b))
    assert client.post(verify_url(claim)).status_code == 404
    claim.refresh_from_db()
    assert not claim.verified and claim.last_check_at is None


def test_the_commands_check_shows_on_the_page_too(dns_server, admin_client, claim):
    from django.core.management import CommandError, call_command

    dns_server.serve({claim.record_name: "pta-domain-verification=wrong"})
    with pytest.raises(CommandError):  # the command fails while unverified: its word is on the page all the same
        call_command("domain_verify", "--tenant", claim.tenant.slug, claim.name)
    assert "pta-domain-verification=wrong" in last_check_of(page_of(admin_client, claim))
    assert Domain.objects.get(pk=claim.pk).verified is False
