"""Recovery codes at rest: a keyed hash per code, never the code (docs/SECURITY.md, 5d).

A code is 80 random bits (16 base32 characters; codes issued before were 40 bits). Being random rather than
chosen by a person, it needs no slow password hash: a slow hash would cost its full work for each of a user's
ten codes on every attempt, a denial of service, for nothing a random 80-bit code needs. What it needs is that a
copy of the database alone gives nothing to try offline: HMAC-SHA256 under a key derived from
PTA_CA_ENCRYPTION_KEY (its own HKDF label; never in the database), with a random salt per code, so equal codes
never share a digest and nothing can be computed once for many rows. Used by signin/services/mfa.py and by the
migration that hashed the codes stored in clear (signin/migrations/0007_recovery_codes_hashed.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

SCHEME = "hmac-sha256-v1"
CODE_BYTES = 10  # 80 bits: 16 base32 characters


def _key() -> bytes:
    secret = settings.PTA_CA_ENCRYPTION_KEY.encode()
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"pta-recovery-code-v1").derive(secret)


def recovery_code_new() -> str:
    """A fresh code, shown as four groups of four (dashes and spaces are ignored when typed)."""
    raw = base64.b32encode(secrets.token_bytes(CODE_BYTES)).decode("ascii").lower()
    return "-".join(raw[i:i + 4] for i in range(0, len(raw), 4))


def recovery_code_normalised(code: str) -> str:
    return (code or "").replace("-", "").replace(" ", "").strip().lower()


def _mac(key: bytes, salt: bytes, code: str) -> str:
    return hmac.new(key, salt + recovery_code_normalised(code).encode(), hashlib.sha256).hexdigest()


def recovery_code_digest(code: str) -> str:
    """What is stored for ``code``: ``hmac-sha256-v1$<salt hex>$<HMAC hex>``."""
    salt = secrets.token_bytes(16)
    return f"{SCHEME}${salt.hex()}${_mac(_key(), salt, code)}"


def recovery_code_matches(code: str, digests: list[str]) -> int | None:
    """The index of the digest ``code`` matches, or None. Every digest is computed (ten at most)."""
    key, found = _key(), None
    for index, stored in enumerate(digests):
        scheme, _, rest = stored.partition("$")
        salt_hex, _, mac = rest.partition("$")
        if scheme != SCHEME:
            continue
        try:
            salt = bytes.fromhex(salt_hex)
        except ValueError:
            continue
        if hmac.compare_digest(_mac(key, salt, code), mac) and found is None:
            found = index
    return found
