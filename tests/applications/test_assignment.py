"""Who may use which application (assignment): the rule (assigned users, members of assigned groups, pending names),
its enforcement at /authorize/ (a page naming no group; access_denied with iss to the application; prompt=none),
the password grant and refresh, the groups claim of "assigned", the commands and the admin console, tenant-scoped.
The directory's side (nested groups, a removal seen at the next sign-in) is in tests/integration/test_assignment.py."""

from __future__ import annotations

import base64
import io
import json
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from oauth2_provider.models import AccessToken, RefreshToken

from applications.models import Application, PendingGroupAssignment
from applications.selectors import application_user_assigned
from applications.services import application_access_set, application_register
from signin.models import SignInEvent
from signin.services.group_claims import groups_claims
from signin.services.users import user_groups_sync
from tenant.models import DirectoryGroup, DirectoryGroupMembership, GroupsState, User
from tenant.services import tenant_policy_set
from tests.signin.test_mfa import PASSWORD, outcome, password_step

pages = pytest.mark.django_db(transaction=True)
REDIRECT = "http://127.0.0.1/cb"
ISSUER = settings.OAUTH2_PROVIDER["OIDC_ISS_ENDPOINT"]


def group(tenant, name: str) -> DirectoryGroup:
    return DirectoryGroup.objects.create(tenant=tenant, object_guid=str(uuid.uuid4()), name=name,
                                         dn=f"CN={name},OU=Groups,DC=alpha,DC=test")


def member(user, *groups) -> None:
    for g in groups:
        DirectoryGroupMembership.objects.create(user=user, group=g)
    User.objects.filter(pk=user.pk).update(groups_state=GroupsState.CURRENT)
    user.groups_state = GroupsState.CURRENT


def run(command: str, *args) -> dict[str, str]:
    out = io.StringIO()
    call_command(command, *args, stdout=out, stderr=io.StringIO())
    return dict(line.split("=", 1) for line in out.getvalue().splitlines())


@pytest.fixture
def alice(db, tenant_a):
    return User.objects.create_user("alice@alpha.example.test", tenant=tenant_a)


@pytest.fixture
def wiki(tenant_a):
    application, _ = application_register(tenant=tenant_a, name="Wiki", redirect_uris=["https://wiki.alpha.test/cb"])
    return application


# --- the rule ----------------------------------------------------------------------------------------------------

def test_without_assignment_required_every_user_of_the_tenant_may_use_it(wiki, alice):
    assert application_user_assigned(application=wiki, user=alice)


def test_members_of_assigned_groups_and_assigned_users_only(wiki, alice, tenant_a):
    staff, other = group(tenant_a, "Wiki-Users"), group(tenant_a, "Sales")
    application_access_set(application=wiki, assign_groups=["wiki-users"])  # AD compares names case-insensitively
    assert wiki.assignment_required and list(wiki.assigned_groups.all()) == [staff]
    assert not application_user_assigned(application=wiki, user=alice)
    member(alice, other)
    assert not application_user_assigned(application=wiki, user=alice)
    member(alice, staff)
    assert application_user_assigned(application=wiki, user=alice)
    bob = User.objects.create_user("bob@alpha.example.test", tenant=tenant_a)
    wiki.assigned_users.add(bob)
    assert application_user_assigned(application=wiki, user=bob)


def test_groups_and_users_of_another_tenant_never_count(wiki, tenant_a, tenant_b):
    foreign = group(tenant_b, "Wiki-Users")
    application_access_set(application=wiki, assign_groups=["Wiki-Users"])
    # Tenant B's group of that name is not assigned: the name waits for tenant A's own group.
    assert not wiki.assigned_groups.exists()
    assert list(wiki.pending_groups.values_list("name", flat=True)) == ["Wiki-Users"]
    carol = User.objects.create_user("carol@beta.example.test", tenant=tenant_b)
    member(carol, foreign)
    wiki.assigned_users.add(carol)  # only the admin form and the service check this: the rule holds anyway
    assert not application_user_assigned(application=wiki, user=carol)


def test_a_pending_name_admits_and_is_resolved_by_the_next_sign_in_that_reports_it(wiki, alice, tenant_a):
    application_access_set(application=wiki, assign_groups=["Wiki-Users"])
    assert PendingGroupAssignment.objects.filter(application=wiki).count() == 1
    guid = str(uuid.uuid4())
    user_groups_sync(user=alice, groups=[{"id": guid, "name": "WIKI-users", "dn": "CN=WIKI-users,DC=alpha"}],
                     truncated=False, asked=True)
    assert [g.object_guid for g in wiki.assigned_groups.all()] == [guid]
    assert not PendingGroupAssignment.objects.filter(application=wiki).exists()
    assert application_user_assigned(application=wiki, user=alice)
    # Known by objectGUID from now on: a rename in AD keeps the assignment.
    user_groups_sync(user=alice, groups=[{"id": guid, "name": "Wiki-Readers", "dn": "CN=Wiki-Readers,DC=alpha"}],
                     truncated=False, asked=True)
    assert application_user_assigned(application=wiki, user=alice)


def test_unassigning_removes_groups_and_pending_names(wiki, tenant_a):
    group(tenant_a, "Wiki-Users")
    application_access_set(application=wiki, assign_groups=["Wiki-Users", "Later"])
    application_access_set(application=wiki, unassign_groups=["wiki-users", "LATER"])
    assert not wiki.assigned_groups.exists() and not wiki.pending_groups.exists()
    assert wiki.assignment_required  # still required: nobody may use it until someone is assigned


def test_groups_claim_assigned_gives_only_the_users_assigned_groups(wiki, alice, tenant_a):
    staff, sales = group(tenant_a, "Wiki-Users"), group(tenant_a, "Sales")
    member(alice, staff, sales)
    assert groups_claims(user=alice, application=wiki) == {"groups": ["Sales", "Wiki-Users"]}
    wiki.groups_claim = Application.GroupsClaim.ASSIGNED
    assert groups_claims(user=alice, application=wiki) == {}
    application_access_set(application=wiki, assign_groups=["Wiki-Users"])
    assert groups_claims(user=alice, application=wiki) == {"groups": ["Wiki-Users"]}


# --- the commands ------------------------------------------------------------------------------------------------

def test_app_register_assign_group_turns_assignment_on(tenant_a):
    group(tenant_a, "Payroll-Staff")
    registered = run("app_register", "--tenant", tenant_a.slug, "--name", "Payroll", "--redirect-uri",
                     "https://payroll.alpha.test/cb", "--assign-group", "Payroll-Staff", "--assign-group", "Auditors")
    shown = run("app_access", registered["client_id"])
    assert (shown["assignment_required"], shown["assigned_groups"], shown["assigned_users"]) == (
        "on", "Payroll-Staff, Auditors (pending)", "")


def test_app_access_changes_and_prints_the_assignment(wiki, tenant_a):
    group(tenant_a, "Wiki-Users")
    shown = run("app_access", wiki.client_id, "--assign-group", "Wiki-Users")
    assert (shown["assignment_required"], shown["assigned_groups"]) == ("on", "Wiki-Users")
    shown = run("app_access", wiki.client_id, "--unassign-group", "Wiki-Users", "--assignment-required", "off",
                "--require-mfa", "on")
    assert (shown["assignment_required"], shown["assigned_groups"], shown["require_mfa"]) == ("off", "", "on")
    with pytest.raises(CommandError, match="at most 256 characters"):
        run("app_access", wiki.client_id, "--assign-group", "x" * 300)
    with pytest.raises(CommandError, match="invalid choice"):
        run("app_access", wiki.client_id, "--assignment-required", "maybe")


# --- enforcement: the authorize endpoint, the password grant, refresh --------------------------------------------

@pytest.fixture
def admin_user(transactional_db, tenant_a, tenant_admin_factory):
    return tenant_admin_factory(tenant_a)


def authorize_query(app, **extra) -> str:
    return "/authorize/?" + urlencode({
        "response_type": "code", "client_id": app.client_id, "redirect_uri": REDIRECT, "scope": "openid",
        "state": "s1", "code_challenge": "A" * 43, "code_challenge_method": "S256", **extra})


@pages
def test_authorize_refuses_an_unassigned_user_with_a_page_that_names_no_group(admin_user):
    tenant_policy_set(tenant=admin_user.tenant, helpdesk_contact="help@alpha.example.test")
    app, _ = application_register(tenant=admin_user.tenant, name="Payroll", public=True, redirect_uris=[REDIRECT])
    secret_group = group(admin_user.tenant, "Payroll-Secret-Staff")
    application_access_set(application=app, assign_groups=[secret_group.name])
    client = Client(REMOTE_ADDR="192.0.2.10")
    # The sign-in itself succeeds (the portal's session); the application gets no code.
    assert outcome(password_step(client, admin_user.upn, next_url=authorize_query(app))) == "success"
    page = client.get(authorize_query(app))
    text = page.content.decode()
    assert page.status_code == 403 and outcome(page) == "app_not_assigned"
    assert "access to this application" in text and "Payroll" in text and "help@alpha.example.test" in text
    assert "Payroll-Secret-Staff" not in text and "code=" not in text
    back = parse_qs(urlsplit(page.context["back"]["href"]).query)
    assert (back["error"], back["state"], back["iss"]) == (["access_denied"], ["s1"], [ISSUER])
    assert "prompt=login" in page.context["sign_in_again"]
    event = SignInEvent.objects.filter(outcome="app_not_assigned").get()
    assert (event.user_id, event.application_id, event.channel) == (admin_user.pk, app.pk, "web")
    # prompt=none: no page, the application hears access_denied (with iss) at once.
    silent = client.get(authorize_query(app, prompt="none"))
    answer = parse_qs(urlsplit(silent["Location"]).query)
    assert silent.status_code == 302 and answer["error"] == ["access_denied"] and "code" not in answer
    assert answer["iss"] == [ISSUER]
    # Assigned directly now: the same session gets its code.
    app.assigned_users.add(admin_user)
    allowed = client.get(authorize_query(app, prompt="none"))
    assert "code" in parse_qs(urlsplit(allowed["Location"]).query)


@pages
def test_authorize_form_post_gives_the_refusal_as_a_form(admin_user):
    app, _ = application_register(tenant=admin_user.tenant, name="Payroll", public=True, redirect_uris=[REDIRECT])
    application_access_set(application=app, assignment_required=True)
    client = Client(REMOTE_ADDR="192.0.2.11")
    assert outcome(password_step(client, admin_user.upn)) == "success"
    page = client.get(authorize_query(app, response_mode="form_post"))
    assert page.status_code == 403
    back = page.context["back"]
    assert back["method"] == "post" and back["action"] == REDIRECT
    assert ("error", "access_denied") in back["fields"] and ("iss", ISSUER) in back["fields"]


def password_grant(app, secret: str, upn: str):
    basic = base64.b64encode(f"{app.client_id}:{secret}".encode()).decode()
    return Client(REMOTE_ADDR="192.0.2.20").post("/token/", {
        "grant_type": "password", "username": upn, "password": PASSWORD, "scope": "openid"},
        HTTP_AUTHORIZATION=f"Basic {basic}")


@pages
def test_the_password_grant_refuses_an_unassigned_user(admin_user):
    tenant_policy_set(tenant=admin_user.tenant, password_grant_enabled=True)
    app, secret = application_register(tenant=admin_user.tenant, name="Legacy", grant="password")
    application_access_set(application=app, assign_groups=["Legacy-Users"])
    refused = password_grant(app, secret, admin_user.upn)
    body = json.loads(refused.content)
    assert refused.status_code == 403 and (body["error"], body["outcome"]) == ("access_denied", "app_not_assigned")
    assert "Legacy-Users" not in refused.content.decode() and "access_token" not in body
    event = SignInEvent.objects.get(outcome="app_not_assigned")
    assert (event.channel, event.application_id, event.user_id) == ("oauth", app.pk, admin_user.pk)
    member(admin_user, group(admin_user.tenant, "legacy-users"))
    assert password_grant(app, secret, admin_user.upn).status_code == 200


def test_a_refresh_token_of_a_user_unassigned_since_is_refused(tenant_a, alice):
    app, secret = application_register(tenant=tenant_a, name="Wiki", redirect_uris=["https://wiki.alpha.test/cb"])
    staff = group(tenant_a, "Wiki-Users")
    member(alice, staff)
    application_access_set(application=app, assign_groups=["Wiki-Users"])

    def refresh(token: str):
        basic = base64.b64encode(f"{app.client_id}:{secret}".encode()).decode()
        return Client().post("/token/", {"grant_type": "refresh_token", "refresh_token": token},
                             HTTP_AUTHORIZATION=f"Basic {basic}")

    def refresh_token() -> str:
        access = AccessToken.objects.create(user=alice, application=app, token=uuid.uuid4().hex, scope="openid",
                                            expires=timezone.now() + timedelta(hours=1))
        return RefreshToken.objects.create(user=alice, application=app, token=uuid.uuid4().hex, access_token=access,
                                           token_family=uuid.uuid4()).token

    assert refresh(refresh_token()).status_code == 200
    DirectoryGroupMembership.objects.filter(user=alice).delete()  # a sign-in since reported her out of the group
    refused = refresh(refresh_token())
    assert refused.status_code == 400 and json.loads(refused.content)["error"] == "invalid_grant"


# --- the admin console -------------------------------------------------------------------------------------------

@pytest.fixture
def admin_a(client, tenant_a, tenant_admin_factory):
    client.force_login(tenant_admin_factory(tenant_a))
    return client


def change_form(app, **overrides) -> dict:
    from tests.applications.test_admin import add_form

    form = add_form(name=app.name, redirect_uris=app.redirect_uris, **{
        "pending_groups-TOTAL_FORMS": "1", "pending_groups-0-name": ""})
    form.update(overrides)
    return form


def test_the_picker_lists_only_the_tenants_own_groups_and_refuses_another_tenants(admin_a, wiki, tenant_a, tenant_b):
    ours, theirs = group(tenant_a, "Wiki-Users"), group(tenant_b, "Beta-Secret-Group")
    url = reverse("admin:applications_application_change", args=[wiki.pk])
    page = admin_a.get(url)
    text = page.content.decode()
    assert page.status_code == 200 and "Wiki-Users" in text and "Beta-Secret-Group" not in text
    assert 'name="assignment_required"' in text
    refused = admin_a.post(url, change_form(wiki, assignment_required="on", assigned_groups=[str(theirs.pk)]))
    assert refused.status_code == 200 and "assigned_groups" in refused.context["adminform"].form.errors
    assert not wiki.assigned_groups.exists()
    saved = admin_a.post(url, change_form(wiki, assignment_required="on", assigned_groups=[str(ours.pk)],
                                          **{"pending_groups-0-name": "Wiki-Editors"}))
    assert saved.status_code == 302, saved.context["adminform"].form.errors if saved.context else ""
    wiki.refresh_from_db()
    assert wiki.assignment_required and list(wiki.assigned_groups.all()) == [ours]
    assert list(wiki.pending_groups.values_list("name", flat=True)) == ["Wiki-Editors"]


def test_a_typed_name_of_a_known_group_is_that_group_at_once(admin_a, wiki, tenant_a):
    known = group(tenant_a, "Wiki-Users")
    url = reverse("admin:applications_application_change", args=[wiki.pk])
    saved = admin_a.post(url, change_form(wiki, assignment_required="on", **{"pending_groups-0-name": "wiki-users"}))
    assert saved.status_code == 302
    assert list(wiki.assigned_groups.all()) == [known] and not wiki.pending_groups.exists()


def test_the_user_autocomplete_lists_only_the_tenants_users(admin_a, wiki, tenant_a, tenant_b):
    User.objects.create_user("zed@alpha.example.test", tenant=tenant_a)
    stranger = User.objects.create_user("zed@beta.example.test", tenant=tenant_b)
    found = admin_a.get(reverse("admin:autocomplete"), {
        "term": "zed", "app_label": "applications", "model_name": "application", "field_name": "assigned_users"})
    assert found.status_code == 200
    names = [entry["text"] for entry in json.loads(found.content)["results"]]
    assert names == ["zed@alpha.example.test"]
    url = reverse("admin:applications_application_change", args=[wiki.pk])
    refused = admin_a.post(url, change_form(wiki, assignment_required="on", assigned_users=[str(stranger.pk)]))
    assert refused.status_code == 200 and "assigned_users" in refused.context["adminform"].form.errors


def test_a_platform_admin_cannot_assign_another_tenants_group(client, wiki, tenant_b, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root@platform.test", "x" * 16))
    theirs = group(tenant_b, "Beta-Staff")
    url = reverse("admin:applications_application_change", args=[wiki.pk])
    refused = client.post(url, change_form(wiki, tenant=str(wiki.tenant_id), assignment_required="on",
                                           assigned_groups=[str(theirs.pk)]))
    assert refused.status_code == 200 and "assigned_groups" in refused.context["adminform"].form.errors
