"""A SAML service provider built with OneLogin's python3-saml (a library nobody here wrote), strict mode: it makes
the AuthnRequests (HTTP-Redirect, or signed XML for HTTP-POST) and validates the portal's responses as any SP
would (signature with the IdP's certificate from the metadata, Destination, Recipient, InResponseTo, audience,
conditions)."""

from __future__ import annotations

import base64
import datetime
import functools
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.logout_response import OneLogin_Saml2_Logout_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils

PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"


@functools.cache
def key_and_certificate(name: str) -> tuple[str, str]:
    """An SP's key and self-signed certificate (made once per name and process: RSA key generation is slow)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode(),
            cert.public_bytes(serialization.Encoding.PEM).decode())


@dataclass
class OneLoginSP:
    entity_id: str
    acs_url: str
    idp_metadata_xml: str
    sign_requests: bool = True
    nameid_format: str = PERSISTENT
    slo_url: str = ""
    key: str = ""
    certificate: str = ""
    settings_dict: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.key:
            self.key, self.certificate = key_and_certificate(self.entity_id[:60])
        idp = OneLogin_Saml2_IdPMetadataParser.parse(self.idp_metadata_xml)["idp"]
        self.settings_dict = {
            "strict": True, "debug": False,
            "sp": {"entityId": self.entity_id,
                   "assertionConsumerService": {"url": self.acs_url,
                                                "binding": OneLogin_Saml2_Constants.BINDING_HTTP_POST},
                   "NameIDFormat": self.nameid_format, "x509cert": self.certificate, "privateKey": self.key,
                   **({"singleLogoutService": {"url": self.slo_url,
                                               "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT}}
                      if self.slo_url else {})},
            "idp": idp,
            "security": {"authnRequestsSigned": self.sign_requests, "logoutRequestSigned": self.sign_requests,
                         "wantAssertionsSigned": True,
                         "wantMessagesSigned": False, "wantNameId": True, "requestedAuthnContext": False,
                         "signatureAlgorithm": OneLogin_Saml2_Constants.RSA_SHA256,
                         "digestAlgorithm": OneLogin_Saml2_Constants.SHA256, "rejectDeprecatedAlgorithm": True},
        }

    def settings(self) -> OneLogin_Saml2_Settings:
        return OneLogin_Saml2_Settings(self.settings_dict, sp_validation_only=True)

    def _request_data(self, post: dict | None = None, get: dict | None = None, url: str = "") -> dict:
        parts = urlsplit(url or self.acs_url)
        return {"https": "on" if parts.scheme == "https" else "off", "http_host": parts.hostname,
                "server_port": parts.port or (443 if parts.scheme == "https" else 80), "script_name": parts.path,
                "post_data": post or {}, "get_data": get or {}}

    def redirect_url(self, *, relay_state: str = "", force_authn: bool = False, is_passive: bool = False
                     ) -> tuple[str, str]:
        """The HTTP-Redirect binding's URL to the IdP (signed over the query when the SP signs) and the request ID."""
        auth = OneLogin_Saml2_Auth(self._request_data(), self.settings_dict)
        url = auth.login(return_to=relay_state or None, force_authn=force_authn, is_passive=is_passive)
        return url, auth.get_last_request_id()

    def post_request(self, *, relay_state: str = "", force_authn: bool = False, is_passive: bool = False,
                     sign: bool | None = None) -> tuple[dict, str]:
        """The HTTP-POST binding's form fields (the XML signed inside when the SP signs) and the request ID."""
        request = OneLogin_Saml2_Authn_Request(self.settings(), force_authn=force_authn, is_passive=is_passive)
        xml = request.get_xml()
        if self.sign_requests if sign is None else sign:
            xml = OneLogin_Saml2_Utils.add_sign(xml, self.key, self.certificate,
                                                sign_algorithm=OneLogin_Saml2_Constants.RSA_SHA256,
                                                digest_algorithm=OneLogin_Saml2_Constants.SHA256)
            xml = xml.decode() if isinstance(xml, bytes) else xml
        fields = {"SAMLRequest": base64.b64encode(xml.encode()).decode()}
        if relay_state:
            fields["RelayState"] = relay_state
        return fields, request.get_id()

    def process(self, saml_response: str, request_id: str | None) -> OneLogin_Saml2_Auth:
        """The SP's strict validation of the response posted to its ACS; raises AssertionError with its reason."""
        auth = OneLogin_Saml2_Auth(self._request_data(post={"SAMLResponse": saml_response}), self.settings_dict)
        auth.process_response(request_id=request_id)
        errors = auth.get_errors()
        assert not errors, f"{errors}: {auth.get_last_error_reason()}"
        assert auth.is_authenticated()
        return auth

    def logout_url(self, *, name_id: str, session_index: str | None) -> tuple[str, str]:
        """The HTTP-Redirect binding's LogoutRequest URL to the IdP (signed when the SP signs) and its ID."""
        auth = OneLogin_Saml2_Auth(self._request_data(), self.settings_dict)
        url = auth.logout(name_id=name_id, session_index=session_index, name_id_format=self.nameid_format,
                          spnq=self.entity_id)
        return url, auth.get_last_request_id()

    def process_logout_response(self, saml_response: str, request_id: str) -> None:
        """The SP's strict check of the IdP's LogoutResponse (issuer, destination, InResponseTo, status)."""
        data = self._request_data(get={"SAMLResponse": saml_response}, url=self.slo_url)
        response = OneLogin_Saml2_Logout_Response(self.settings(), saml_response)
        assert response.is_valid(data, request_id=request_id, raise_exceptions=True)
        assert response.get_status() == OneLogin_Saml2_Constants.STATUS_SUCCESS

    def logout_request(self, saml_request: str) -> dict:
        """The SP's strict check of a LogoutRequest the IdP posted to its SLO URL: its NameID and session indexes."""
        data = self._request_data(post={"SAMLRequest": saml_request}, url=self.slo_url)
        request = OneLogin_Saml2_Logout_Request(self.settings(), saml_request)
        assert request.is_valid(data, raise_exceptions=True)
        xml = request.get_xml()
        return {"name_id": OneLogin_Saml2_Logout_Request.get_nameid(xml),
                "session_indexes": OneLogin_Saml2_Logout_Request.get_session_indexes(xml)}
