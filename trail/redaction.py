"""What of an object's fields may enter the trail: never a secret.

Plain Python (no Django), tested on its own. A field is recorded with its values only when its name is on the
allow list, or matches nothing on the deny list; a denied field that changed is recorded as changed, with both
values replaced by ``REDACTED`` (the trail says "the client secret was replaced", never what it was or is). Values
are checked too, whatever their field's name: bytes, and any text that looks like a key or a token, are redacted.
"""

from __future__ import annotations

import datetime
import re

REDACTED = "[redacted]"

# Any name holding one of these words is a secret, or derived from one (a hash or an encrypted copy still lets an
# attacker test guesses offline, or decrypt with a stolen key).
DENY = re.compile(r"password|secret|private|token|otp|totp|seed|key|cipher|encrypted|hash|digest|credential|"
                  r"nonce|signing|session|csr|webhook_url", re.IGNORECASE)  # a chat webhook's URL is its secret
# Names the deny list would catch that hold no secret: public fingerprints and identifiers, shown in the console.
ALLOW = frozenset({"key_fingerprint", "client_id", "hint", "logo_sha256", "password_grant_enabled",
                   "hash_client_secret"})

# Text that is a secret whatever field it sits in: PEM private keys, the portal's registration tokens.
SECRET_TEXT = re.compile(r"PRIVATE KEY|^pta_[A-Za-z0-9_-]{16,}")
MAX_TEXT = 500


def field_recorded(name: str) -> bool:
    """Whether this field's values may be recorded (else only that it changed)."""
    return name in ALLOW or not DENY.search(name)


def value_redacted(name: str, value: object) -> object:
    """The value as the trail keeps it: JSON-ready, bounded, and never a secret."""
    if not field_recorded(name):
        return REDACTED
    if isinstance(value, (bytes, bytearray, memoryview)):
        return REDACTED
    if isinstance(value, str):
        if SECRET_TEXT.search(value):
            return REDACTED
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "…"
    if isinstance(value, (list, tuple)):
        return [value_redacted(name, item) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    return value_redacted(name, str(value))


def changes_between(before: dict[str, object], after: dict[str, object]) -> dict[str, dict[str, object]]:
    """``{field: {"before": …, "after": …}}`` for each field whose value differs (a field in one only counts as
    changed from or to None), each value redacted."""
    changed = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old != new:
            changed[name] = {"before": value_redacted(name, old), "after": value_redacted(name, new)}
    return changed
