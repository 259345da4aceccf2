"""A tenant administrator registers and edits their own tenant's applications in the admin console."""

import pytest
from django.urls import reverse

from applications.models import Application


@pytest.fixture
def admin_a_client(client, tenant_a, tenant_admin_factory):
    client.force_login(tenant_admin_factory(tenant_a))
    return client


@pytest.fixture
def application_a(tenant_a):
    return Application.objects.create(
        tenant=tenant_a, name="Wiki", client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE, redirect_uris="https://wiki.alpha.test/cb",
        algorithm=Application.RS256_ALGORITHM)


def add_form(**overrides) -> dict:
    return {"name": "Intranet", "client_type": Application.CLIENT_CONFIDENTIAL,
            "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
            "redirect_uris": "https://intranet.alpha.test/callback", "post_logout_redirect_uris": "",
            "algorithm": Application.RS256_ALGORITHM, "skip_authorization": "on", "client_secret": "",
            "hash_client_secret": "on", "groups_claim": "all", "groups_claim_format": "name",
            "groups_claim_limit": "200", **overrides}


def test_tenant_admin_opens_the_add_and_change_pages(admin_a_client, application_a):
    add = admin_a_client.get(reverse("admin:applications_application_add"))
    assert add.status_code == 200
    assert "tenant" not in add.context["adminform"].form.fields
    change = admin_a_client.get(reverse("admin:applications_application_change", args=[application_a.pk]))
    assert change.status_code == 200
    assert "tenant" not in change.context["adminform"].form.fields


def test_an_application_added_by_a_tenant_admin_lands_in_their_tenant(admin_a_client, tenant_a, tenant_b):
    response = admin_a_client.post(reverse("admin:applications_application_add"), add_form(tenant=str(tenant_b.pk)))
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    created = Application.objects.get(name="Intranet")
    assert created.tenant == tenant_a  # the posted tenant of another organisation is ignored


def test_a_tenant_admin_edits_their_application_but_not_its_tenant(admin_a_client, application_a, tenant_b):
    url = reverse("admin:applications_application_change", args=[application_a.pk])
    form = add_form(name="Wiki 2", tenant=str(tenant_b.pk))
    del form["client_secret"]  # shown on creation only
    response = admin_a_client.post(url, form)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    application_a.refresh_from_db()
    assert application_a.name == "Wiki 2" and application_a.tenant_id != tenant_b.pk


def test_platform_admin_still_picks_the_tenant(client, tenant_a, tenant_b):
    from tenant.models import User

    client.force_login(User.objects.create_superuser("root@platform.test", "R00t-pa55-for-tests"))
    add = client.get(reverse("admin:applications_application_add"))
    assert add.status_code == 200 and "tenant" in add.context["adminform"].form.fields
    response = client.post(reverse("admin:applications_application_add"), add_form(tenant=str(tenant_b.pk)))
    assert response.status_code == 302
    assert Application.objects.get(name="Intranet").tenant == tenant_b


@pytest.mark.parametrize("field, value", [("groups_claim_limit", "0"), ("groups_claim_limit", "5000"),
                                          ("groups_claim_format", "sid"), ("groups_claim", "some")])
def test_the_groups_claim_settings_refuse_what_they_cannot_do(admin_a_client, field, value):
    answer = admin_a_client.post(reverse("admin:applications_application_add"), add_form(**{field: value}))
    assert answer.status_code == 200 and field in answer.context["adminform"].form.errors
    assert not Application.objects.filter(name="Intranet").exists()
