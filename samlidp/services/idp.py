"""The tenant's identity provider through pysaml2: its configuration, its metadata, reading an SP's request and
writing the response. pysaml2 (with Debian's xmlsec1) does the XML, the signatures and the bindings; what it
does not check is checked here before or after it (``services/requests.py``).

pysaml2 is configured per answer, from the database: the tenant's keys and the ONE service provider concerned (its
metadata written from its registration, so nothing else can be trusted by accident)."""

from __future__ import annotations

import datetime
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from tempfile import NamedTemporaryFile
from xml.sax.saxutils import escape, quoteattr

from django.conf import settings
from django.core.cache import cache
from django.urls import reverse
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, class_name, saml, samlp
from saml2.assertion import Policy
from saml2.attribute_converter import AttributeConverter
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor, sign_entity_descriptor
from saml2.saml import NAME_FORMAT_URI
from saml2.server import Server
from saml2.sigver import pre_encryption_part, pre_signature_part, security_context
from saml2.time_util import instant
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

from samlidp.models import NAMEID_EMAIL, NAMEID_PERSISTENT, NAMEID_UNSPECIFIED, ServiceProvider
from samlidp.pem import certificate_base64
from samlidp.services.keys import signing_key_active, signing_key_files, signing_keys_published
from tenant.models import Tenant

# An assertion's conditions: NotBefore this far back (the SP's clock may be behind ours), NotOnOrAfter this far on.
CLOCK_SKEW_SECONDS = 60
ASSERTION_SECONDS = 300
# The metadata: signed, valid this long (validUntil), to be read again after cacheDuration.
METADATA_VALID_HOURS = 24 * 7
METADATA_CACHE_SECONDS = 3600
NAMEID_FORMATS = {"persistent": NAMEID_PERSISTENT, "email": NAMEID_EMAIL, "upn": NAMEID_UNSPECIFIED}
# The attributes: a URI name each (the directory attribute's OID, or the usual claim URI) and a friendly name.
ATTRIBUTES = {
    "upn": "urn:oid:1.2.840.113556.1.4.656",
    "email": "urn:oid:0.9.2342.19200300.100.1.3",
    "name": "urn:oid:2.16.840.1.113730.3.1.241",
    "groups": "http://schemas.xmlsoap.org/claims/Group",
    # RFC 8176's methods of the session's sign-in (pwd, otp, hwk, swk, mfa), under the name Entra ID uses for them.
    "amr": "http://schemas.microsoft.com/claims/authnmethodsreferences",
}
# The AuthnStatement's AuthnContextClassRef: the password alone, or the password and a second factor (a TOTP code,
# a recovery code or a passkey). A passkey gets the same class: the "amr" attribute says which factor it was.
CONTEXT_PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
CONTEXT_MFA = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract"


def xmlsec_binary() -> str:
    found = shutil.which("xmlsec1")
    if found is None:
        raise RuntimeError("xmlsec1 is not installed (Debian package xmlsec1): SAML needs it to sign.")
    return found


def idp_entity_id(*, tenant: Tenant) -> str:
    return settings.PTA_PUBLIC_URL.rstrip("/") + reverse("samlidp:metadata", args=[tenant.slug])


def idp_sso_url(*, tenant: Tenant) -> str:
    return settings.PTA_PUBLIC_URL.rstrip("/") + reverse("samlidp:sso", args=[tenant.slug])


def idp_slo_url(*, tenant: Tenant) -> str:
    return settings.PTA_PUBLIC_URL.rstrip("/") + reverse("samlidp:slo", args=[tenant.slug])


def sp_metadata_xml(*, sp: ServiceProvider) -> str:
    """The SP as registered, written as SAML metadata for pysaml2: what it trusts of the SP is exactly this."""
    keys = ""
    if sp.signing_certificate:
        keys += _key_descriptor("signing", sp.signing_certificate)
    if sp.encryption_certificate:
        keys += _key_descriptor("encryption", sp.encryption_certificate)
    acs = "".join(
        f'<md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" Location={quoteattr(url)} index="{index}" '
        f'isDefault="{"true" if index == 0 else "false"}"/>'
        for index, url in enumerate(sp.acs_url_list()))
    slo = (f'<md:SingleLogoutService Binding="{BINDING_HTTP_REDIRECT}" Location={quoteattr(sp.slo_url)}/>'
           f'<md:SingleLogoutService Binding="{BINDING_HTTP_POST}" Location={quoteattr(sp.slo_url)}/>'
           if sp.slo_url else "")
    return (
        '<?xml version="1.0"?><md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID={quoteattr(sp.entity_id)}>'
        f'<md:SPSSODescriptor AuthnRequestsSigned="{str(sp.requests_signed).lower()}" '
        'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f'{keys}{slo}<md:NameIDFormat>{escape(NAMEID_FORMATS[str(sp.nameid_format)])}</md:NameIDFormat>{acs}'
        '</md:SPSSODescriptor></md:EntityDescriptor>'
    )


def _key_descriptor(use: str, pem: str) -> str:
    return (f'<md:KeyDescriptor use="{use}"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
            f'{escape(certificate_base64(pem))}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>')


class _SkewedPolicy(Policy):
    """pysaml2's policy with NotBefore a little in the past: an SP whose clock is behind ours by less than
    CLOCK_SKEW_SECONDS still accepts the assertion (pysaml2 sets NotBefore to the very second it signs)."""

    def conditions(self, sp_entity_id):
        made = super().conditions(sp_entity_id)
        made.not_before = instant(time_stamp=int(time.time()) - CLOCK_SKEW_SECONDS)
        return made


def _attribute_converter() -> AttributeConverter:
    converter = AttributeConverter(NAME_FORMAT_URI)
    converter.from_dict({"identifier": NAME_FORMAT_URI, "fro": {uri: name for name, uri in ATTRIBUTES.items()},
                         "to": dict(ATTRIBUTES)})
    return converter


@contextmanager
def idp_server(*, tenant: Tenant, sp: ServiceProvider | None = None, published: bool = False) -> Iterator[Server]:
    """pysaml2's IdP for the tenant, trusting ``sp`` alone (none: the metadata's). The active key signs;
    ``published`` adds the other published certificates (the metadata's key rotation)."""
    with ExitStack() as stack:
        key_file, cert_file = stack.enter_context(signing_key_files(key=signing_key_active(tenant=tenant)))
        extra: list[str] = []
        if published:
            for other in signing_keys_published(tenant=tenant)[1:]:
                extra.append(stack.enter_context(signing_key_files(key=other))[1])
        sso, slo = idp_sso_url(tenant=tenant), idp_slo_url(tenant=tenant)
        config = IdPConfig()
        config.load({
            "entityid": idp_entity_id(tenant=tenant),
            "xmlsec_binary": xmlsec_binary(),
            "key_file": key_file, "cert_file": cert_file,
            **({"additional_cert_files": extra} if extra else {}),
            "metadata": {"inline": [sp_metadata_xml(sp=sp)]} if sp is not None else {},
            "signing_algorithm": SIG_RSA_SHA256, "digest_algorithm": DIGEST_SHA256,
            "accepted_time_diff": CLOCK_SKEW_SECONDS,
            "valid_for": METADATA_VALID_HOURS,
            "allow_unknown_attributes": True,
            "service": {"idp": {
                "name": tenant.name,
                "endpoints": {
                    "single_sign_on_service": [(sso, BINDING_HTTP_REDIRECT), (sso, BINDING_HTTP_POST)],
                    "single_logout_service": [(slo, BINDING_HTTP_REDIRECT), (slo, BINDING_HTTP_POST)],
                },
                "name_id_format": list(NAMEID_FORMATS.values()),
                "want_authn_requests_signed": bool(sp is not None and sp.requests_signed),
                "sign_assertion": True,
                "sign_response": bool(sp is not None and sp.sign_response),
            }},
        })
        config.attribute_converters = [_attribute_converter()]
        config.setattr("idp", "policy", _SkewedPolicy({"default": {
            "lifetime": {"seconds": ASSERTION_SECONDS}, "name_form": NAME_FORMAT_URI,
            "attribute_restrictions": None}}))
        yield Server(config=config)


def idp_metadata(*, tenant: Tenant) -> str:
    """The tenant's IdP metadata, signed by the active key: both SSO bindings, SLO, the NameID formats, every
    published signing certificate (the next one before it signs), validUntil and cacheDuration. Signed once and
    kept METADATA_CACHE_SECONDS (SPs poll it); a key staged or promoted is another entry at once."""
    published = ",".join(f"{key.pk}:{key.state}" for key in signing_keys_published(tenant=tenant))
    entry = f"pta:saml:metadata:{tenant.pk}:{tenant.slug}:{settings.PTA_PUBLIC_URL}:{published}"
    found = cache.get(entry)
    if found is None:
        found = _metadata_signed(tenant=tenant)
        cache.set(entry, found, timeout=METADATA_CACHE_SECONDS)
    return found


def _metadata_signed(*, tenant: Tenant) -> str:
    with idp_server(tenant=tenant, published=True) as server:
        config = server.config
        descriptor = entity_descriptor(config)
        descriptor.cache_duration = f"PT{METADATA_CACHE_SECONDS}S"
        descriptor.idpsso_descriptor.want_authn_requests_signed = "false"
        secc = security_context(config)
        _, signed = sign_entity_descriptor(descriptor, None, secc, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256)
        return str(signed)


@dataclass(frozen=True)
class Identity:
    """Who the assertion is about, and how they signed in."""

    name_id: str
    name_id_format: str
    attributes: dict[str, list[str]]
    authn_instant: float  # epoch seconds: the session's sign-in
    mfa: bool
    amr: tuple[str, ...] = ()  # RFC 8176 methods of that sign-in, as the session recorded them (empty: unknown)


def authn_context_class(*, mfa: bool, amr: tuple[str, ...] = ()) -> str:
    """The class that names how the session signed in, as OpenID Connect's ``amr`` does: a second factor (django-otp's
    marker on the session, or ``mfa`` among the methods) is CONTEXT_MFA, the password alone CONTEXT_PASSWORD."""
    return CONTEXT_MFA if mfa or "mfa" in amr else CONTEXT_PASSWORD


# The classes an SP's RequestedAuthnContext may name that the portal can state, weakest first: a session signed in
# with a second factor meets them all, one signed in with the password alone all but the last. Any other class (a
# smartcard, Kerberos …) the portal never meets.
CONTEXT_STRENGTH = {
    "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified": 0,
    "urn:oasis:names:tc:SAML:2.0:ac:classes:Password": 1,
    CONTEXT_PASSWORD: 2,
    CONTEXT_MFA: 3,
}


def authn_contexts_acceptable(*, classes: list[str], comparison: str) -> tuple[str, ...]:
    """The classes the portal may state for a RequestedAuthnContext (``classes`` in the SP's order, ``comparison``
    exact, minimum, better or maximum, by the strengths above). Empty: none the portal can give (NoAuthnContext)."""
    ranks = [CONTEXT_STRENGTH[name] for name in classes if name in CONTEXT_STRENGTH]
    if not ranks:
        return ()
    if comparison == "minimum":
        return tuple(name for name, rank in CONTEXT_STRENGTH.items() if rank >= min(ranks))
    if comparison == "better":
        return tuple(name for name, rank in CONTEXT_STRENGTH.items() if rank > min(ranks))
    if comparison == "maximum":
        return tuple(name for name, rank in CONTEXT_STRENGTH.items() if rank <= max(ranks))
    return tuple(dict.fromkeys(name for name in classes if name in CONTEXT_STRENGTH))  # exact, the default


def authn_context_stated(*, acceptable: tuple[str, ...], mfa: bool) -> str | None:
    """The strongest acceptable class a session meets (``mfa``: it gave a second factor); None: it meets none, a
    second factor is needed first."""
    met = [name for name in acceptable if CONTEXT_STRENGTH[name] <= CONTEXT_STRENGTH[CONTEXT_MFA if mfa else
                                                                                     CONTEXT_PASSWORD]]
    return max(met, key=CONTEXT_STRENGTH.__getitem__) if met else None


def authn_response_xml(*, tenant: Tenant, sp: ServiceProvider, identity: Identity, in_response_to: str | None,
                       acs_url: str, context: str | None = None) -> tuple[str, str]:
    """The signed Response (the assertion signed, RSA-SHA256, exclusive c14n; the response too when the SP asks) and
    its SessionIndex (read before the assertion is encrypted). ``context``: the AuthnContextClassRef to state (one
    the request asked for and the session meets), else the session's own."""
    context = context or authn_context_class(mfa=identity.mfa, amr=identity.amr)
    with idp_server(tenant=tenant, sp=sp) as server:
        name_id = saml.NameID(format=identity.name_id_format, text=identity.name_id,
                              sp_name_qualifier=sp.entity_id if identity.name_id_format == NAMEID_PERSISTENT else None,
                              name_qualifier=idp_entity_id(tenant=tenant)
                              if identity.name_id_format == NAMEID_PERSISTENT else None)
        # pysaml2's own encryption is 3DES-CBC, and it signs the assertion already moved into its
        # EncryptedAssertion; here the assertion is signed first, as for an SP that wants it in clear, then
        # encrypted (AES-256-GCM), then the response signed when the SP asks (_assertion_encrypted).
        encrypting = bool(sp.encryption_certificate)
        response = server.create_authn_response(
            identity.attributes, in_response_to, acs_url, sp.entity_id, name_id=name_id,
            authn={"class_ref": context, "authn_instant": int(identity.authn_instant)},
            sign_assertion=True, sign_response=sp.sign_response and not encrypting, encrypt_assertion=False,
            sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256,
            session_not_on_or_after=None,
        )
        session_index = session_index_of(str(response))
        if encrypting:
            return _assertion_encrypted(server, xml=str(response), certificate=sp.encryption_certificate,
                                        sign_response=sp.sign_response), session_index
        return str(response), session_index


# Encrypted assertions: the assertion under a fresh AES-256-GCM key, the key under the SP's RSA key (OAEP).
ENCRYPTION_DATA = "http://www.w3.org/2009/xmlenc11#aes256-gcm"
ENCRYPTION_KEY_TRANSPORT = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
_ASSERTION = re.compile(r"<(?:(?P<prefix>[A-Za-z_][\w.-]*):)?Assertion[\s>]")
_RESPONSE_ID = re.compile(r"<(?:[A-Za-z_][\w.-]*:)?Response\b[^>]*?\sID=\"([^\"]+)\"")
_ISSUER_END = re.compile(r"</(?:[A-Za-z_][\w.-]*:)?Issuer>")


def _assertion_encrypted(server: Server, *, xml: str, certificate: str, sign_response: bool) -> str:
    """The response ``xml`` (pysaml2's, its one assertion signed) with that assertion, signature included, inside
    an EncryptedAssertion: xmlsec1 encrypts it for the SP's certificate; then the response is signed when the SP
    asks. The signed assertion's bytes are not changed before encryption, so its signature holds once the SP has
    decrypted it."""
    security = server.sec
    found = _ASSERTION.search(xml)
    if security is None or found is None:
        raise ValueError("The response has no assertion to encrypt.")
    prefix = found.group("prefix")
    tag = f"{prefix}:Assertion" if prefix else "Assertion"
    end = xml.index(f"</{tag}>", found.start()) + len(f"</{tag}>")
    wrapper = (f"{prefix}:EncryptedAssertion" if prefix else "EncryptedAssertion")
    declared = "" if prefix else ' xmlns="urn:oasis:names:tc:SAML:2.0:assertion"'
    wrapped = f"{xml[:found.start()]}<{wrapper}{declared}>{xml[found.start():end]}</{wrapper}>{xml[end:]}"
    with NamedTemporaryFile("w", suffix=".pem") as cert_file:
        cert_file.write(certificate if certificate.endswith("\n") else certificate + "\n")
        cert_file.flush()
        template = pre_encryption_part(msg_enc=ENCRYPTION_DATA, key_enc=ENCRYPTION_KEY_TRANSPORT,
                                       encrypt_cert=certificate_base64(certificate))
        encrypted = security.encrypt_assertion(wrapped, cert_file.name, template, key_type="aes-256")
    if not sign_response:
        return encrypted
    response_id = _RESPONSE_ID.search(encrypted)
    issuer_end = _ISSUER_END.search(encrypted)
    if response_id is None or issuer_end is None:
        raise ValueError("The encrypted response has no ID or Issuer to sign after.")
    signature = pre_signature_part(response_id.group(1), security.my_cert, 1, sign_alg=SIG_RSA_SHA256,
                                   digest_alg=DIGEST_SHA256)
    placed = encrypted[:issuer_end.end()] + str(signature) + encrypted[issuer_end.end():]
    return security.sign_statement(placed, class_name(samlp.Response()), node_id=response_id.group(1))


def error_response_xml(*, tenant: Tenant, sp: ServiceProvider, in_response_to: str | None, acs_url: str,
                       status: str, message: str) -> str:
    """A Response carrying only a status (NoPassive, RequestDenied …), signed."""
    with idp_server(tenant=tenant, sp=sp) as server:
        return str(server.create_error_response(in_response_to, acs_url, (status, message), sign=True,
                                                sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256))


def not_after(seconds: int) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)


def logout_response_xml(*, tenant: Tenant, sp: ServiceProvider, request) -> tuple[str, str]:
    """The signed LogoutResponse (Success) to the SP's LogoutRequest, and where it goes (the SP's SLO URL)."""
    with idp_server(tenant=tenant, sp=sp) as server:
        response = server.create_logout_response(request, [BINDING_HTTP_POST], sign=True, sign_alg=SIG_RSA_SHA256,
                                                 digest_alg=DIGEST_SHA256)
        return str(response), sp.slo_url  # pysaml2 addresses it there (the SP's metadata is its registration)


def session_index_of(response_xml: str) -> str:
    """The SessionIndex pysaml2 gave the response's AuthnStatement (it draws one itself)."""
    found = re.search(r'SessionIndex="([^"]+)"', response_xml)
    return found.group(1) if found else ""


def logout_request_xml(*, tenant: Tenant, sp: ServiceProvider, name_id: str, name_id_format: str,
                       session_index: str) -> str:
    """A signed LogoutRequest to the SP's SLO URL for the user it knows by ``name_id`` (front-channel logout of
    the session's other SPs)."""
    with idp_server(tenant=tenant, sp=sp) as server:
        qualified = name_id_format == NAMEID_PERSISTENT
        _, request = server.create_logout_request(
            sp.slo_url, sp.entity_id,
            name_id=saml.NameID(format=name_id_format, text=name_id,
                                sp_name_qualifier=sp.entity_id if qualified else None,
                                name_qualifier=idp_entity_id(tenant=tenant) if qualified else None),
            session_indexes=[session_index] if session_index else None, sign=True, sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256)
        return str(request)
