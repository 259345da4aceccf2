"""A directory (on-premises) user's password lives in Active Directory: the admin console offers no password
control for them, refuses its password URL with a message (Django's form said "Password changed successfully" and
changed nothing in AD), and shows the UPN and source read-only. A cloud user keeps Django's password form."""

import pytest
from django.urls import reverse

from tenant.models import User

ADMIN_PASSWORD = "Adm1n-pa55-for-tests"
NEW_PASSWORD = "N3w-cl0ud-pa55-phrase"


@pytest.fixture
def admin_client(client, tenant_a, tenant_admin_factory):
    client.force_login(tenant_admin_factory(tenant_a))
    return client


@pytest.fixture
def directory_user(tenant_a):
    return User.objects.create_user("ada@alpha.example.test", tenant=tenant_a, source=User.Source.ON_PREMISES,
                                    immutable_id="guid-ada", display_name="Ada")


@pytest.fixture
def cloud_user(tenant_a):
    return User.objects.create_user("cleo@alpha.example.test", "Old-cl0ud-pa55-phrase", tenant=tenant_a,
                                    source=User.Source.CLOUD, display_name="Cleo")


def change_url(user) -> str:
    return reverse("admin:tenant_user_change", args=[user.pk])


def password_url(user) -> str:
    return reverse("admin:auth_user_password_change", args=[user.pk])


def page_post(page) -> dict:
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name in form.fields
            and name not in ("password", "last_login", "date_joined")}
    data.update({name: ["on"] if value is True else value for name, value in data.items() if isinstance(value, bool)})
    return {k: v for k, v in data.items() if v is not False}


def test_a_directory_users_page_has_no_password_control_and_a_read_only_upn_and_source(admin_client,
                                                                                    directory_user):
    page = admin_client.get(change_url(directory_user))
    assert page.status_code == 200
    html = page.content.decode()
    form = page.context["adminform"].form
    assert "password" not in form.fields
    assert password_url(directory_user) not in html and 'href="../password/"' not in html
    assert "Set password" not in html and "Reset password" not in html
    assert "upn" not in form.fields and "source" not in form.fields
    assert "ada@alpha.example.test" in html and "On-premises (pass-through)" in html  # shown, read-only
    assert "In Active Directory: change it there." in html  # where the password is, instead of a control


def test_a_posted_upn_or_source_does_not_change_a_directory_user(admin_client, directory_user):
    page = admin_client.get(change_url(directory_user))
    data = {**page_post(page), "upn": "other@alpha.example.test", "source": "cloud", "display_name": "Ada L."}
    response = admin_client.post(change_url(directory_user), data)
    assert response.status_code == 302, page.context["adminform"].form.errors
    directory_user.refresh_from_db()
    assert (directory_user.upn, directory_user.source) == ("ada@alpha.example.test", User.Source.ON_PREMISES)
    assert directory_user.display_name == "Ada L."  # the rest of the page still saves


@pytest.mark.parametrize("method", ["get", "post"])
def test_the_password_url_of_a_directory_user_refuses_with_a_message(admin_client, directory_user, method):
    before = directory_user.password
    data = {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"}
    response = getattr(admin_client, method)(password_url(directory_user), data if method == "post" else None)
    assert response.status_code == 302 and response["Location"] == change_url(directory_user)
    html = admin_client.get(response["Location"]).content.decode()
    assert "No password was changed" in html and "Active Directory" in html and 'class="error"' in html
    assert "Password changed successfully" not in html
    directory_user.refresh_from_db()
    assert directory_user.password == before and not directory_user.has_usable_password()


def test_a_cloud_user_keeps_the_password_form(admin_client, cloud_user):
    page = admin_client.get(change_url(cloud_user))
    assert 'href="../password/"' in page.content.decode() and "upn" in page.context["adminform"].form.fields
    response = admin_client.post(password_url(cloud_user), {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD,
                                                            "usable_password": "true"})
    assert response.status_code == 302
    cloud_user.refresh_from_db()
    assert cloud_user.check_password(NEW_PASSWORD)


def test_another_tenants_directory_user_is_a_404_not_a_message(client, tenant_b, tenant_admin_factory,
                                                               directory_user):
    client.force_login(tenant_admin_factory(tenant_b))
    assert client.get(password_url(directory_user)).status_code == 404


def test_adding_a_directory_user_with_a_password_is_refused(admin_client):
    response = admin_client.post(reverse("admin:tenant_user_add"), {
        "upn": "new@alpha.example.test", "source": "on-premises", "usable_password": "true",
        "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 200
    assert "Active Directory" in str(response.context["adminform"].form.errors)
    assert not User.objects.filter(upn="new@alpha.example.test").exists()


def test_adding_a_directory_user_without_a_password_needs_no_choice(admin_client):
    """The form's default ("password-based authentication: enabled") with no password typed adds the user."""
    response = admin_client.post(reverse("admin:tenant_user_add"), {
        "upn": "new@alpha.example.test", "source": "on-premises", "usable_password": "true"})
    assert response.status_code == 302
    assert not User.objects.get(upn="new@alpha.example.test").has_usable_password()
