"""A tenant's SAML signing keys: created when first needed, private keys encrypted at rest, rotated in two steps.

    signing_key_active(tenant=…)     # the key that signs now (created on first use)
    signing_keys_published(tenant=…) # what the metadata lists: the next key (before it signs), the active one
    signing_key_stage(tenant=…)      # a NEXT key: published in the metadata from now on, signing nothing yet
    signing_key_promote(tenant=…)    # the NEXT key signs; the old one is retired (still published for a while)

Rotation: stage, wait until every SP has read the metadata again (its validUntil/cacheDuration, or the SP's
administrator re-imported it), then promote. A retired key stays in the metadata ``RETIRED_PUBLISHED_DAYS``.
"""

from __future__ import annotations

import base64
import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager
from tempfile import NamedTemporaryFile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from samlidp.models import SigningKey
from tenant.models import Tenant

KEY_BITS = 2048
CERTIFICATE_YEARS = 10
RETIRED_PUBLISHED_DAYS = 7


def _at_rest_key() -> AESGCM:
    # Its own HKDF label: the CA keys' derived key is never used for anything else.
    secret = settings.PTA_CA_ENCRYPTION_KEY.encode()
    return AESGCM(HKDF(hashes.SHA256(), 32, salt=None, info=b"pta-saml-signing-key-at-rest-v1").derive(secret))


def _context(tenant_id, certificate_pem: str) -> bytes:
    # Bound to the tenant and to its certificate: a blob copied to another row or tenant does not open.
    return f"{tenant_id}|".encode() + certificate_pem.encode()


def _certificate(key: rsa.RSAPrivateKey, tenant: Tenant) -> str:
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, tenant.name[:64] or tenant.slug),
        x509.NameAttribute(NameOID.COMMON_NAME, f"PTA SAML IdP {tenant.slug}"[:64]),
    ])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365 * CERTIFICATE_YEARS))
        .sign(key, hashes.SHA256())
    ).public_bytes(serialization.Encoding.PEM).decode()


def _new_key(*, tenant: Tenant, state: str) -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    certificate = _certificate(key, tenant)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    nonce = os.urandom(12)
    sealed = nonce + _at_rest_key().encrypt(nonce, der, _context(tenant.pk, certificate))
    return SigningKey.objects.create(tenant=tenant, state=state, private_key_encrypted=sealed,
                                     certificate_pem=certificate)


def signing_key_active(*, tenant: Tenant) -> SigningKey:
    found = SigningKey.objects.filter(tenant=tenant, state=SigningKey.State.ACTIVE).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return _new_key(tenant=tenant, state=SigningKey.State.ACTIVE)
    except IntegrityError:  # another request created it first (one active key per tenant)
        return SigningKey.objects.get(tenant=tenant, state=SigningKey.State.ACTIVE)


def signing_keys_published(*, tenant: Tenant) -> list[SigningKey]:
    """The keys an SP should trust: the active one first, the next one, and keys retired in the last days."""
    active = signing_key_active(tenant=tenant)
    since = timezone.now() - datetime.timedelta(days=RETIRED_PUBLISHED_DAYS)
    others = SigningKey.objects.filter(tenant=tenant).exclude(pk=active.pk).filter(
        state=SigningKey.State.NEXT) | SigningKey.objects.filter(
        tenant=tenant, state=SigningKey.State.RETIRED, state_changed_at__gte=since)
    return [active, *others.order_by("-created_at")]


@transaction.atomic
def signing_key_stage(*, tenant: Tenant) -> SigningKey:
    """The next key, published from now on (the same one when one is staged already)."""
    signing_key_active(tenant=tenant)
    found = SigningKey.objects.select_for_update().filter(tenant=tenant, state=SigningKey.State.NEXT).first()
    return found or _new_key(tenant=tenant, state=SigningKey.State.NEXT)


@transaction.atomic
def signing_key_promote(*, tenant: Tenant) -> SigningKey:
    """The staged key signs from now on; the one that signed is retired. ValueError when none is staged: a key
    never signs before it was published."""
    staged = SigningKey.objects.select_for_update().filter(tenant=tenant, state=SigningKey.State.NEXT).first()
    if staged is None:
        raise ValueError("No next key is published yet: stage one first, and promote it once the SPs have read "
                         "the metadata again.")
    now = timezone.now()
    SigningKey.objects.filter(tenant=tenant, state=SigningKey.State.ACTIVE).update(
        state=SigningKey.State.RETIRED, state_changed_at=now)
    staged.state, staged.state_changed_at = SigningKey.State.ACTIVE, now
    staged.save(update_fields=["state", "state_changed_at"])
    return staged


@contextmanager
def signing_key_files(*, key: SigningKey) -> Iterator[tuple[str, str]]:
    """The key and certificate as files (xmlsec1, which pysaml2 runs, reads only files): the key decrypted into a
    file of mode 0600 that lives only while the block runs."""
    der = _at_rest_key().decrypt(bytes(key.private_key_encrypted)[:12], bytes(key.private_key_encrypted)[12:],
                                 _context(key.tenant_id, key.certificate_pem))
    # PKCS#8 DER as PEM by hand: loading the key to write it again costs an RSA key check (about 0.1 s).
    body = base64.encodebytes(der).replace(b"\n", b"")
    pem = b"-----BEGIN PRIVATE KEY-----\n" + b"\n".join(body[i:i + 64] for i in range(0, len(body), 64)) + \
        b"\n-----END PRIVATE KEY-----\n"
    with NamedTemporaryFile("wb", prefix="pta-saml-key-", suffix=".pem") as key_file, \
            NamedTemporaryFile("w", prefix="pta-saml-cert-", suffix=".pem") as cert_file:
        os.fchmod(key_file.fileno(), 0o600)
        key_file.write(pem)
        key_file.flush()
        cert_file.write(key.certificate_pem)
        cert_file.flush()
        yield key_file.name, cert_file.name
