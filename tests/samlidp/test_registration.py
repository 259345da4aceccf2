"""Registering a SAML SP (app_register --saml, from metadata or by hand), its access settings through app_access,
and the signing key's rotation: the next certificate is in the metadata before it signs."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client

from samlidp.models import ServiceProvider, SigningKey
from samlidp.services.idp import sp_metadata_xml
from samlidp.services.keys import signing_key_active
from samlidp.services.registration import sp_metadata_read
from tests.samlidp.onelogin_sp import OneLoginSP, key_and_certificate

pytestmark = pytest.mark.django_db


def run(command: str, *args) -> dict[str, str]:
    out = io.StringIO()
    call_command(command, *args, stdout=out, stderr=io.StringIO())
    return dict(line.split("=", 1) for line in out.getvalue().splitlines() if "=" in line)


def test_app_register_saml_from_metadata_and_by_hand(tenant_a, tmp_path):
    sp = OneLoginSP(entity_id="https://wiki.alpha.test/", acs_url="https://wiki.alpha.test/acs/",
                    idp_metadata_xml=Client().get(f"/saml/{tenant_a.slug}/metadata/").content.decode())
    metadata = tmp_path / "sp.xml"
    written = sp.settings().get_sp_metadata()  # OneLogin's own metadata of the SP
    metadata.write_bytes(written if isinstance(written, bytes) else written.encode())
    printed = run("app_register", "--tenant", tenant_a.slug, "--name", "Wiki", "--saml", "--metadata-file",
                  str(metadata), "--require-mfa", "on")
    assert printed["saml_metadata_url"].endswith(f"/saml/{tenant_a.slug}/metadata/")
    assert printed["saml_sso_url"].endswith(f"/saml/{tenant_a.slug}/sso/")
    registered = ServiceProvider.objects.get(entity_id="https://wiki.alpha.test/")
    assert registered.acs_url_list() == ["https://wiki.alpha.test/acs/"]
    assert registered.requests_signed and "BEGIN CERTIFICATE" in registered.signing_certificate
    assert registered.application.tenant == tenant_a and registered.application.require_mfa
    # Access settings by entity ID.
    assert run("app_access", "https://wiki.alpha.test/", "--assign-group", "Wiki-Users")["assignment_required"] == "on"

    by_hand = run("app_register", "--tenant", tenant_a.slug, "--name", "CRM", "--saml", "--entity-id", "urn:crm",
                  "--acs-url", "https://crm.alpha.test/saml/acs", "--acs-url", "https://crm.alpha.test/saml/acs2",
                  "--nameid", "upn", "--slo-url", "https://crm.alpha.test/saml/slo")
    crm = ServiceProvider.objects.get(entity_id="urn:crm")
    assert crm.nameid_format == "upn" and len(crm.acs_url_list()) == 2 and not crm.requests_signed
    assert by_hand["saml_sso_url"] == printed["saml_sso_url"]
    assert crm.application.redirect_uris == ""  # nothing for it through OpenID Connect


@pytest.mark.parametrize(("args", "words"), [
    (["--entity-id", "urn:x", "--acs-url", "http://sp.example.test/acs"], "http:// is for loopback only"),
    (["--entity-id", "urn:x", "--acs-url", "javascript:alert(1)"], "an absolute https:// URL"),
    (["--entity-id", "urn:x"], "needs --entity-id and --acs-url"),
])
def test_app_register_saml_refuses_what_would_send_assertions_astray(tenant_a, args, words):
    with pytest.raises(CommandError, match=words):
        call_command("app_register", "--tenant", tenant_a.slug, "--name", "X", "--saml", *args,
                     stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.parametrize(("xml", "words"), [
    ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>', "DTD or entity"),
    ("<md:EntityDescriptor", "not well-formed"),
    ('<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="urn:a"/>', "no SPSSODescriptor"),
    ("<a/>" + " " * (600 * 1024), "larger than"),
    ('<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="urn:a"><SPSSODescriptor>'
     '<AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" index="x" '
     'Location="https://a.test/acs"/></SPSSODescriptor></EntityDescriptor>', "index is not a number"),
])
def test_metadata_is_validated(xml, words):
    with pytest.raises(ValidationError, match=words):
        sp_metadata_read(xml=xml)


def test_metadata_written_for_an_sp_reads_back(tenant_a):
    sp = ServiceProvider(entity_id="urn:a&b", acs_urls="https://a.test/acs\nhttps://a.test/acs2",
                         slo_url="https://a.test/slo", requests_signed=True,
                         signing_certificate=key_and_certificate("a")[1])
    found = sp_metadata_read(xml=sp_metadata_xml(sp=sp))
    assert (found.entity_id, found.acs_urls, found.slo_url, found.requests_signed) == (
        "urn:a&b", ["https://a.test/acs", "https://a.test/acs2"], "https://a.test/slo", True)


def test_the_next_key_is_published_before_it_signs_then_signs(tenant_a):
    first = signing_key_active(tenant=tenant_a)
    client = Client()

    def published() -> str:
        return client.get(f"/saml/{tenant_a.slug}/metadata/").content.decode()

    def body(pem: str) -> str:
        return "".join(pem.strip().splitlines()[1:-1])

    assert run("saml_key_rotate", tenant_a.slug, "--stage")
    staged = SigningKey.objects.get(tenant=tenant_a, state="next")
    assert body(staged.certificate_pem)[:60] in published() and body(first.certificate_pem)[:60] in published()
    assert signing_key_active(tenant=tenant_a) == first  # published, not signing
    call_command("saml_key_rotate", tenant_a.slug, "--promote", stdout=io.StringIO())
    assert signing_key_active(tenant=tenant_a) == staged
    first.refresh_from_db()
    assert first.state == "retired" and body(first.certificate_pem)[:60] in published()  # still trusted a while
    with pytest.raises(CommandError, match="No next key"):
        call_command("saml_key_rotate", tenant_a.slug, "--promote", stdout=io.StringIO())


def test_the_signing_key_is_encrypted_at_rest_and_bound_to_its_tenant(tenant_a, tenant_b):
    from cryptography.exceptions import InvalidTag

    from samlidp.services.keys import signing_key_files

    key = signing_key_active(tenant=tenant_a)
    assert b"PRIVATE KEY" not in bytes(key.private_key_encrypted)
    moved = signing_key_active(tenant=tenant_b)
    moved.private_key_encrypted = key.private_key_encrypted
    with pytest.raises(InvalidTag), signing_key_files(key=moved):
        pass
