"""The agent's key pair and certificate: generated here, written with safe modes, never sent anywhere."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

import pta_protocol as protocol
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import NameOID

PRIVATE_KEY_MODE = 0o600
PUBLIC_FILE_MODE = 0o644


class IdentityError(Exception):
    """Key material that is missing, unreadable or inconsistent; the message names the file."""


@dataclass(frozen=True)
class AgentIdentity:
    """What the agent proves itself with (key + certificate) and what it trusts (the portal's signing key)."""

    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    portal_signing_key: ed25519.Ed25519PublicKey

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def key_id(self) -> str:
        """The fingerprint the portal puts in every request sealed for this key."""
        return protocol.key_fingerprint(self.private_key.public_key())

    @property
    def not_after(self) -> datetime.datetime:
        return self.certificate.not_valid_after_utc


def private_key_generate() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=protocol.AGENT_KEY_BITS)


def csr_build(private_key: rsa.RSAPrivateKey, *, name: str) -> str:
    """The portal replaces the subject with its own; the CSR's job is proof of possession of the key."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (name or "pta-agent")[:64])])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(private_key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def private_key_pem(private_key: rsa.RSAPrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def file_write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    """Temp file created with its final mode (no world-readable window), fsynced, then renamed over path."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed the mode; never widened it
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def private_key_write(path: Path, private_key: rsa.RSAPrivateKey) -> None:
    file_write_atomic(path, private_key_pem(private_key), mode=PRIVATE_KEY_MODE)


def public_file_write(path: Path, text: str) -> None:
    file_write_atomic(path, text.encode("ascii"), mode=PUBLIC_FILE_MODE)


def certificate_load_pem(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise IdentityError("The portal sent a certificate that is not valid PEM.") from None


def identity_load(*, private_key_file: str, certificate_file: str, portal_signing_key_file: str) -> AgentIdentity:
    private_key = _load(private_key_file, lambda data: serialization.load_pem_private_key(data, password=None))
    certificate = _load(certificate_file, x509.load_pem_x509_certificate)
    signing_key = _load(portal_signing_key_file, serialization.load_pem_public_key)
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise IdentityError(f"{private_key_file} is not an RSA private key.")
    if not isinstance(signing_key, ed25519.Ed25519PublicKey):
        raise IdentityError(f"{portal_signing_key_file} is not an Ed25519 public key.")
    if protocol.key_fingerprint(certificate.public_key()) != protocol.key_fingerprint(private_key.public_key()):
        raise IdentityError(f"{certificate_file} does not belong to the key in {private_key_file}.")
    return AgentIdentity(private_key=private_key, certificate=certificate, portal_signing_key=signing_key)


def _load(path: str, parse):
    try:
        return parse(Path(path).read_bytes())
    except FileNotFoundError:
        raise IdentityError(f"Missing {path}: register the agent again (`pta-agent register`).") from None
    except PermissionError:
        raise IdentityError(f"Cannot read {path}: run as the agent's user (e.g. pta-agent).") from None
    except (ValueError, TypeError) as exc:
        raise IdentityError(f"{path} is not valid PEM: {exc}") from None
