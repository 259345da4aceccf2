"""An SP's AuthnRequest, read and checked before anything is shown or sent.

What pysaml2 does not do, done here first: the encoded request's size, an inflate bounded in output (pysaml2 inflates
without a limit, for the POST binding too), an XML parse that refuses any DTD (defusedxml's default allows one
without entities). Then pysaml2 reads it (defusedxml again) and checks the signature, with the SP's registered
certificate only, when the SP is registered as signing (embedded for HTTP-POST, over the query for HTTP-Redirect).
pysaml2 accepts an IssueInstant within a day and keeps no memory of requests: the age (``REQUEST_MAX_AGE_SECONDS``)
and replays are checked here. The ACS is one registered for the SP, always.

Every refusal is a ``SamlRequestError`` whose message can be shown as it is.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import logging
import time
import zlib
from dataclasses import dataclass
from typing import Any

import defusedxml.ElementTree
from defusedxml import DefusedXmlException
from django.core.cache import cache
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.time_util import str_to_time

from samlidp.models import ServiceProvider
from samlidp.selectors import service_provider_by_entity_id
from samlidp.services.idp import (
    CLOCK_SKEW_SECONDS,
    authn_contexts_acceptable,
    idp_server,
    idp_slo_url,
    idp_sso_url,
)
from tenant.models import Tenant

SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"
MAX_ENCODED_CHARS = 64 * 1024  # the SAMLRequest parameter as sent
MAX_XML_BYTES = 128 * 1024  # the request's XML, inflated
MAX_RELAY_STATE_CHARS = 1024
REQUEST_MAX_AGE_SECONDS = 300
logger = logging.getLogger(__name__)
# A signing SP's request is accepted with these signature and digest algorithms only (SHA-2; no SHA-1, MD5 or HMAC,
# which xmlsec1 would otherwise verify too).
SIGNATURE_ALGORITHMS = frozenset({
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512", "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384", "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
})
DIGEST_ALGORITHMS = frozenset({"http://www.w3.org/2001/04/xmlenc#sha256", "http://www.w3.org/2001/04/xmldsig-more#sha384",
                               "http://www.w3.org/2001/04/xmlenc#sha512"})
DS = "{http://www.w3.org/2000/09/xmldsig#}"
# What an enveloped signature of a SAML message needs, and all xmlsec1 may be given: it also runs XSLT and XPath
# transforms, with no time limit (pysaml2 waits for it), so a request carrying one could hold a worker for good.
CANONICALISATIONS = frozenset({
    "http://www.w3.org/2001/10/xml-exc-c14n#", "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315", "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
})
SIGNATURE_TRANSFORMS = CANONICALISATIONS | {"http://www.w3.org/2000/09/xmldsig#enveloped-signature"}


class SamlRequestError(ValueError):
    """A request the IdP will not answer with an assertion; the message says why, for the person and the log."""


@dataclass(frozen=True)
class AuthnRequest:
    sp: ServiceProvider
    request_id: str
    acs_url: str
    relay_state: str
    force_authn: bool
    is_passive: bool
    # RequestedAuthnContext: the classes the portal may state (empty: none it can meet); None: the SP asked nothing.
    authn_contexts: tuple[str, ...] | None = None


def _inflate_bounded(raw: bytes) -> bytes:
    """RFC 1951 inflate that stops at MAX_XML_BYTES of output (a deflate bomb is cut off, never expanded)."""
    inflater = zlib.decompressobj(-15)
    out = inflater.decompress(raw, MAX_XML_BYTES + 1)
    if len(out) > MAX_XML_BYTES or inflater.unconsumed_tail:
        raise SamlRequestError(f"The SAML request inflates to more than {MAX_XML_BYTES // 1024} KiB.")
    if not inflater.eof:
        raise zlib.error("incomplete deflate stream")
    return out


def saml_message_xml(*, encoded: str, binding: str) -> bytes:
    """The XML of a SAMLRequest as the binding carries it (base64 of deflate for Redirect; base64, perhaps of
    deflate, for POST, as pysaml2 reads it), within the bounds."""
    if len(encoded) > MAX_ENCODED_CHARS:
        raise SamlRequestError(f"The SAML request is larger than {MAX_ENCODED_CHARS // 1024} KiB.")
    try:
        raw = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SamlRequestError("The SAML request is not base64.") from None
    try:
        return _inflate_bounded(raw)
    except zlib.error:
        if binding == BINDING_HTTP_REDIRECT:
            raise SamlRequestError("The SAML request is not deflated as the HTTP-Redirect binding requires.") from None
        return raw


def _parse(xml: bytes):
    try:
        return defusedxml.ElementTree.fromstring(xml, forbid_dtd=True)
    except DefusedXmlException:
        raise SamlRequestError("The SAML request holds a DTD or entity declarations, which are not allowed.") from None
    except Exception:  # ParseError, and anything the XML parser raises on garbage
        raise SamlRequestError("The SAML request is not well-formed XML.") from None


def authn_request_read(*, tenant: Tenant, binding: str, encoded: str, relay_state: str = "",
                       sig_alg: str | None = None, signature: str | None = None) -> AuthnRequest:
    """The checked request, or SamlRequestError."""
    sp, message = _request_read(tenant=tenant, binding=binding, encoded=encoded, relay_state=relay_state,
                                sig_alg=sig_alg, signature=signature, kind="AuthnRequest")
    if message.destination and message.destination != idp_sso_url(tenant=tenant):
        raise SamlRequestError("The request is addressed to another destination.")
    _check_age(message.issue_instant)
    request_id = message.id or ""
    acs_url = _acs_url(sp, message)
    _remember_once(kind="request", tenant=tenant, sp=sp, request_id=request_id)
    return AuthnRequest(sp=sp, request_id=request_id, acs_url=acs_url, relay_state=relay_state,
                        force_authn=str(message.force_authn).lower() == "true",
                        is_passive=str(message.is_passive).lower() == "true",
                        authn_contexts=_authn_contexts(message.requested_authn_context))


def _authn_contexts(requested) -> tuple[str, ...] | None:
    if requested is None:
        return None
    classes = [(ref.text or "").strip() for ref in requested.authn_context_class_ref or []]
    return authn_contexts_acceptable(classes=classes, comparison=str(requested.comparison or "exact"))


def logout_request_read(*, tenant: Tenant, binding: str, encoded: str, relay_state: str = "",
                        sig_alg: str | None = None, signature: str | None = None) -> tuple[ServiceProvider, Any]:
    """A registered SP's checked LogoutRequest (bounds, no DTD, its signature when it signs, its age, its ID not
    seen before): the SP and pysaml2's message. SamlRequestError otherwise."""
    sp, message = _request_read(tenant=tenant, binding=binding, encoded=encoded, relay_state=relay_state,
                                sig_alg=sig_alg, signature=signature, kind="LogoutRequest")
    if message.destination and message.destination != idp_slo_url(tenant=tenant):
        raise SamlRequestError("The request is addressed to another destination.")
    _check_age(message.issue_instant)
    _remember_once(kind="logout", tenant=tenant, sp=sp, request_id=message.id or "")
    return sp, message


def _remember_once(*, kind: str, tenant: Tenant, sp: ServiceProvider, request_id: str) -> None:
    """A request's ID is accepted once, for as long as the request could be accepted at all (the cache: Redis in
    production, shared by every node). Called last: a refused request does not burn its ID."""
    if not request_id or len(request_id) > 256:
        raise SamlRequestError("The SAML request has no usable ID.")
    if not cache.add(f"pta:saml:{kind}:{tenant.pk}:{sp.pk}:{request_id}", 1,
                     timeout=REQUEST_MAX_AGE_SECONDS + 2 * CLOCK_SKEW_SECONDS):
        raise SamlRequestError("This SAML request was used already: start again from the application.")


def _request_read(*, tenant: Tenant, binding: str, encoded: str, relay_state: str, sig_alg: str | None,
                  signature: str | None, kind: str):
    """The bounded, DTD-free read; the issuer a registered SP of the tenant; then pysaml2's read, which checks the
    signature with that SP's certificate when it is registered as signing."""
    if len(relay_state) > MAX_RELAY_STATE_CHARS:
        raise SamlRequestError(f"RelayState is longer than {MAX_RELAY_STATE_CHARS} characters.")
    root = _parse(saml_message_xml(encoded=encoded, binding=binding))
    if root.tag != f"{SAMLP}{kind}":
        raise SamlRequestError(f"This is not a SAML {kind}.")
    _check_signature_shape(root)
    issuer = (root.findtext(f"{SAML}Issuer") or "").strip()
    if not issuer:
        raise SamlRequestError("The SAML request names no Issuer.")
    sp = service_provider_by_entity_id(tenant=tenant, entity_id=issuer)
    if sp is None:
        raise SamlRequestError(f"{issuer[:200]} is not a service provider registered with this organisation.")
    if sp.requests_signed:
        _check_signature_algorithms(root, binding=binding, sig_alg=sig_alg)
    with idp_server(tenant=tenant, sp=sp) as server:
        read = server.parse_authn_request if kind == "AuthnRequest" else server.parse_logout_request
        try:
            parsed = read(encoded, binding, relay_state=relay_state or None, sigalg=sig_alg, signature=signature)
        except Exception as exc:  # pysaml2 raises many kinds (IncorrectlySigned, NotValid, OtherError …)
            logger.info("pysaml2 refused a %s of %s: %r (cause %r)", kind, issuer[:200], exc, exc.__cause__)
            if sp.requests_signed and "signed" in type(exc).__name__.lower() + str(exc).lower():
                raise SamlRequestError("The request's signature is missing or does not verify with the service "
                                       "provider's registered certificate.") from None
            raise SamlRequestError(f"The SAML request was refused: {type(exc).__name__}.") from None
    if parsed is None or parsed.message is None:
        raise SamlRequestError("The SAML request was refused.")
    return sp, parsed.message


def _check_signature_shape(root) -> None:
    """An embedded signature, if any, as a SAML message's is: one, the message's own (a child of its root, over the
    root: an empty reference or the root's ID), transformed only by enveloped-signature and canonicalisation.
    Checked before xmlsec1 ever sees it."""
    signatures = list(root.iter(f"{DS}Signature"))
    if not signatures:
        return
    signature = root.find(f"{DS}Signature")
    references = signature.findall(f"{DS}SignedInfo/{DS}Reference") if signature is not None else []
    if len(signatures) > 1 or signature is None or len(references) != 1 or \
            references[0].get("URI", "") not in ("", f"#{root.get('ID', '')}"):
        raise SamlRequestError("The request's signature is not the one enveloped signature over the request.")
    methods = [element.get("Algorithm", "") for element in signature.iter()
               if element.tag in (f"{DS}Transform", f"{DS}CanonicalizationMethod")]
    if any(method not in SIGNATURE_TRANSFORMS for method in methods):
        raise SamlRequestError("The request's signature uses a transform other than enveloped-signature and "
                               "canonicalisation, which is not accepted.")


def _check_signature_algorithms(root, *, binding: str, sig_alg: str | None) -> None:
    """A signing SP's request: signed with SHA-2 (the Redirect binding's SigAlg, or the enveloped signature's
    method and digest). A request without a signature is pysaml2's to refuse, with its own words."""
    if binding == BINDING_HTTP_REDIRECT:
        methods, digests = ([sig_alg] if sig_alg else []), []
    else:
        signed_info = root.find(f"{DS}Signature/{DS}SignedInfo")
        if signed_info is None:
            return
        methods = [element.get("Algorithm", "") for element in signed_info.iter(f"{DS}SignatureMethod")]
        digests = [element.get("Algorithm", "") for element in signed_info.iter(f"{DS}DigestMethod")]
    if any(method not in SIGNATURE_ALGORITHMS for method in methods) or \
            any(digest not in DIGEST_ALGORITHMS for digest in digests):
        raise SamlRequestError("The request is signed with an algorithm that is not accepted (SHA-1, MD5, HMAC …): "
                               "use RSA-SHA256.")


def _check_age(issue_instant: str | None) -> None:
    try:
        issued = calendar.timegm(str_to_time(issue_instant))
    except Exception:
        raise SamlRequestError("The SAML request has no valid IssueInstant.") from None
    now = time.time()
    if issued > now + CLOCK_SKEW_SECONDS:
        raise SamlRequestError("The SAML request was issued in the future: check the service provider's clock.")
    if issued < now - REQUEST_MAX_AGE_SECONDS - CLOCK_SKEW_SECONDS:
        raise SamlRequestError("The SAML request is too old: start again from the application.")


def _acs_url(sp: ServiceProvider, message) -> str:
    """The ACS the response goes to: the one the request names if registered, the registered one at its index, or
    the SP's default. Never an unregistered URL: it would send a signed assertion anywhere."""
    registered = sp.acs_url_list()
    binding = message.protocol_binding
    if binding and binding != BINDING_HTTP_POST:
        raise SamlRequestError("Only the HTTP-POST binding is offered for the response.")
    if message.assertion_consumer_service_url:
        if message.assertion_consumer_service_url not in registered:
            raise SamlRequestError("The request's AssertionConsumerServiceURL is not registered for this service "
                                   "provider: no assertion is sent there.")
        return message.assertion_consumer_service_url
    if message.assertion_consumer_service_index is not None:
        try:
            return registered[int(message.assertion_consumer_service_index)]
        except (ValueError, IndexError):
            raise SamlRequestError("The request's AssertionConsumerServiceIndex is not registered for this "
                                   "service provider.") from None
    return registered[0]
