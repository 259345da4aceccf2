"""Each tenant's certificate authority and request-signing key: created once, private keys encrypted at rest."""

import datetime
import functools
import os
import uuid

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.db import IntegrityError, transaction

from agents.models import TenantAuthority
from tenant.models import Tenant

CERTIFICATE_DAYS = 180
RENEWAL_WINDOW_DAYS = 30
CA_DAYS = 3650
MIN_AGENT_KEY_BITS = 2048
MAX_AGENT_KEY_BITS = 4096


class CertificateRequestError(ValueError):
    """A CSR the portal will not sign; the message says why and is safe to show the agent."""


def _at_rest_key() -> AESGCM:
    secret = settings.PTA_CA_ENCRYPTION_KEY.encode()
    return AESGCM(HKDF(hashes.SHA256(), 32, salt=None, info=b"pta-ca-key-at-rest-v1").derive(secret))


def _encrypt(private_key, *, context: bytes) -> bytes:
    der = private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    nonce = os.urandom(12)
    return nonce + _at_rest_key().encrypt(nonce, der, context)


def _decrypt(blob: bytes, *, context: bytes):
    blob = bytes(blob)
    return serialization.load_der_private_key(_at_rest_key().decrypt(blob[:12], blob[12:], context), None)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def authority_get_or_create(*, tenant: Tenant) -> TenantAuthority:
    existing = TenantAuthority.objects.filter(tenant=tenant).first()
    if existing:
        return existing
    ca_key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, tenant.name[:64] or tenant.slug),
        x509.NameAttribute(NameOID.COMMON_NAME, f"PTA agent CA {tenant.slug}"[:64]),
    ])
    now = _now()
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    signing_key = ed25519.Ed25519PrivateKey.generate()
    context = str(tenant.pk).encode()
    authority = TenantAuthority(
        tenant=tenant,
        ca_certificate_pem=ca_cert.public_bytes(serialization.Encoding.PEM).decode(),
        ca_private_key_encrypted=_encrypt(ca_key, context=b"ca\x00" + context),
        signing_public_key_pem=signing_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        signing_private_key_encrypted=_encrypt(signing_key, context=b"signing\x00" + context),
    )
    try:
        with transaction.atomic():
            authority.save()
    except IntegrityError:  # created concurrently: use the one that won
        return TenantAuthority.objects.get(tenant=tenant)
    return authority


def signing_key_for_tenant(tenant_id: uuid.UUID) -> ed25519.Ed25519PrivateKey:
    """Decrypts the tenant's request-signing key (the hand-off keeps it per process: agents/services/dispatch.py)."""
    authority = TenantAuthority.objects.get(tenant_id=tenant_id)
    return _decrypt(authority.signing_private_key_encrypted, context=b"signing\x00" + str(tenant_id).encode())


@functools.lru_cache(maxsize=1024)
def ca_certificate_for_tenant(tenant_id: uuid.UUID) -> x509.Certificate:
    authority = TenantAuthority.objects.get(tenant_id=tenant_id)
    return x509.load_pem_x509_certificate(authority.ca_certificate_pem.encode())


def csr_load(csr_pem: str) -> x509.CertificateSigningRequest:
    """Parse and check a CSR: an RSA key of a sane size, and a valid self-signature (proof of possession)."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise CertificateRequestError("The certificate request is not a valid PEM CSR.") from None
    key = csr.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise CertificateRequestError("Agent keys must be RSA (they decrypt sealed passwords).")
    if not MIN_AGENT_KEY_BITS <= key.key_size <= MAX_AGENT_KEY_BITS:
        raise CertificateRequestError(f"Agent keys must be RSA {MIN_AGENT_KEY_BITS}–{MAX_AGENT_KEY_BITS} bits.")
    if not csr.is_signature_valid:
        raise CertificateRequestError("The certificate request's signature does not verify.")
    return csr


def certificate_issue(*, tenant: Tenant, agent_id: uuid.UUID, agent_name: str,
                      csr: x509.CertificateSigningRequest) -> x509.Certificate:
    """Sign an agent certificate naming the agent (CN and a URN SAN) and the tenant (O and OU)."""
    authority = authority_get_or_create(tenant=tenant)
    ca_cert = x509.load_pem_x509_certificate(authority.ca_certificate_pem.encode())
    ca_key = _decrypt(authority.ca_private_key_encrypted, context=b"ca\x00" + str(tenant.pk).encode())
    now = _now()
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, tenant.name[:64] or tenant.slug),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, str(tenant.pk)),
        x509.NameAttribute(NameOID.COMMON_NAME, (agent_name or str(agent_id))[:64]),
    ])
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERTIFICATE_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"urn:pta:agent:{agent_id}")]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )


def certificate_verify(*, tenant_id: uuid.UUID, certificate: x509.Certificate) -> bool:
    """True when the tenant's CA issued this certificate (its signature verifies)."""
    try:
        certificate.verify_directly_issued_by(ca_certificate_for_tenant(tenant_id))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True

