"""An application's access settings: require_mfa through app_register, app_access and the admin console (what it
does to a sign-in: tests/signin/test_locations.py, tests/integration/test_locations.py)."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from applications.models import Application
from signin.models import SignInEvent
from tests.applications.test_admin import add_form
from tests.fixtures.http import shown_form


def run(command: str, *args) -> dict[str, str]:
    out = io.StringIO()
    call_command(command, *args, stdout=out, stderr=io.StringIO())
    return dict(line.split("=", 1) for line in out.getvalue().splitlines())


@pytest.mark.django_db
def test_app_register_and_app_access_set_and_print_require_mfa(tenant_a):
    registered = run("app_register", "--tenant", tenant_a.slug, "--name", "Payroll", "--redirect-uri",
                     "https://payroll.alpha.test/cb", "--require-mfa", "on")
    client_id = registered["client_id"]
    assert Application.objects.get(client_id=client_id).require_mfa
    assert run("app_access", client_id) == {"client_id": client_id, "name": "Payroll", "tenant": tenant_a.slug,
                                            "assignment_required": "off", "assigned_groups": "",
                                            "assigned_users": "", "require_mfa": "on",
                                            "phishing_resistant": "off"}
    assert run("app_access", client_id, "--require-mfa", "off")["require_mfa"] == "off"
    assert not Application.objects.get(client_id=client_id).require_mfa
    default = run("app_register", "--tenant", tenant_a.slug, "--name", "Wiki", "--redirect-uri",
                  "https://wiki.alpha.test/cb")
    assert run("app_access", default["client_id"])["require_mfa"] == "off"


@pytest.mark.django_db
def test_app_access_refuses_bad_input_clearly(tenant_a):
    with pytest.raises(CommandError, match="No application with client_id 'nope'"):
        run("app_access", "nope")
    with pytest.raises(CommandError, match="invalid choice: 'yes'"):
        run("app_access", "nope", "--require-mfa", "yes")


@pytest.fixture
def admin_a_client(client, tenant_a, tenant_admin_factory):
    client.force_login(tenant_admin_factory(tenant_a))
    return client


def test_the_application_page_shows_and_saves_require_mfa(admin_a_client, tenant_a):
    response = admin_a_client.post(reverse("admin:applications_application_add"), {
        **add_form(require_mfa="on"), **shown_form(admin_a_client, reverse("admin:applications_application_add"))})
    # Saved: the answer is the page that shows the new client secret once (tests/applications/test_secrets.py).
    assert response.status_code == 200 and "copy its client secret" in response.content.decode()
    application = Application.objects.get(name="Intranet")
    assert application.require_mfa and application.tenant == tenant_a
    page = admin_a_client.get(reverse("admin:applications_application_change", args=[application.pk]))
    assert 'name="require_mfa"' in page.content.decode()
    assert page.context["adminform"].form["require_mfa"].value() is True


def test_the_sign_in_records_page_shows_the_location_and_the_application(admin_a_client, tenant_a):
    application = Application.objects.create(
        tenant=tenant_a, name="Payroll", client_type=Application.CLIENT_PUBLIC, redirect_uris="https://p.alpha.test/",
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE, algorithm=Application.RS256_ALGORITHM)
    SignInEvent.objects.create(tenant=tenant_a, username="bob@alpha.example.test", outcome="location_blocked",
                               location="Guest wifi", location_kind="blocked", application=application)
    listed = admin_a_client.get(reverse("admin:signin_signinevent_changelist"))
    text = listed.content.decode()
    assert listed.status_code == 200 and "Guest wifi" in text and "Payroll" in text and "location_blocked" in text
    filtered = admin_a_client.get(reverse("admin:signin_signinevent_changelist"), {"location_kind": "trusted"})
    assert "Guest wifi" not in filtered.content.decode()
