"""The console's SAML service providers: a tenant administrator registers one from pasted metadata (validated) or by
hand, in their own tenant only, and never sees another tenant's."""

from __future__ import annotations

import pytest
from django.urls import reverse

from samlidp.models import ServiceProvider
from samlidp.services.idp import sp_metadata_xml
from samlidp.services.registration import service_provider_register
from tests.samlidp.onelogin_sp import key_and_certificate

pytestmark = pytest.mark.django_db
ADD = "admin:samlidp_serviceprovider_add"


@pytest.fixture
def admin_a_client(client, tenant_a, tenant_admin_factory):
    client.force_login(tenant_admin_factory(tenant_a))
    return client


def form(**overrides) -> dict:
    return {"name": "Wiki", "entity_id": "", "acs_urls": "", "slo_url": "", "nameid_format": "persistent",
            "signing_certificate": "", "encryption_certificate": "", "metadata_xml": "", **overrides}


def errors(response) -> dict:
    return response.context["adminform"].form.errors if response.context else {}


def test_a_tenant_admin_registers_an_sp_from_pasted_metadata_in_their_tenant(admin_a_client, tenant_a, tenant_b):
    certificate = key_and_certificate("https://wiki.alpha.test/")[1]
    metadata = sp_metadata_xml(sp=ServiceProvider(
        entity_id="https://wiki.alpha.test/", requests_signed=True, acs_urls="https://wiki.alpha.test/acs",
        signing_certificate=certificate))
    page = admin_a_client.get(reverse(ADD))
    assert page.status_code == 200 and "tenant" not in page.context["adminform"].form.fields
    response = admin_a_client.post(reverse(ADD), form(metadata_xml=metadata, tenant=str(tenant_b.pk)))
    assert response.status_code == 302, errors(response)
    sp = ServiceProvider.objects.get(entity_id="https://wiki.alpha.test/")
    assert sp.application.tenant == tenant_a and sp.requests_signed and sp.acs_url_list() == [
        "https://wiki.alpha.test/acs"]
    change = admin_a_client.get(reverse("admin:samlidp_serviceprovider_change", args=[sp.pk]))
    assert change.status_code == 200 and f"/saml/{tenant_a.slug}/metadata/" in change.content.decode()
    again = admin_a_client.post(reverse(ADD), form(metadata_xml=metadata))
    assert "registered already" in str(errors(again)["entity_id"])


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"metadata_xml": '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'}, "metadata_xml",
     "DTD or entity"),
    ({"entity_id": "urn:x", "acs_urls": "http://evil.example.test/acs"}, "acs_urls", "loopback only"),
    ({"entity_id": "urn:x", "acs_urls": "https://a.test/acs", "requests_signed": "on"}, "signing_certificate",
     "signing certificate"),
])
def test_bad_registrations_are_shown_on_the_form(admin_a_client, fields, field, words):
    response = admin_a_client.post(reverse(ADD), form(**fields))
    assert response.status_code == 200 and words in str(errors(response).get(field)), errors(response)
    assert not ServiceProvider.objects.exists()


def test_another_tenants_sp_is_not_there(admin_a_client, tenant_b):
    other = service_provider_register(tenant=tenant_b, name="Theirs", entity_id="urn:theirs",
                                      acs_urls=["https://b.test/acs"])
    assert "urn:theirs" not in admin_a_client.get(reverse("admin:samlidp_serviceprovider_changelist")).content.decode()
    assert admin_a_client.get(reverse("admin:samlidp_serviceprovider_change", args=[other.pk])).status_code == 404


def test_a_tenant_admin_registers_an_sp_from_an_uploaded_metadata_file_or_by_hand(admin_a_client, tenant_a):
    from django.core.files.uploadedfile import SimpleUploadedFile

    certificate = key_and_certificate("https://crm.alpha.test/")[1]
    metadata = sp_metadata_xml(sp=ServiceProvider(
        entity_id="https://crm.alpha.test/", acs_urls="https://crm.alpha.test/acs\nhttps://crm.alpha.test/acs2",
        slo_url="https://crm.alpha.test/slo", encryption_certificate=certificate))
    hostile = SimpleUploadedFile("sp.xml", b'<!DOCTYPE x [<!ENTITY e "e">]><x>&e;</x>', "text/xml")
    response = admin_a_client.post(reverse(ADD), {**form(), "metadata_file": hostile})
    assert response.status_code == 200 and "DTD or entity" in str(errors(response)["metadata_xml"])
    upload = SimpleUploadedFile("sp.xml", metadata.encode(), "text/xml")
    response = admin_a_client.post(reverse(ADD), {**form(name="CRM"), "metadata_file": upload})
    assert response.status_code == 302, errors(response)
    crm = ServiceProvider.objects.get(entity_id="https://crm.alpha.test/")
    assert crm.acs_url_list() == ["https://crm.alpha.test/acs", "https://crm.alpha.test/acs2"]
    assert crm.slo_url == "https://crm.alpha.test/slo" and "BEGIN CERTIFICATE" in crm.encryption_certificate
    assert crm.application.tenant == tenant_a and crm.application.name == "CRM"

    response = admin_a_client.post(reverse(ADD), form(name="Wiki", entity_id="urn:wiki", nameid_format="email",
                                                      acs_urls="https://wiki.alpha.test/acs"))
    assert response.status_code == 302, errors(response)
    wiki = ServiceProvider.objects.get(entity_id="urn:wiki")
    assert wiki.nameid_format == "email" and wiki.application.tenant == tenant_a and not wiki.requests_signed
