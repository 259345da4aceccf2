"""A tenant administrator sees and edits only their own tenant's objects, whichever way they ask."""

import pytest
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from agents.services.registration import registration_token_issue
from health.models import Incident
from health.services.alert_settings import alert_settings_set
from signin.models import PasskeyDevice
from tenant.models import Location, User
from tenant.services import location_set


@pytest.fixture
def two_tenants(tenant_a, tenant_b, tenant_admin_factory, agent_factory):
    objects = {}
    for label, tenant in (("a", tenant_a), ("b", tenant_b)):
        agent, _ = agent_factory(tenant, name=f"agent-{label}")
        token, _ = registration_token_issue(tenant=tenant)
        user = User.objects.create_user(f"user@{tenant.domains.first().name}", tenant=tenant)
        objects[label] = {
            "tenant": tenant, "domain": tenant.domains.first(), "user": user, "agent": agent,
            "registrationtoken": token,
            "alertsettings": alert_settings_set(tenant=tenant, emails=[f"ops@{tenant.domains.first().name}"]),
            "incident": Incident.objects.create(tenant=tenant, kind=Incident.Kind.FAILOVER_LOST,
                                                summary=f"{tenant.name} lost failover"),
            "location": location_set(tenant=tenant, name=f"office-{label}", ranges=["192.0.2.0/24"],
                                     kind=Location.Kind.TRUSTED),
            # A user's second factors: scoped through the user (FactorAdmin's tenant_path).
            "totpdevice": TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True),
            "passkeydevice": PasskeyDevice.objects.create(user=user, name=f"Key {label}", confirmed=True,
                                                          credential_id=f"cred-{label}", public_key=b"\xa0"),
        }
    objects["admin_a"] = tenant_admin_factory(tenant_a)
    return objects


MODELS = [("tenant", "tenant"), ("tenant", "domain"), ("tenant", "user"), ("tenant", "location"), ("agents", "agent"),
          ("agents", "registrationtoken"), ("health", "alertsettings"), ("health", "incident"),
          ("otp_totp", "totpdevice"), ("signin", "passkeydevice")]


@pytest.fixture
def admin_a_client(client, two_tenants):
    client.force_login(two_tenants["admin_a"])
    return client


@pytest.mark.parametrize("app,model", MODELS)
def test_changelist_lists_only_own_tenant(admin_a_client, two_tenants, app, model):
    response = admin_a_client.get(reverse(f"admin:{app}_{model}_changelist"))
    assert response.status_code == 200
    listed = set(response.context["cl"].result_list)
    assert two_tenants["a"][model] in listed
    assert two_tenants["b"][model] not in listed


@pytest.mark.parametrize("view", ["change", "history", "delete"])
@pytest.mark.parametrize("app,model", MODELS)
def test_other_tenants_object_urls_are_not_found(admin_a_client, two_tenants, app, model, view):
    other = two_tenants["b"][model]
    response = admin_a_client.get(reverse(f"admin:{app}_{model}_{view}", args=[other.pk]))
    assert response.status_code in (403, 404)
    own = two_tenants["a"][model]
    own_response = admin_a_client.get(reverse(f"admin:{app}_{model}_change", args=[own.pk]))
    assert own_response.status_code == 200


@pytest.mark.parametrize("app,model", [("tenant", "domain"), ("tenant", "user"), ("agents", "agent")])
def test_search_does_not_reveal_other_tenant(admin_a_client, two_tenants, app, model):
    response = admin_a_client.get(reverse(f"admin:{app}_{model}_changelist"), {"q": "b"})
    assert two_tenants["b"][model] not in set(response.context["cl"].result_list)


def test_agent_domain_choices_are_scoped(admin_a_client, two_tenants):
    agent = two_tenants["a"]["agent"]
    response = admin_a_client.get(reverse("admin:agents_agent_change", args=[agent.pk]))
    choices = set(response.context["adminform"].form.fields["domains"].queryset)
    assert two_tenants["a"]["domain"] in choices
    assert two_tenants["b"]["domain"] not in choices


def test_tenant_admin_cannot_post_to_other_tenants_domain(admin_a_client, two_tenants):
    other = two_tenants["b"]["domain"]
    response = admin_a_client.post(reverse("admin:tenant_domain_change", args=[other.pk]), {"name": "stolen.test"})
    assert response.status_code in (403, 404)
    other.refresh_from_db()
    assert other.name == "beta.example.test"


def test_user_added_by_tenant_admin_lands_in_their_tenant(admin_a_client, two_tenants):
    response = admin_a_client.post(reverse("admin:tenant_user_add"), {
        "upn": "new.person@alpha.example.test", "source": "on-premises", "display_name": "New Person",
        "usable_password": "false",
    })
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    created = User.objects.get(upn="new.person@alpha.example.test")
    assert created.tenant == two_tenants["a"]["tenant"]
    assert not created.is_superuser


def test_tenant_admin_cannot_grant_platform_rights(admin_a_client, two_tenants):
    user = two_tenants["a"]["user"]
    response = admin_a_client.get(reverse("admin:tenant_user_change", args=[user.pk]))
    form_fields = response.context["adminform"].form.fields
    assert "is_superuser" not in form_fields
    assert "tenant" not in form_fields
    assert "user_permissions" not in form_fields


def test_autocomplete_is_scoped(admin_a_client, two_tenants):
    response = admin_a_client.get(reverse("admin:autocomplete"), {
        "app_label": "agents", "model_name": "agent", "field_name": "domains", "term": "example",
    })
    assert response.status_code == 200
    names = {row["text"] for row in response.json()["results"]}
    assert names == {"alpha.example.test"}


def test_platform_admin_sees_everything(client, two_tenants):
    root = User.objects.create_superuser("root@platform.test", "R00t-pa55-for-tests")
    client.force_login(root)
    for app, model in MODELS:
        response = client.get(reverse(f"admin:{app}_{model}_changelist"))
        listed = set(response.context["cl"].result_list)
        assert {two_tenants["a"][model], two_tenants["b"][model]} <= listed


def test_list_filters_do_not_name_other_tenants_objects(admin_a_client, two_tenants):
    response = admin_a_client.get(reverse("admin:agents_agent_changelist"))
    assert "Beta Corp" not in response.content.decode()
    from signin.models import SignInEvent

    SignInEvent.objects.create(tenant=two_tenants["b"]["tenant"], username="x@beta.example.test",
                               outcome="success", agent=two_tenants["b"]["agent"], user=two_tenants["b"]["user"])
    SignInEvent.objects.create(tenant=two_tenants["a"]["tenant"], username="y@alpha.example.test",
                               outcome="success", agent=two_tenants["a"]["agent"], user=two_tenants["a"]["user"])
    page = admin_a_client.get(reverse("admin:signin_signinevent_changelist")).content.decode()
    assert "agent-a" in page and "user@alpha.example.test" in page
    assert "agent-b" not in page and "user@beta.example.test" not in page and "x@beta" not in page
