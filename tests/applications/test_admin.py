"""A tenant administrator registers and edits their own tenant's applications in the admin console."""

import pytest
from django.urls import reverse

from applications.models import Application
from tests.fixtures.http import shown_form


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
            "algorithm": Application.RS256_ALGORITHM, "skip_authorization": "on", "groups_claim": "all",
            "groups_claim_format": "name", "groups_claim_limit": "200", **PENDING_GROUPS_NONE, **overrides}


# The inline of group names typed before a sign-in reported them (applications/admin.py): its management form.
PENDING_GROUPS_NONE = {"pending_groups-TOTAL_FORMS": "0", "pending_groups-INITIAL_FORMS": "0",
                       "pending_groups-MIN_NUM_FORMS": "0", "pending_groups-MAX_NUM_FORMS": "1000"}


def secret_page(response) -> bool:
    """A confidential client's add answers with the page that shows its new secret once (test_secrets.py)."""
    return response.status_code == 200 and response.templates[0].name.endswith("application/secret.html")


def test_tenant_admin_opens_the_add_and_change_pages(admin_a_client, application_a):
    add = admin_a_client.get(reverse("admin:applications_application_add"))
    assert add.status_code == 200
    assert "tenant" not in add.context["adminform"].form.fields
    change = admin_a_client.get(reverse("admin:applications_application_change", args=[application_a.pk]))
    assert change.status_code == 200
    assert "tenant" not in change.context["adminform"].form.fields


def test_an_application_added_by_a_tenant_admin_lands_in_their_tenant(admin_a_client, tenant_a, tenant_b):
    add = reverse("admin:applications_application_add")
    response = admin_a_client.post(add, {**add_form(tenant=str(tenant_b.pk)), **shown_form(admin_a_client, add)})
    assert secret_page(response), response.context["adminform"].form.errors if response.context else ""
    created = Application.objects.get(name="Intranet")
    assert created.tenant == tenant_a  # the posted tenant of another organisation is ignored


def test_a_tenant_admin_edits_their_application_but_not_its_tenant(admin_a_client, application_a, tenant_b):
    url = reverse("admin:applications_application_change", args=[application_a.pk])
    form = add_form(name="Wiki 2", tenant=str(tenant_b.pk))
    response = admin_a_client.post(url, form)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    application_a.refresh_from_db()
    assert application_a.name == "Wiki 2" and application_a.tenant_id != tenant_b.pk


def test_platform_admin_still_picks_the_tenant(client, tenant_a, tenant_b):
    from tenant.models import User

    client.force_login(User.objects.create_superuser("root@platform.test", "R00t-pa55-for-tests"))
    add = client.get(reverse("admin:applications_application_add"))
    assert add.status_code == 200 and "tenant" in add.context["adminform"].form.fields
    response = client.post(reverse("admin:applications_application_add"), {
        **add_form(tenant=str(tenant_b.pk)), **shown_form(client, reverse("admin:applications_application_add"))})
    assert secret_page(response)
    assert Application.objects.get(name="Intranet").tenant == tenant_b


def test_the_change_page_has_no_view_on_site_link_and_the_shortcut_is_no_500(admin_a_client, application_a):
    from django.contrib.contenttypes.models import ContentType

    change = admin_a_client.get(reverse("admin:applications_application_change", args=[application_a.pk]))
    assert change.status_code == 200 and "viewsitelink" not in change.content.decode()
    content_type = ContentType.objects.get_for_model(Application)
    shortcut = admin_a_client.get(f"/admin/r/{content_type.pk}/{application_a.pk}/")
    assert shortcut.status_code == 302  # was a 500: DOT's URL names views the portal does not serve
    assert shortcut["Location"].endswith(reverse("admin:applications_application_change", args=[application_a.pk]))


@pytest.mark.parametrize("field, value", [("groups_claim_limit", "0"), ("groups_claim_limit", "5000"),
                                          ("groups_claim_format", "sid"), ("groups_claim", "some")])
def test_the_groups_claim_settings_refuse_what_they_cannot_do(admin_a_client, field, value):
    add = reverse("admin:applications_application_add")
    answer = admin_a_client.post(add, {**add_form(**{field: value}), **shown_form(admin_a_client, add)})
    assert answer.status_code == 200 and field in answer.context["adminform"].form.errors
    assert not Application.objects.filter(name="Intranet").exists()
