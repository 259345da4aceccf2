"""The validator's rules that need no directory: input refusals, sub-codes, GUIDs, bytes, retry and failover."""

from __future__ import annotations

import ssl
import time
import uuid
from types import SimpleNamespace

import pytest
from ldap3.core.exceptions import LDAPSocketSendError

from agents.onprem import directory
from agents.onprem.directory import DirectoryOptions, DirectoryValidator, ad_subcode, guid_from_bytes, input_refusal
from agents.protocol import Outcome

AD_MESSAGE = "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data {}, v1db1"


@pytest.mark.parametrize(("username", "password", "why"), [
    ("", "Pa55!word", "empty_username"),
    ("   ", "Pa55!word", "empty_username"),
    ("alice@corp.example.test", "", "empty_password"),
    ("alice@corp.example.test", "Pa55\x00word", "control_characters"),
    ("alice\x00@corp.example.test", "Pa55!word", "control_characters"),
    ("alice@corp.example.test", "Pa55\nword", "control_characters"),
    ("alice@corp.example.test", "Pa55\x7fword", "control_characters"),
    ("a" * 2000, "Pa55!word", "too_long"),
])
def test_inputs_that_never_reach_a_bind(username, password, why):
    assert input_refusal(username, password) == why


def test_ordinary_and_non_ascii_inputs_may_bind():
    assert input_refusal("judy@corp.example.test", "Grüße\u00a0Straße!9 \"quoted\"") == ""


@pytest.mark.parametrize(("subcode", "outcome"), [
    ("525", Outcome.INVALID_CREDENTIALS), ("52e", Outcome.INVALID_CREDENTIALS), ("530", Outcome.LOGON_HOURS),
    ("531", Outcome.WORKSTATION_RESTRICTED), ("532", Outcome.PASSWORD_EXPIRED), ("533", Outcome.ACCOUNT_DISABLED),
    ("701", Outcome.ACCOUNT_EXPIRED), ("773", Outcome.PASSWORD_MUST_CHANGE), ("775", Outcome.ACCOUNT_LOCKED),
    ("52f", Outcome.INVALID_CREDENTIALS), ("568", Outcome.INVALID_CREDENTIALS),
])
def test_a_failed_bind_maps_its_subcode_and_records_it_verbatim(subcode, outcome):
    validator = validator_with(FakeConnection.answering(49, AD_MESSAGE.format(subcode)))
    verdict = validator.validate("alice@corp.example.test", "Pa55!word")
    assert (verdict.outcome, verdict.ad_subcode) == (outcome, subcode)


def test_ad_subcode_parsing():
    assert ad_subcode(AD_MESSAGE.format("52E")) == "52e"
    assert ad_subcode("no code here") == ""


def test_object_guid_is_read_little_endian():
    guid = uuid.uuid4()
    assert guid_from_bytes(guid.bytes_le) == str(guid)
    assert guid_from_bytes(b"short") == ""


# --- with a fake ldap3 connection ----------------------------------------------------------------------


class FakeConnection:
    """Answers rebind like ldap3 does (result dict, False on failure) and records what it was given."""

    opened = 0

    def __init__(self, result: dict, *, fail_first: int = 0):
        self.result = result
        self.rebinds: list[tuple[str, object]] = []
        self.fail_first = fail_first
        self.response = []
        self.extend = SimpleNamespace(standard=SimpleNamespace(who_am_i=lambda: None))

    @classmethod
    def answering(cls, code: int, message: str = "", *, fail_first: int = 0) -> FakeConnection:
        return cls({"result": code, "message": message, "description": "x"}, fail_first=fail_first)

    def rebind(self, user, password, read_server_info=True):
        assert read_server_info is False  # otherwise every bind re-reads the schema
        self.rebinds.append((user, password))
        if self.fail_first:
            self.fail_first -= 1
            raise LDAPSocketSendError("connection reset")
        return self.result["result"] == 0

    def search(self, *args, **kwargs):
        self.response = []
        return True

    def unbind(self):
        pass


def validator_with(connection: FakeConnection, **options) -> DirectoryValidator:
    validator = DirectoryValidator(DirectoryOptions(ldap_urls=["ldaps://dc1:636"], base_dn="DC=corp", **options))
    validator._open = lambda url: connection  # type: ignore[method-assign]
    return validator


def test_the_password_reaches_ldap3_as_utf8_bytes_so_it_is_never_saslprepped():
    connection = FakeConnection.answering(0)
    validator_with(connection).validate("alice@corp.example.test", "No\u00a0break-\ufb01x")
    assert connection.rebinds == [("alice@corp.example.test", "No\u00a0break-\ufb01x".encode())]


def test_refused_inputs_never_bind():
    connection = FakeConnection.answering(0)
    verdict = validator_with(connection).validate("alice@corp.example.test", "")
    assert verdict.outcome is Outcome.INVALID_CREDENTIALS
    assert connection.rebinds == []


def test_a_broken_pooled_connection_is_retried_once_on_a_fresh_one():
    connection = FakeConnection.answering(0)
    validator = validator_with(connection)
    assert validator.validate("alice@corp.example.test", "Pa55!word").outcome is Outcome.SUCCESS  # now pooled
    connection.fail_first = 1
    assert validator.validate("alice@corp.example.test", "Pa55!word").outcome is Outcome.SUCCESS
    assert len(connection.rebinds) == 3


def test_a_fresh_connection_that_breaks_goes_to_the_next_dc_then_unavailable():
    connection = FakeConnection.answering(0, fail_first=5)
    verdict = validator_with(connection).validate("alice@corp.example.test", "Pa55!word")
    assert verdict.outcome is Outcome.DIRECTORY_UNAVAILABLE
    assert len(connection.rebinds) == 1  # a fresh connection is not retried on the same DC


def test_a_busy_dc_is_not_a_wrong_password():
    verdict = validator_with(FakeConnection.answering(51)).validate("alice@corp.example.test", "Pa55!word")
    assert verdict.outcome is Outcome.DIRECTORY_UNAVAILABLE


def test_nothing_binds_after_the_deadline():
    connection = FakeConnection.answering(0)
    verdict = validator_with(connection).validate("alice@corp.example.test", "Pa55!word", time.monotonic() - 1)
    assert verdict.outcome is Outcome.AGENT_TIMEOUT
    assert connection.rebinds == []


def test_refused_ports_give_directory_unavailable():
    validator = DirectoryValidator(DirectoryOptions(ldap_urls=["ldaps://127.0.0.1:1", "ldaps://127.0.0.1:2"],
                                                    connect_timeout_seconds=2))
    try:
        assert validator.validate("alice@corp.example.test", "Pa55!word").outcome is Outcome.DIRECTORY_UNAVAILABLE
        assert validator.reachable() == {"ldaps://127.0.0.1:1": False, "ldaps://127.0.0.1:2": False}
    finally:
        validator.close()


def test_tls_always_verifies_the_dc_certificate():
    validator = DirectoryValidator(DirectoryOptions(ldap_urls=["ldaps://dc1:636"]))
    assert validator._tls.validate == ssl.CERT_REQUIRED
    server = validator._server("ldaps://dc1:636")
    assert server.ssl and server.tls.validate == ssl.CERT_REQUIRED
    assert server.get_info == directory.ldap3.NONE
