"""A tenant's users live in its own verified domains (docs/SECURITY.md, finding 6): a tenant administrator cannot
squat another organisation's UPN through the admin console."""

import pytest
from django.urls import reverse

from tenant.models import User


@pytest.fixture
def admin_b_client(client, tenant_b, tenant_admin_factory):
    client.force_login(tenant_admin_factory(tenant_b))
    return client


@pytest.mark.parametrize("upn", ["victim@alpha.example.test", "root@platform.example.test", "x@beta.example.test."])
def test_a_tenant_admin_cannot_create_a_user_outside_their_verified_domains(admin_b_client, tenant_a, upn):
    response = admin_b_client.post(reverse("admin:tenant_user_add"), {
        "upn": upn, "source": "on-premises", "display_name": "Squatter", "usable_password": "false"})
    assert response.status_code == 200
    assert "verified domains" in str(response.context["adminform"].form.errors)
    assert not User.objects.filter(upn=upn.lower().rstrip(".")).exists()


def test_a_tenant_admin_cannot_rename_a_user_into_another_tenants_domain(admin_b_client, tenant_b):
    # A cloud user: a directory user's UPN is read-only (the directory owns it).
    user = User.objects.create_user("someone@beta.example.test", tenant=tenant_b, source=User.Source.CLOUD)
    url = reverse("admin:tenant_user_change", args=[user.pk])
    page = admin_b_client.get(url)
    data = {**page.context["adminform"].form.initial, "upn": "someone@alpha.example.test",
            "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"}
    data = {k: v for k, v in data.items() if v is not None and k not in ("password", "last_login")}
    response = admin_b_client.post(url, data)
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["upn"]
    user.refresh_from_db()
    assert user.upn == "someone@beta.example.test"


def test_users_in_their_own_verified_domain_are_fine(admin_b_client, tenant_b):
    response = admin_b_client.post(reverse("admin:tenant_user_add"), {
        "upn": "new@beta.example.test", "source": "on-premises", "display_name": "New", "usable_password": "false"})
    assert response.status_code == 302
    assert User.objects.get(upn="new@beta.example.test").tenant == tenant_b


def test_user_by_upn_reads_the_account_with_its_tenant(tenant_a, django_assert_num_queries):
    from tenant.selectors import user_by_upn

    user = User.objects.create_user("Reader@Alpha.Example.Test", tenant=tenant_a)
    with django_assert_num_queries(1):  # the tenant given is the account's: not read again
        found = user_by_upn(upn="reader@alpha.example.test", tenant=tenant_a)
        assert found == user and found.tenant is tenant_a
    with django_assert_num_queries(2):  # no tenant at hand (or another one): the account's own is read at once
        found = user_by_upn(upn="reader@alpha.example.test", tenant=None)
    assert found is not None and found.tenant == tenant_a and found.upn == "reader@alpha.example.test"
    assert user_by_upn(upn="nobody@alpha.example.test") is None
    assert user_by_upn(upn="reader@alpha.example.test' OR '1'='1") is None  # a parameter, not SQL
