"""Registering a tenant's SAML service provider: by hand, or from the SP's metadata (validated, read with the
same bounds and refusals as requests). The SP is one of the tenant's applications (access rules, MFA, groups)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import defusedxml.ElementTree
from defusedxml import DefusedXmlException
from django.core.exceptions import ValidationError
from django.db import transaction
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT

from applications.models import Application
from applications.services import application_access_set, application_secret_issue
from samlidp.models import NAMEID_EMAIL, NAMEID_PERSISTENT, NAMEID_UNSPECIFIED, ServiceProvider
from samlidp.pem import certificate_pem
from tenant.models import Tenant

logger = logging.getLogger(__name__)

MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
MAX_METADATA_BYTES = 512 * 1024
NAMEID_BY_URI = {NAMEID_PERSISTENT: "persistent", NAMEID_EMAIL: "email", NAMEID_UNSPECIFIED: "upn"}


@dataclass
class SpMetadata:
    """What an SP's metadata says that the portal uses."""

    entity_id: str
    acs_urls: list[str] = field(default_factory=list)
    slo_url: str = ""
    signing_certificate: str = ""
    encryption_certificate: str = ""
    requests_signed: bool = False
    nameid: str | None = None


def sp_metadata_read(*, xml: bytes | str) -> SpMetadata:
    """An SP's EntityDescriptor, read: its entity ID, its HTTP-POST ACS URLs in index order, its SLO URL, its
    signing and encryption certificates, whether it signs its requests, its NameID format when it names one we
    offer. ValidationError, saying why, for anything else (too large, not XML, a DTD, not SP metadata)."""
    data = xml.encode() if isinstance(xml, str) else xml
    if len(data) > MAX_METADATA_BYTES:
        raise ValidationError(f"The metadata is larger than {MAX_METADATA_BYTES // 1024} KiB.")
    try:
        root = defusedxml.ElementTree.fromstring(data, forbid_dtd=True)
    except DefusedXmlException:
        raise ValidationError("The metadata holds a DTD or entity declarations, which are not allowed.") from None
    except Exception:
        raise ValidationError("The metadata is not well-formed XML.") from None
    if root.tag == f"{MD}EntitiesDescriptor":
        entities = root.findall(f"{MD}EntityDescriptor")
        if len(entities) != 1:
            raise ValidationError("The metadata describes several entities: give the one service provider's.")
        root = entities[0]
    if root.tag != f"{MD}EntityDescriptor" or not root.get("entityID"):
        raise ValidationError("This is not SAML metadata (an EntityDescriptor with an entityID).")
    sp = root.find(f"{MD}SPSSODescriptor")
    if sp is None:
        raise ValidationError("The metadata has no SPSSODescriptor: it does not describe a service provider.")
    found = SpMetadata(entity_id=root.get("entityID", "").strip(),
                       requests_signed=sp.get("AuthnRequestsSigned", "false").lower() in ("true", "1"))
    acs_posts = [acs for acs in sp.findall(f"{MD}AssertionConsumerService") if acs.get("Binding") == BINDING_HTTP_POST]
    if any(not (acs.get("index") or "0").isdigit() for acs in acs_posts):
        raise ValidationError("An AssertionConsumerService's index is not a number.")
    services = [(int(acs.get("index") or "0"), acs.get("Location", "").strip()) for acs in acs_posts]
    found.acs_urls = [url for _, url in sorted(services, key=lambda pair: pair[0]) if url]
    if not found.acs_urls:
        raise ValidationError("The metadata names no AssertionConsumerService for the HTTP-POST binding.")
    for slo in sp.findall(f"{MD}SingleLogoutService"):
        if slo.get("Binding") in (BINDING_HTTP_REDIRECT, BINDING_HTTP_POST) and slo.get("Location"):
            found.slo_url = slo.get("Location", "").strip()
            break
    for descriptor in sp.findall(f"{MD}KeyDescriptor"):
        text = descriptor.findtext(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate") or ""
        if not text.strip():
            continue
        try:
            pem = certificate_pem(text)
        except ValueError as exc:
            raise ValidationError(f"A certificate in the metadata does not load: {exc}") from None
        use = descriptor.get("use", "")
        if use in ("", "signing") and not found.signing_certificate:
            found.signing_certificate = pem
        if use in ("", "encryption") and not found.encryption_certificate:
            found.encryption_certificate = pem
    for nameid in sp.findall(f"{MD}NameIDFormat"):
        if (nameid.text or "").strip() in NAMEID_BY_URI:
            found.nameid = NAMEID_BY_URI[(nameid.text or "").strip()]
            break
    return found


@transaction.atomic
def service_provider_register(*, tenant: Tenant, name: str, entity_id: str, acs_urls: Iterable[str],
                              slo_url: str = "", nameid: str = "persistent", signing_certificate: str = "",
                              encryption_certificate: str = "", requests_signed: bool = False,
                              sign_response: bool = False, allow_idp_initiated: bool = False,
                              send_groups: bool = False, require_mfa: bool = False,
                              assign_groups: Iterable[str] = ()) -> ServiceProvider:
    """A tenant's SAML SP and the application that carries its access rules. The application has no redirect URI
    and a client secret nobody is shown: nothing can be had from it through OpenID Connect or OAuth."""
    entity_id = entity_id.strip()
    if not entity_id or len(entity_id) > 1024:
        raise ValidationError({"entity_id": ["An entity ID of 1 to 1024 characters."]})
    if ServiceProvider.objects.filter(application__tenant=tenant, entity_id=entity_id).exists():
        raise ValidationError({"entity_id": [f"{entity_id} is registered already for this organisation."]})
    application = Application(tenant=tenant, name=name.strip(), redirect_uris="", post_logout_redirect_uris="",
                              client_type=Application.CLIENT_CONFIDENTIAL,
                              authorization_grant_type=Application.GRANT_PASSWORD,
                              algorithm=Application.RS256_ALGORITHM, skip_authorization=True, require_mfa=require_mfa)
    application_secret_issue(application=application)  # never shown: the SP never uses the OAuth side
    application.full_clean()
    application.save()
    sp = ServiceProvider(application=application, entity_id=entity_id, acs_urls="\n".join(acs_urls),
                         slo_url=slo_url, nameid_format=nameid,
                         signing_certificate=_pem("signing_certificate", signing_certificate),
                         encryption_certificate=_pem("encryption_certificate", encryption_certificate),
                         requests_signed=requests_signed, sign_response=sign_response,
                         allow_idp_initiated=allow_idp_initiated, send_groups=send_groups)
    sp.full_clean()
    sp.save()
    assign_groups = list(assign_groups)
    if assign_groups:
        application_access_set(application=application, assign_groups=assign_groups)
    logger.info("SAML service provider %s (%s) registered for tenant %s", entity_id, application.name, tenant.slug)
    return sp


def _pem(field: str, text: str) -> str:
    if not text.strip():
        return ""
    try:
        return certificate_pem(text)
    except ValueError as exc:
        raise ValidationError({field: [f"Not a certificate: {exc}"]}) from None
