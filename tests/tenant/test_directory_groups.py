"""A user's directory groups as the portal stores them (tenant/services.py, user_groups_record): replaced at each
sign-in, kept by objectGUID per tenant, none kept when the agent gave none (and the reason shown in the console);
the claims an application gets from them (signin/services/group_claims.py)."""

import uuid
from typing import cast

import pytest
from django.urls import reverse
from django.utils.html import escape

from applications.models import Application
from applications.services import application_register
from signin.services.group_claims import groups_claim_values, groups_claims
from signin.services.users import user_groups_sync
from tenant.models import DirectoryGroup, GroupsState, User
from tenant.selectors import user_group_names, user_groups_complete, user_in_group
from tenant.services import user_groups_record

pytestmark = pytest.mark.django_db


def group(name: str, guid: str | None = None) -> dict:
    return {"id": guid or str(uuid.uuid4()), "name": name, "dn": f"CN={name},CN=Users,DC=alpha,DC=test"}


@pytest.fixture
def ada(tenant_a):
    return User.objects.create_user("ada@alpha.example.test", tenant=tenant_a, source=User.Source.ON_PREMISES,
                                    immutable_id="guid-ada", display_name="Ada")


def test_each_sign_in_replaces_the_groups_and_a_removed_group_is_gone(ada):
    sales, staff, admins = group("Sales"), group("Staff"), group("Admins")
    user_groups_record(user=ada, state=GroupsState.CURRENT, groups=[sales, staff])
    assert user_group_names(user=ada) == ["Sales", "Staff"] and user_groups_complete(user=ada)
    user_groups_record(user=ada, state=GroupsState.CURRENT, groups=[staff, admins])
    assert user_group_names(user=ada) == ["Admins", "Staff"]
    removed = DirectoryGroup.objects.get(object_guid=sales["id"])
    assert not user_in_group(user=ada, group=removed)
    assert user_in_group(user=ada, group=DirectoryGroup.objects.get(object_guid=admins["id"]))


def test_an_unchanged_set_costs_one_query_and_a_renamed_group_keeps_its_identity(ada, django_assert_num_queries):
    sales = group("Sales")
    user_groups_record(user=ada, state=GroupsState.CURRENT, groups=[sales])
    with django_assert_num_queries(1):
        user_groups_record(user=ada, state=GroupsState.CURRENT, groups=[sales])
    user_groups_record(user=ada, state=GroupsState.CURRENT, groups=[{**sales, "name": "Sales-EU"}])
    assert DirectoryGroup.objects.filter(object_guid=sales["id"]).count() == 1
    assert user_group_names(user=ada) == ["Sales-EU"]


def test_an_agent_that_gives_no_groups_leaves_none_stored_and_says_why(ada):
    user_groups_record(user=ada, state=GroupsState.CURRENT, groups=[group("Sales")])
    user_groups_sync(user=ada, groups=None, truncated=False, asked=False)  # an older agent answered
    ada.refresh_from_db()
    assert ada.groups_state == GroupsState.AGENT_UNSUPPORTED and user_group_names(user=ada) == []
    user_groups_sync(user=ada, groups=None, truncated=False, asked=True)  # asked, and it could not read them
    ada.refresh_from_db()
    assert ada.groups_state == GroupsState.FAILED
    user_groups_sync(user=ada, groups=[group("Staff")], truncated=True, asked=True)
    ada.refresh_from_db()
    assert ada.groups_state == GroupsState.TRUNCATED and not user_groups_complete(user=ada)


def test_groups_are_the_tenants_own_even_with_the_same_guid(ada, tenant_b):
    bob = User.objects.create_user("bob@beta.example.test", tenant=tenant_b, source=User.Source.ON_PREMISES)
    shared = group("Sales")
    user_groups_record(user=ada, state=GroupsState.CURRENT, groups=[shared])
    user_groups_record(user=bob, state=GroupsState.CURRENT, groups=[{**shared, "name": "Other"}])
    assert user_group_names(user=ada) == ["Sales"] and user_group_names(user=bob) == ["Other"]
    assert not user_in_group(user=bob, group=DirectoryGroup.objects.get(tenant=ada.tenant, object_guid=shared["id"]))


# --- the console -------------------------------------------------------------------------------------------

def test_the_user_page_lists_the_groups_read_only(client, tenant_a, tenant_admin_factory, ada):
    user_groups_record(user=ada, state=GroupsState.CURRENT, groups=[group("Sales"), group("Staff")])
    client.force_login(tenant_admin_factory(tenant_a))
    page = client.get(reverse("admin:tenant_user_change", args=[ada.pk])).content.decode()
    assert "Directory groups" in page and "CN=Sales,CN=Users,DC=alpha,DC=test" in page
    assert escape(GroupsState.CURRENT.label) in page
    assert 'name="groups_state"' not in page, "read-only: nothing to post"


def test_the_user_page_says_why_an_older_agents_user_has_no_groups(client, tenant_a, tenant_admin_factory, ada):
    user_groups_sync(user=ada, groups=None, truncated=False, asked=False)
    client.force_login(tenant_admin_factory(tenant_a))
    page = client.get(reverse("admin:tenant_user_change", args=[ada.pk])).content.decode()
    assert "does not read groups (an older pta-agent, or directory.groups = false)" in page


# --- the claims ----------------------------------------------------------------------------------------------

def test_the_claim_gives_way_to_the_overage_marker_beyond_the_limit_or_when_incomplete():
    assert groups_claim_values(values=["a", "b"], complete=True, limit=2) == {"groups": ["a", "b"]}
    assert groups_claim_values(values=["a", "b", "c"], complete=True, limit=2) == {"groups_overage": True}
    assert groups_claim_values(values=["a"], complete=False, limit=200) == {"groups_overage": True}
    assert groups_claim_values(values=[], complete=True, limit=200) == {}


def test_each_application_chooses_names_or_ids_all_or_assigned(ada, tenant_a):
    sales = group("Sales")
    user_groups_record(user=ada, state=GroupsState.CURRENT, groups=[sales, group("Staff")])
    app, _ = application_register(tenant=tenant_a, name="App", redirect_uris=["https://app.example.test/cb"])
    assert groups_claims(user=ada, application=app) == {"groups": ["Sales", "Staff"]}
    app.groups_claim_format = Application.GroupsFormat.ID
    assert sales["id"] in cast(list, groups_claims(user=ada, application=app)["groups"])
    app.groups_claim_limit = 1
    assert groups_claims(user=ada, application=app) == {"groups_overage": True}
    app.groups_claim = Application.GroupsClaim.ASSIGNED  # no assignments yet: nothing
    assert groups_claims(user=ada, application=app) == {}
    user_groups_sync(user=ada, groups=None, truncated=False, asked=False)
    app.groups_claim = Application.GroupsClaim.ALL
    assert groups_claims(user=ada, application=app) == {}, "unknown groups are no claim, not an empty list"
