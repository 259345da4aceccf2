"""Domain ownership: a domain routes sign-ins only once its owner proved it in DNS (or the operator vouched).

The attacker is a tenant administrator who adds someone else's domain to get that domain's sign-ins, and
with them its users' sealed passwords, sent to their own agents. They drive the admin console; the victim's
users drive the sign-in pages. The DNS is a real server (dnsmasq, tests/fixtures/dns.py).
"""

import io

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.forms import CheckboxInput
from django.test import Client
from django.urls import reverse

from tenant.domain_proof import nameserver_parse
from tenant.models import Domain, User
from tenant.services import VerificationStatus, domain_add, domain_verify

PLATFORM_UPN = "root@platform.test"
PLATFORM_COLLEAGUE = "colleague@platform.test"  # no account yet: routed by its domain alone


@pytest.fixture
def platform_admin(db):
    return User.objects.create_superuser(PLATFORM_UPN, "R00t-pa55-for-tests")


@pytest.fixture
def admin_a(tenant_a, tenant_admin_factory):
    return tenant_admin_factory(tenant_a)


@pytest.fixture
def admin_a_client(client, admin_a):
    client.force_login(admin_a)
    return client


def organisation_for(username: str) -> str | None:
    """Where the sign-in page sends this username, asked as a browser would (a fresh client): the organisation
    it will sign in with, or None for a domain no tenant verified (every name goes on to the password page, which
    then names the platform: no account existence oracle)."""
    browser = Client()
    response = browser.post("/login/", {"username": username})
    assert response.status_code == 302 and response["Location"] == "/login/password/"
    organisation = browser.session["pta_signin"]["organisation"]
    return None if organisation == settings.PTA_PLATFORM_NAME else organisation


def form_data(form) -> dict:
    """What a browser posts back for a rendered form, unchanged."""
    data: dict[str, str | list[str]] = {}
    for bound in form:
        value = bound.value()
        if isinstance(bound.field.widget, CheckboxInput):
            if value:
                data[bound.html_name] = "on"
        elif isinstance(value, list | tuple):
            data[bound.html_name] = [str(v) for v in value]
        else:
            data[bound.html_name] = "" if value is None else str(value)
    return data


def change_page_post(page, inline_rows: dict[str, list[dict]] | None = None) -> dict:
    """The admin change page's POST as rendered, plus new rows for the named inlines (field → value)."""
    data = form_data(page.context["adminform"].form)
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update(form_data(formset.management_form))
        for form in formset.forms:
            data.update(form_data(form))
        rows = (inline_rows or {}).get(formset.prefix, [])
        total = len(formset.forms)
        for index, row in enumerate(rows, start=total):
            data.update({f"{formset.prefix}-{index}-{name}": value for name, value in row.items()})
        data[f"{formset.prefix}-TOTAL_FORMS"] = str(total + len(rows))
    return data


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- the attack: a tenant administrator adds another organisation's domain ---------------------------------


@pytest.mark.parametrize("victim_upn", [PLATFORM_COLLEAGUE, "ceo@beta-hq.example.test"],
                         ids=["platform-admins-domain", "other-tenants-future-domain"])
def test_domain_added_on_domain_page_is_unverified_and_routes_nothing(admin_a_client, platform_admin, tenant_b,
                                                                      victim_upn):
    victim_domain = victim_upn.rpartition("@")[2]
    assert organisation_for(victim_upn) is None

    response = admin_a_client.post(reverse("admin:tenant_domain_add"), {"name": victim_domain, "verified": "on"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    added = Domain.objects.get(name=victim_domain)
    assert added.tenant.slug == "alpha-corp"
    assert added.verified is False and added.verified_at is None
    assert organisation_for(victim_upn) is None
    assert organisation_for(PLATFORM_UPN) != "Alpha Corp"  # the platform admin's own password stays home


def test_domain_added_or_verified_on_tenant_page_inline_is_refused(admin_a_client, platform_admin, tenant_a):
    claim = domain_add(tenant=tenant_a, name="platform.test")
    page = admin_a_client.get(reverse("admin:tenant_tenant_change", args=[tenant_a.pk]))
    assert page.status_code == 200
    data = change_page_post(page, {"domains": [{"name": "beta-hq.example.test", "verified": "on"}]})
    (row,) = [key for key, value in data.items() if key.startswith("domains-") and key.endswith("-id")
              and value == str(claim.pk)]
    data[row.replace("-id", "-verified")] = "on"  # and tick the existing, unverified claim

    response = admin_a_client.post(reverse("admin:tenant_tenant_change", args=[tenant_a.pk]), data)

    assert response.status_code == 302, response.context and response.context["errors"]
    claim.refresh_from_db()
    assert not claim.verified
    assert not Domain.objects.filter(name="beta-hq.example.test", verified=True).exists()
    assert organisation_for(PLATFORM_COLLEAGUE) is None
    assert organisation_for(PLATFORM_UPN) != "Alpha Corp"
    assert organisation_for("ceo@beta-hq.example.test") is None


def test_tenant_page_inline_is_read_only_for_a_tenant_admin(admin_a_client, tenant_a):
    page = admin_a_client.get(reverse("admin:tenant_tenant_change", args=[tenant_a.pk]))
    (domains,) = [inline for inline in page.context["inline_admin_formsets"] if inline.formset.prefix == "domains"]
    assert not domains.has_add_permission and not domains.has_change_permission
    html = page.content.decode()
    assert 'name="domains-0-name"' not in html and 'name="domains-0-verified"' not in html
    assert 'name="domains-__prefix__-name"' not in html  # no empty row to add from


def test_platform_admin_adds_and_verifies_on_the_tenant_page(client, platform_admin, tenant_a):
    client.force_login(platform_admin)
    page = client.get(reverse("admin:tenant_tenant_change", args=[tenant_a.pk]))
    data = change_page_post(page, {"domains": [{"name": "alpha-two.example.test", "verified": "on"}]})
    data["domains-0-name"] = "renamed.example.test"  # the existing row: its name is fixed once saved

    response = client.post(reverse("admin:tenant_tenant_change", args=[tenant_a.pk]), data)

    assert response.status_code == 302, response.context and response.context["errors"]
    assert Domain.objects.get(name="alpha-two.example.test").verified
    assert Domain.objects.filter(tenant=tenant_a, name="alpha.example.test").exists()
    assert not Domain.objects.filter(name="renamed.example.test").exists()
    assert organisation_for("someone@alpha-two.example.test") == "Alpha Corp"


def test_tenant_admin_cannot_verify_nor_rename(admin_a_client, platform_admin, tenant_a):
    own_verified = tenant_a.domains.get(name="alpha.example.test")
    claim = domain_add(tenant=tenant_a, name="platform.test")

    admin_a_client.post(reverse("admin:tenant_domain_change", args=[claim.pk]),
                        {"name": "platform.test", "verified": "on"})
    admin_a_client.post(reverse("admin:tenant_domain_change", args=[own_verified.pk]),
                        {"name": "platform.test", "verified": "on"})

    claim.refresh_from_db()
    own_verified.refresh_from_db()
    assert claim.verified is False
    assert own_verified.name == "alpha.example.test" and own_verified.verified
    assert organisation_for(PLATFORM_COLLEAGUE) is None
    assert organisation_for("someone@alpha.example.test") == "Alpha Corp"


def test_nobody_renames_a_domain(client, platform_admin, tenant_a):
    domain = tenant_a.domains.get()
    client.force_login(platform_admin)
    client.post(reverse("admin:tenant_domain_change", args=[domain.pk]),
                {"name": "platform.test", "tenant": str(tenant_a.pk), "verified": "on"})
    domain.refresh_from_db()
    assert domain.name == "alpha.example.test"
    domain.name = "platform.test"
    with pytest.raises(ValidationError, match="cannot be renamed"):
        domain.full_clean()


def test_operator_domains_are_verified(tenant_a):
    # tenant_create (the platform operator's command) vouches for its domains.
    domain = tenant_a.domains.get()
    assert domain.verified and domain.verified_at is not None
    assert organisation_for("someone@alpha.example.test") == "Alpha Corp"


# --- proving ownership in DNS ---------------------------------------------------------------------------------


def test_right_txt_record_verifies_and_routes(dns_server, tenant_a):
    claim = domain_add(tenant=tenant_a, name="alpha-eu.example.test")
    assert claim.record_name == "_pta-verification.alpha-eu.example.test"
    assert claim.record_value.startswith("pta-domain-verification=")
    assert organisation_for("someone@alpha-eu.example.test") is None
    dns_server.serve({claim.record_name: claim.record_value})

    result = domain_verify(domain=claim)

    assert result.status is VerificationStatus.VERIFIED and result.verified
    claim.refresh_from_db()
    assert claim.verified and claim.verified_at is not None
    assert organisation_for("someone@alpha-eu.example.test") == "Alpha Corp"
    assert domain_verify(domain=claim).status is VerificationStatus.ALREADY_VERIFIED


def test_missing_or_wrong_record_leaves_domain_unverified(dns_server, tenant_a):
    claim = domain_add(tenant=tenant_a, name="alpha-eu.example.test")

    missing = domain_verify(domain=claim)
    dns_server.serve({claim.record_name: "pta-domain-verification=someone-elses-value"})
    wrong = domain_verify(domain=claim)
    dns_server.serve({"_pta-verification.other.example.test": claim.record_value})
    elsewhere = domain_verify(domain=claim)

    assert missing.status is VerificationStatus.NO_RECORD
    assert f"No TXT record found at {claim.record_name}" in missing.message and claim.record_value in missing.message
    assert wrong.status is VerificationStatus.WRONG_VALUE and "someone-elses-value" in wrong.message
    assert elsewhere.status is VerificationStatus.NO_RECORD
    claim.refresh_from_db()
    assert not claim.verified
    assert organisation_for("someone@alpha-eu.example.test") is None


def test_dns_that_does_not_answer_is_reported_not_raised(dns_server, tenant_a):
    claim = domain_add(tenant=tenant_a, name="alpha-eu.example.test")
    dns_server.stop()

    result = domain_verify(domain=claim, timeout=0.5)

    assert result.status is VerificationStatus.DNS_NO_ANSWER and "did not answer" in result.message
    claim.refresh_from_db()
    assert not claim.verified


def test_verify_action_in_admin_console(dns_server, admin_a_client, tenant_a):
    add = admin_a_client.post(reverse("admin:tenant_domain_add"), {"name": "alpha-eu.example.test"}, follow=True)
    claim = Domain.objects.get(name="alpha-eu.example.test")
    # Adding lands on the domain's page, which shows the record to publish.
    assert add.redirect_chain[-1][0] == reverse("admin:tenant_domain_change", args=[claim.pk])
    page = add.content.decode()
    assert claim.record_name in page and claim.record_value in page

    def verify():
        return admin_a_client.post(reverse("admin:tenant_domain_changelist"),
                                   {"action": "verify", "_selected_action": [str(claim.pk)]}, follow=True)

    not_yet = verify()
    assert any("No TXT record found" in message for message in messages_of(not_yet))
    claim.refresh_from_db()
    assert not claim.verified

    dns_server.serve({claim.record_name: claim.record_value})
    done = verify()
    assert any("is verified" in message for message in messages_of(done))
    claim.refresh_from_db()
    assert claim.verified
    assert organisation_for("someone@alpha-eu.example.test") == "Alpha Corp"


def test_verify_action_cannot_reach_another_tenants_domain(dns_server, admin_a_client, tenant_b):
    claim = domain_add(tenant=tenant_b, name="beta-eu.example.test")
    dns_server.serve({claim.record_name: claim.record_value})
    admin_a_client.post(reverse("admin:tenant_domain_changelist"),
                        {"action": "verify", "_selected_action": [str(claim.pk)]}, follow=True)
    claim.refresh_from_db()
    assert not claim.verified


# --- one owner per verified domain ----------------------------------------------------------------------------


def test_another_tenant_cannot_add_a_verified_domain(tenant_a, tenant_b, tenant_admin_factory, client):
    with pytest.raises(ValidationError, match="already verified by another tenant"):
        domain_add(tenant=tenant_b, name="alpha.example.test")

    client.force_login(tenant_admin_factory(tenant_b))
    response = client.post(reverse("admin:tenant_domain_add"), {"name": "alpha.example.test"})
    assert response.status_code == 200
    assert "already verified by another tenant" in response.content.decode()
    assert list(Domain.objects.filter(name="alpha.example.test").values_list("tenant", flat=True)) == [tenant_a.pk]


def test_first_tenant_to_prove_wins_and_the_other_cannot_verify(dns_server, tenant_a, tenant_b, tenant_factory):
    # Beta squats first; Alpha, the owner, is not blocked by that and proves it; Beta's own proof then fails.
    squat = domain_add(tenant=tenant_b, name="alpha-hq.example.test")
    owner = domain_add(tenant=tenant_a, name="alpha-hq.example.test")
    dns_server.serve({owner.record_name: owner.record_value})
    assert domain_verify(domain=owner).status is VerificationStatus.VERIFIED

    dns_server.serve({squat.record_name: squat.record_value})
    result = domain_verify(domain=squat)

    assert result.status is VerificationStatus.CLAIMED and "another tenant" in result.message
    squat.refresh_from_db()
    assert not squat.verified
    with pytest.raises(ValidationError, match="already verified by another tenant"):
        domain_add(tenant=tenant_factory("Gamma Corp"), name="alpha-hq.example.test")
    with pytest.raises(IntegrityError), transaction.atomic():
        Domain.objects.filter(pk=squat.pk).update(verified=True)  # the database refuses it too
    assert organisation_for("someone@alpha-hq.example.test") == "Alpha Corp"


def test_a_tenant_has_a_domain_once(tenant_a, admin_a_client):
    with pytest.raises(ValidationError, match="already has"):
        domain_add(tenant=tenant_a, name="alpha.example.test")
    response = admin_a_client.post(reverse("admin:tenant_domain_add"), {"name": "alpha.example.test"})
    assert response.status_code == 200
    assert tenant_a.domains.count() == 1


# --- the commands -------------------------------------------------------------------------------------------


def test_domain_add_and_verify_commands(dns_server, tenant_a):
    out = io.StringIO()
    call_command("domain_add", "--tenant", tenant_a.slug, "Alpha-EU.example.test", stdout=out)

    claim = Domain.objects.get(name="alpha-eu.example.test")
    lines = out.getvalue().splitlines()
    assert f"name={claim.record_name}" in lines and f"value={claim.record_value}" in lines
    assert any("TXT record" in line for line in lines)
    assert not claim.verified

    with pytest.raises(CommandError, match="No TXT record found"):
        call_command("domain_verify", "--tenant", tenant_a.slug, "alpha-eu.example.test", stdout=io.StringIO())
    dns_server.serve({claim.record_name: "pta-domain-verification=wrong"})
    with pytest.raises(CommandError, match="holds 'pta-domain-verification=wrong'"):
        call_command("domain_verify", "--tenant", tenant_a.slug, "alpha-eu.example.test", stdout=io.StringIO())

    dns_server.serve({claim.record_name: claim.record_value})
    out = io.StringIO()
    call_command("domain_verify", "--tenant", tenant_a.slug, "alpha-eu.example.test", stdout=out)
    assert "is verified" in out.getvalue()
    call_command("domain_verify", "--tenant", tenant_a.slug, "alpha-eu.example.test", stdout=io.StringIO())
    claim.refresh_from_db()
    assert claim.verified


def test_domain_commands_refuse_what_they_cannot_do(dns_server, tenant_a, tenant_b, settings):
    with pytest.raises(CommandError, match="already verified by another tenant"):
        call_command("domain_add", "--tenant", tenant_b.slug, "alpha.example.test", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no domain"):
        call_command("domain_verify", "--tenant", tenant_b.slug, "alpha.example.test", stdout=io.StringIO())
    with pytest.raises(CommandError, match="No tenant"):
        call_command("domain_add", "--tenant", "nobody", "x.example.test", stdout=io.StringIO())

    claim = domain_add(tenant=tenant_b, name="beta-eu.example.test")
    settings.PTA_DNS_NAMESERVERS = ["127.0.0.1:not-a-port"]
    with pytest.raises(CommandError, match="DNS did not answer"):
        call_command("domain_verify", "--tenant", tenant_b.slug, claim.name, stdout=io.StringIO())


@pytest.mark.parametrize("entry,parsed", [
    ("127.0.0.1", ("127.0.0.1", 53)),
    ("127.0.0.1:5353", ("127.0.0.1", 5353)),
    ("[::1]:5353", ("::1", 5353)),
    ("::1", ("::1", 53)),
    ("ns.example.test:53", ("ns.example.test", 53)),
])
def test_nameserver_setting_entries(entry, parsed):
    assert nameserver_parse(entry) == parsed


@pytest.mark.parametrize("entry", ["", "[::1", "127.0.0.1:", "127.0.0.1:x", "127.0.0.1:70000", "[::1]5353"])
def test_bad_nameserver_entries_are_refused(entry):
    with pytest.raises(ValueError):
        nameserver_parse(entry)
