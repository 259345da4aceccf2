"""The IdP against OneLogin's SP (strict mode) through Django's test client, with a session signed in as a
directory user would be (the whole way through the pages, a DC and an agent: tests/integration/test_saml.py).

Checked: the metadata (signed, validUntil, both bindings, cacheable); both bindings; the response validated by the
SP; the persistent NameID stable and pairwise; attributes; RelayState; IsPassive; ForceAuthn; and the refusals:
unregistered issuer or ACS, unsigned request for a signing SP, replay, stale, hostile input."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from samlidp.services.idp import idp_entity_id
from samlidp.services.registration import service_provider_register
from signin.services.authentication import AUTHENTICATED_AT_KEY
from tenant.models import User
from tests.samlidp.onelogin_sp import OneLoginSP

ACS = "https://sp.alpha.example.test/acs/"
pytestmark = pytest.mark.django_db


@pytest.fixture
def idp(tenant_a):
    client = Client()
    metadata = client.get(f"/saml/{tenant_a.slug}/metadata/")
    assert metadata.status_code == 200
    return {"tenant": tenant_a, "metadata": metadata.content.decode()}


def make_sp(idp, entity_id="https://sp.alpha.example.test/", sign=True, **options) -> OneLoginSP:
    sp = OneLoginSP(entity_id=entity_id, acs_url=options.pop("acs_url", ACS), idp_metadata_xml=idp["metadata"],
                    sign_requests=sign)
    service_provider_register(tenant=idp["tenant"], name=options.pop("name", "Wiki"), entity_id=entity_id,
                              acs_urls=[sp.acs_url], requests_signed=sign,
                              signing_certificate=sp.certificate if sign else "", **options)
    return sp


def signed_in(tenant, upn="ada@alpha.example.test") -> Client:
    user = User.objects.filter(upn=upn).first() or User.objects.create_user(
        upn, None, tenant=tenant, display_name="Ada Lovelace", email=upn)
    client = Client()
    client.force_login(user)
    session = client.session
    session[AUTHENTICATED_AT_KEY] = time.time() - 30
    session.save()
    return client


def response_form(answer) -> dict:
    assert answer.status_code == 200, answer.content[:500]
    text = answer.content.decode()
    fields = dict(re.findall(r'name="(SAMLResponse|RelayState)" value="([^"]*)"', text))
    action = re.search(r'<form method="post" action="([^"]+)"', text)
    assert action, text[:500]
    fields["action"] = action.group(1)
    return fields


def redirect_sso(client: Client, url: str):
    parts = urlsplit(url)
    return client.get(parts.path, parse_qs(parts.query))


def test_metadata_is_signed_and_names_both_bindings(idp):
    xml = idp["metadata"]
    assert f'entityID="{idp_entity_id(tenant=idp["tenant"])}"' in xml
    assert "validUntil=" in xml and 'cacheDuration="PT3600S"' in xml
    idp_cert = OneLogin_Saml2_IdPMetadataParser.parse(xml)["idp"]["x509cert"]
    assert OneLogin_Saml2_Utils.validate_metadata_sign(xml, OneLogin_Saml2_Utils.format_cert(idp_cert),
                                                       raise_exceptions=True)
    assert "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" in xml and "HTTP-POST" in xml
    assert "nameid-format:persistent" in xml and "SingleLogoutService" in xml


def test_redirect_binding_signed_request_gets_an_assertion_the_sp_accepts(idp):
    sp = make_sp(idp)
    client = signed_in(idp["tenant"])
    url, request_id = sp.redirect_url(relay_state="https://sp.alpha.example.test/after?x=1&y=2")
    form = response_form(redirect_sso(client, url))
    assert form["action"] == ACS
    assert form["RelayState"] == "https://sp.alpha.example.test/after?x=1&amp;y=2"
    auth = sp.process(form["SAMLResponse"], request_id)
    assert auth.get_nameid_format().endswith(":persistent")
    assert auth.get_attribute("urn:oid:1.2.840.113556.1.4.656") == ["ada@alpha.example.test"]
    assert auth.get_friendlyname_attribute("email") == ["ada@alpha.example.test"]
