"""What of a field may enter the trail (trail/redaction.py): plain logic, no database."""

import datetime

from trail.redaction import REDACTED, changes_between, field_recorded, value_redacted


def test_secret_field_names_are_denied_and_the_allow_list_wins():
    for name in ("password", "client_secret", "token_hash", "webhook_secret_encrypted", "ca_private_key_encrypted",
                 "signing_private_key_encrypted", "key", "verification_token", "api_token", "otp_seed", "digest"):
        assert not field_recorded(name), name
    for name in ("key_fingerprint", "client_id", "hint", "password_grant_enabled", "name", "mfa_policy", "ranges"):
        assert field_recorded(name), name


def test_a_changed_secret_is_named_never_shown():
    changes = changes_between({"client_secret": "pbkdf2_sha256$old", "name": "Wiki"},
                              {"client_secret": "pbkdf2_sha256$new", "name": "Wiki 2"})
    assert changes == {"client_secret": {"before": REDACTED, "after": REDACTED},
                       "name": {"before": "Wiki", "after": "Wiki 2"}}
    assert changes_between({"password": "x"}, {"password": "x"}) == {}  # unchanged: not mentioned at all


def test_secret_values_are_redacted_whatever_their_field():
    pem = "-----BEGIN PRIVATE KEY-----\nMIIE...\n-----END PRIVATE KEY-----"
    assert value_redacted("notes", pem) == REDACTED
    assert value_redacted("notes", "pta_" + "A" * 40) == REDACTED  # a registration token's shape
    assert value_redacted("logo", b"\x89PNG") == REDACTED
    assert value_redacted("names", ["a", pem]) == ["a", REDACTED]
    long = str(value_redacted("notes", "x" * 600))
    assert long.endswith("…") and len(long) == 501
    when = datetime.datetime(2026, 12, 7, 14, 0, tzinfo=datetime.UTC)
    assert value_redacted("created_at", when) == "2026-12-07T14:00:00+00:00"
