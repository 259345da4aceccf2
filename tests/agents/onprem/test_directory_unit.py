"""The validator's rules that need no directory: input refusals, sub-codes, GUIDs, bytes, retry and failover."""

from __future__ import annotations

import ssl
import time
import uuid
from types import SimpleNamespace

import pytest
from ldap3.core.exceptions import LDAPSocketSendError
from pta_agent import directory
from pta_agent.directory import DirectoryOptions, DirectoryValidator, ad_subcode, guid_from_bytes, input_refusal
from pta_protocol import Outcome

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
        self.response: list[dict] = []
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
    # A fake in place of ldap3's Connection, which mypy cannot take for one.
    validator._open = lambda url, **kwargs: connection  # type: ignore[method-assign,assignment]
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


# --- password change -----------------------------------------------------------------------------------

USER_DN = "CN=Erin Green,CN=Users,DC=corp"


class ChangeConnection(FakeConnection):
    """Finds one user, answers the modify with ``change_result``, then binds (the user, with the new password)."""

    def __init__(self, change_result: dict, *, modify_error: Exception | None = None):
        super().__init__({"result": 0, "message": "", "description": "success"})
        self.change_result = change_result
        self.modify_error = modify_error
        self.modifies: list[tuple[str, dict]] = []
        self.searches: list[str] = []

    def search(self, base, search_filter, *args, **kwargs):
        self.searches.append(search_filter)
        self.response = [{"type": "searchResEntry", "dn": USER_DN if "userPrincipalName" in search_filter
                          or base == USER_DN else "", "raw_attributes": {"userPrincipalName": [b"erin@corp"]}}]
        self.result = {"result": 0, "message": "", "description": "success"}
        return True

    def modify(self, dn, changes):
        self.modifies.append((dn, changes))
        if self.modify_error is not None:
            raise self.modify_error
        self.result = self.change_result
        return self.change_result["result"] == 0

    def rebind(self, user, password, read_server_info=True):
        self.result = {"result": 0, "message": "", "description": "success"}
        return super().rebind(user, password, read_server_info)


def change_validator(connection, **options) -> DirectoryValidator:
    return validator_with(connection, service_account="pta-svc@corp", service_password="Svc!Pa55", **options)


SAMBA_REFUSALS = {
    "complexity": "0000052D: Constraint violation - check_password_restrictions: the password does not meet the "
                  "complexity criteria!",
    "history": "0000052D: Constraint violation - check_password_restrictions: the password was already used "
               "(previous password)!",
    "too_short": "0000052D: Constraint violation - check_password_restrictions: the password is too short. It "
                 "should be equal or longer than 7 characters!",
    "too_young": "0000052D: Constraint violation - check_password_restrictions: password is too young to change!",
    "policy": "0000052D: AtrErr: DSID-03191083, #1:\n\t0: 0000052D: DSID-03191083, problem 1005 "
              "(CONSTRAINT_ATT_TYPE), data 0, Att 9005a (unicodePwd)",  # Windows AD: no reason given
}


def test_a_change_is_a_delete_and_add_of_quoted_utf16_values_then_a_bind_with_the_new_password():
    connection = ChangeConnection({"result": 0, "message": "00000000: Success", "description": "success"})
    validator = change_validator(connection)
    verdict = validator.change_password("erin@corp.example.test", "0ld\u00a0Pa55!", 'N\u00e9w "Pa55"')
    assert verdict.outcome is Outcome.PASSWORD_CHANGED and verdict.user is not None
    assert connection.searches[0].endswith("(userPrincipalName=erin@corp.example.test))")
    ((dn, changes),) = connection.modifies
    assert dn == USER_DN
    assert changes == {"unicodePwd": [(directory.ldap3.MODIFY_DELETE, ['"0ld\u00a0Pa55!"'.encode("utf-16-le")]),
                                      (directory.ldap3.MODIFY_ADD, ['"N\u00e9w "Pa55""'.encode("utf-16-le")])]}
    assert connection.rebinds[-1] == (USER_DN, 'N\u00e9w "Pa55"'.encode())  # as the user, UTF-8 bytes


def test_the_filter_is_escaped():
    connection = ChangeConnection({"result": 0, "message": "", "description": "success"})
    change_validator(connection).change_password("*)(cn=*@corp.example.test", "Old!Pa55", "New!Pa55")
    assert "\\2a\\29\\28cn=\\2a@corp.example.test" in connection.searches[0]


def test_a_wrong_current_password_is_invalid_credentials_56():
    message = "00000056: Constraint violation - check_password_restrictions: The old password specified doesn't match!"
    connection = ChangeConnection({"result": 19, "message": message, "description": "constraintViolation"})
    verdict = change_validator(connection).change_password("erin@corp.example.test", "Wrong!Pa55", "New!Pa55")
    assert (verdict.outcome, verdict.ad_subcode) == (Outcome.INVALID_CREDENTIALS, "56")
    assert len(connection.rebinds) == 1  # the service account's bind only: no sign-in follows


@pytest.mark.parametrize("reason", sorted(SAMBA_REFUSALS))
def test_a_policy_refusal_is_password_rejected_with_its_reason(reason):
    connection = ChangeConnection({"result": 19, "message": SAMBA_REFUSALS[reason],
                                   "description": "constraintViolation"})
    verdict = change_validator(connection).change_password("erin@corp.example.test", "Old!Pa55", "new")
    assert (verdict.outcome, verdict.ad_subcode) == (Outcome.PASSWORD_REJECTED, "52d")
    assert verdict.detail.split(":")[0] == reason


def test_nothing_is_sent_without_the_current_password_or_a_service_account():
    connection = ChangeConnection({"result": 0, "message": "", "description": "success"})
    verdict = change_validator(connection).change_password("erin@corp.example.test", "", "New!Pa55")
    assert verdict.outcome is Outcome.INVALID_CREDENTIALS and connection.modifies == []  # never a reset
    plain = validator_with(connection)
    assert not plain.can_change_passwords
    assert plain.change_password("erin@corp.example.test", "Old!Pa55", "New!Pa55").outcome is Outcome.AGENT_ERROR
    assert connection.modifies == []


def test_a_change_without_an_answer_is_never_sent_to_another_dc():
    connection = ChangeConnection({}, modify_error=LDAPSocketSendError("connection reset"))
    validator = DirectoryValidator(DirectoryOptions(ldap_urls=["ldaps://dc1:636", "ldaps://dc2:636"], base_dn="DC=corp",
                                                    service_account="svc@corp", service_password="Svc!Pa55"))
    # A fake in place of ldap3's Connection, which mypy cannot take for one.
    validator._open = lambda url, **kwargs: connection  # type: ignore[method-assign,assignment]
    verdict = validator.change_password("erin@corp.example.test", "Old!Pa55", "New!Pa55")
    assert (verdict.outcome, verdict.detail) == (Outcome.DIRECTORY_UNAVAILABLE, "change_unanswered")
    assert len(connection.modifies) == 1


def test_only_the_change_connections_may_write():
    validator = change_validator(ChangeConnection({}))
    opened = []

    def open_recorded(url: str, *, read_only: bool = True) -> ChangeConnection:
        opened.append(read_only)
        return ChangeConnection({})

    # A fake in place of ldap3's Connection, which mypy cannot take for one.
    validator._open = open_recorded  # type: ignore[method-assign,assignment]
    validator._change_pools["ldaps://dc1:636"]._opener()
    validator._service_pools["ldaps://dc1:636"]._opener()
    validator._user_pools["ldaps://dc1:636"]._opener()
    assert opened == [False, True, True]
