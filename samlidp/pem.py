"""Certificates as SAML carries them: PEM for people and the database, bare base64 DER in XML
(``ds:X509Certificate``)."""

from __future__ import annotations

import base64
import binascii
import re

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

MAX_CERTIFICATE_CHARS = 16_384


def certificate_load(text: str) -> x509.Certificate:
    """A PEM certificate, or the bare base64 of its DER (as metadata holds it). ValueError when neither."""
    text = text.strip()
    if len(text) > MAX_CERTIFICATE_CHARS:
        raise ValueError("The certificate is too long.")
    if "-----BEGIN" in text:
        return x509.load_pem_x509_certificate(text.encode())
    try:
        der = base64.b64decode(re.sub(r"\s+", "", text), validate=True)
    except binascii.Error:
        raise ValueError("Not a PEM certificate nor base64.") from None
    return x509.load_der_x509_certificate(der)


def certificate_problem(text: str) -> str | None:
    try:
        certificate_load(text)
    except ValueError as exc:
        return f"Not a certificate: {exc}"
    return None


def certificate_pem(text: str) -> str:
    """The certificate as PEM, however it was given."""
    return certificate_load(text).public_bytes(Encoding.PEM).decode()


def certificate_base64(pem: str) -> str:
    """The base64 of the DER, on one line: what ``ds:X509Certificate`` holds."""
    body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    return body
