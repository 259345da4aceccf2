"""The directory validator against a real AD (Samba AD DC on loopback, tests/fixtures/ad.py)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import uuid

import ldap3
import pytest
from pta_agent.directory import DirectoryOptions, DirectoryValidator
from pta_protocol import Outcome

pytestmark = pytest.mark.integration

REFUSING_DC = "ldaps://127.0.0.1:1"  # nothing listens on port 1: connection refused at once
OTHER_REFUSING_DC = "ldaps://127.0.0.1:2"
EXPECTED_STATE_OUTCOMES = {
    "533": Outcome.ACCOUNT_DISABLED,
    "701": Outcome.ACCOUNT_EXPIRED,
    "773": Outcome.PASSWORD_MUST_CHANGE,
    "532": Outcome.PASSWORD_EXPIRED,
    "530": Outcome.LOGON_HOURS,
    "775": Outcome.ACCOUNT_LOCKED,
}


def make_validator(ad_testbed, **overrides) -> DirectoryValidator:
    # Float timeouts, as the TOML config gives them.
    options = {"ldap_urls": [ad_testbed.ldaps_url], "ca_file": ad_testbed.ca_file, "base_dn": ad_testbed.base_dn,
               "pool_size": 2, "connect_timeout_seconds": 3.0, "receive_timeout_seconds": 5.0, "workers": 4}
    return DirectoryValidator(DirectoryOptions(**(options | overrides)))


@pytest.fixture
def validator(ad_testbed):
    validator = make_validator(ad_testbed)
    yield validator
    validator.close()


@pytest.fixture
def alternate_id_validator(ad_testbed):
    service = ad_testbed.service_account
    validator = make_validator(ad_testbed, login_attribute="mail", service_account=service["upn"],
                               service_password=service["password"])
    yield validator
    validator.close()


def test_good_user_signs_in_and_is_read_as_themselves(validator, ad_testbed):
    alice = ad_testbed.user("alice")
    verdict = validator.validate(alice["upn"], alice["password"])
    assert verdict.outcome is Outcome.SUCCESS
    assert verdict.ad_subcode == ""
    assert str(uuid.UUID(verdict.user.object_guid)) == verdict.user.object_guid  # canonical GUID string
    assert verdict.user.display_name == alice["display_name"]
    assert verdict.user.mail == alice["mail"]
    assert verdict.user.upn.lower() == alice["upn"].lower()


@pytest.mark.parametrize("name", ["ivan", "judy"])
def test_passwords_with_quotes_and_non_ascii_characters_work(validator, ad_testbed, name):
    user = ad_testbed.user(name)
    assert validator.validate(user["upn"], user["password"]).outcome is Outcome.SUCCESS


def test_every_account_state_gives_its_outcome_and_subcode(validator, ad_testbed):
    seen = set()
    for name, user in ad_testbed.users.items():
        if user["expected"] == "success":
            continue
        verdict = validator.validate(user["upn"], user["password"])
        assert (verdict.outcome, verdict.ad_subcode) == (EXPECTED_STATE_OUTCOMES[user["expected"]],
                                                         user["expected"]), name
        seen.add(user["expected"])
    assert seen == set(EXPECTED_STATE_OUTCOMES), "the testbed lacks a state"


def test_wrong_password_is_invalid_credentials_52e(validator, ad_testbed):
    bob = ad_testbed.user("bob")
    verdict = validator.validate(bob["upn"], bob["password"] + "x")
    assert (verdict.outcome, verdict.ad_subcode) == (Outcome.INVALID_CREDENTIALS, "52e")


def test_unknown_user_is_invalid_credentials_52e(validator, ad_testbed):
    verdict = validator.validate(ad_testbed.unknown_user["upn"], "Any!Passw0rd")
    assert (verdict.outcome, verdict.ad_subcode) == (Outcome.INVALID_CREDENTIALS, "52e")


def test_empty_password_is_refused_without_a_bind(validator, ad_testbed):
    # AD would treat a simple bind without a password as an unauthenticated bind, i.e. "success".
    verdict = validator.validate(ad_testbed.user("alice")["upn"], "")
    assert (verdict.outcome, verdict.detail) == (Outcome.INVALID_CREDENTIALS, "empty_password")


def test_a_pooled_connection_is_reused_and_a_broken_one_retried_on_a_fresh_one(validator, ad_testbed):
    alice = ad_testbed.user("alice")
    assert validator.validate(alice["upn"], alice["password"]).outcome is Outcome.SUCCESS
    pool = validator._user_pools[ad_testbed.ldaps_url]
    pooled = pool._idle.queue[-1]
    pooled.socket.shutdown(socket.SHUT_RDWR)  # the DC "dropped" the idle connection under us
    verdict = validator.validate(alice["upn"], alice["password"])
    assert verdict.outcome is Outcome.SUCCESS
    assert pooled not in pool._idle.queue


def test_sign_ins_rebind_pooled_connections_instead_of_opening_new_ones(validator, ad_testbed):
    opened = []
    open_connection = validator._open

    def counted_open(url):
        opened.append(url)
        return open_connection(url)

    validator._open = counted_open
    alice, bob = ad_testbed.user("alice"), ad_testbed.user("bob")
    for _ in range(5):
        assert validator.validate(alice["upn"], alice["password"]).outcome is Outcome.SUCCESS
        assert validator.validate(bob["upn"], bob["password"]).user.upn.lower() == bob["upn"].lower()
    assert opened == [ad_testbed.ldaps_url]  # one TLS connection (55–70 ms), then 2 ms rebinds


def test_starttls_on_ldap_url_works(ad_testbed):
    validator = make_validator(ad_testbed, ldap_urls=[ad_testbed.ldap_url])
    try:
        alice = ad_testbed.user("alice")
        assert validator.validate(alice["upn"], alice["password"]).outcome is Outcome.SUCCESS
    finally:
        validator.close()


def test_a_dc_certificate_that_does_not_verify_is_unavailable_not_a_wrong_password(ad_testbed):
    validator = make_validator(ad_testbed, ca_file="")  # the system store does not know the testbed's CA
    try:
        alice = ad_testbed.user("alice")
        assert validator.validate(alice["upn"], alice["password"]).outcome is Outcome.DIRECTORY_UNAVAILABLE
        assert validator.reachable() == {ad_testbed.ldaps_url: False}
    finally:
        validator.close()


def test_a_refusing_dc_fails_over_to_the_next(ad_testbed):
    validator = make_validator(ad_testbed, ldap_urls=[REFUSING_DC, ad_testbed.ldaps_url])
    try:
        alice = ad_testbed.user("alice")
        verdict = validator.validate(alice["upn"], alice["password"])
        assert verdict.outcome is Outcome.SUCCESS
        assert verdict.dc == ad_testbed.ldaps_url
        assert validator.reachable() == {REFUSING_DC: False, ad_testbed.ldaps_url: True}
    finally:
        validator.close()


def test_only_unreachable_dcs_give_directory_unavailable_never_a_wrong_password(ad_testbed):
    validator = make_validator(ad_testbed, ldap_urls=[REFUSING_DC, OTHER_REFUSING_DC])
    try:
        verdict = validator.validate(ad_testbed.user("alice")["upn"], "whatever-Pa55")
        assert verdict.outcome is Outcome.DIRECTORY_UNAVAILABLE
        assert verdict.ad_subcode == ""
    finally:
        validator.close()


def test_validate_async_runs_in_the_thread_pool(validator, ad_testbed):
    alice = ad_testbed.user("alice")

    async def sign_in_twice():
        deadline = time.monotonic() + 10
        return await asyncio.gather(validator.validate_async(alice["upn"], alice["password"], deadline=deadline),
                                    validator.validate_async(alice["upn"], "wrong-Pa55", deadline=deadline))

    good, bad = asyncio.run(sign_in_twice())
    assert good.outcome is Outcome.SUCCESS
    assert (bad.outcome, bad.ad_subcode) == (Outcome.INVALID_CREDENTIALS, "52e")


# --- Alternate ID ---------------------------------------------------------------------------------------


def test_alternate_id_by_mail_signs_in_as_the_found_account(alternate_id_validator, ad_testbed):
    mallory = ad_testbed.user("mallory")
    verdict = alternate_id_validator.validate(mallory["mail"], mallory["password"])
    assert verdict.outcome is Outcome.SUCCESS
    assert verdict.user.upn.lower() == mallory["upn"].lower()
    assert verdict.user.mail == mallory["mail"]


def test_alternate_id_wrong_password_is_52e(alternate_id_validator, ad_testbed):
    mallory = ad_testbed.user("mallory")
    verdict = alternate_id_validator.validate(mallory["mail"], "not-" + mallory["password"])
    assert (verdict.outcome, verdict.ad_subcode) == (Outcome.INVALID_CREDENTIALS, "52e")


@pytest.mark.parametrize("typed", ["*)(uid=*", "*", "alice*", "*)(|(mail=*"])
def test_filter_metacharacters_in_an_alternate_id_match_no_one(alternate_id_validator, ad_testbed, typed):
    verdict = alternate_id_validator.validate(typed, ad_testbed.user("alice")["password"])
    assert (verdict.outcome, verdict.detail) == (Outcome.INVALID_CREDENTIALS, "no_account")


def test_alternate_id_with_a_wrong_service_password_is_unavailable(ad_testbed):
    validator = make_validator(ad_testbed, login_attribute="mail", service_account=ad_testbed.service_account["upn"],
                               service_password="wrong-service-Pa55")
    try:
        mallory = ad_testbed.user("mallory")
        assert validator.validate(mallory["mail"], mallory["password"]).outcome is Outcome.DIRECTORY_UNAVAILABLE
    finally:
        validator.close()


# --- SASLprep must not happen ---------------------------------------------------------------------------


@pytest.fixture
def nbsp_user(ad_testbed):
    """A user whose password holds a no-break space (U+00A0) and a ligature, which SASLprep would rewrite."""
    name = f"nbsp{uuid.uuid4().hex[:8]}"
    upn = f"{name}@{ad_testbed.upn_suffix}"
    dn = f"CN={name},CN=Users,{ad_testbed.base_dn}"
    password = "No\u00a0Break-\ufb01x!9"
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ad_testbed.ca_file)
    server = ldap3.Server(ad_testbed.ldaps_url, get_info=ldap3.NONE, tls=tls)
    admin = ldap3.Connection(server, user=ad_testbed.admin_upn, password=ad_testbed.admin_password.encode(),
                             auto_bind=True)
    quoted = f'"{password}"'.encode("utf-16-le")
    assert admin.add(dn, ["top", "person", "organizationalPerson", "user"],
                     {"sAMAccountName": name, "userPrincipalName": upn, "unicodePwd": quoted,
                      "userAccountControl": 0x0200}), admin.result
    yield {"upn": upn, "password": password}
    admin.delete(dn)
    admin.unbind()


def test_passwords_reach_ad_unchanged_not_saslprepped(validator, nbsp_user):
    assert validator.validate(nbsp_user["upn"], nbsp_user["password"]).outcome is Outcome.SUCCESS
    saslprepped = nbsp_user["password"].replace("\u00a0", " ").replace("\ufb01", "fi")
    verdict = validator.validate(nbsp_user["upn"], saslprepped)
    assert (verdict.outcome, verdict.ad_subcode) == (Outcome.INVALID_CREDENTIALS, "52e")


# --- the account's state, without its password (a refresh asking whether the account is still enabled) ----

@pytest.fixture
def state_validator(ad_testbed):
    service = ad_testbed.service_account
    validator = make_validator(ad_testbed, service_account=service["upn"], service_password=service["password"])
    yield validator
    validator.close()


@pytest.mark.parametrize(("state", "outcome"), [
    ("good", Outcome.SUCCESS), ("disabled", Outcome.ACCOUNT_DISABLED), ("account_expired", Outcome.ACCOUNT_EXPIRED),
    ("locked_out", Outcome.ACCOUNT_LOCKED), ("must_change_password", Outcome.SUCCESS),
])
def test_account_state_is_read_with_the_service_account(state_validator, ad_testbed, state, outcome):
    for name, user in ad_testbed.users_in_state(state).items():
        verdict = state_validator.account_state(user["upn"])
        assert verdict.outcome is outcome, (name, verdict)
        assert verdict.user.upn.lower() == user["upn"].lower() and uuid.UUID(verdict.user.object_guid)


def test_account_state_of_an_unknown_or_hostile_name_is_no_account(state_validator, ad_testbed):
    for upn in (ad_testbed.unknown_user["upn"], "*@corp.example.test", "a)(|(objectClass=*)@corp.example.test"):
        assert state_validator.account_state(upn).outcome is Outcome.INVALID_CREDENTIALS


def test_account_state_needs_a_service_account(validator, ad_testbed):
    verdict = validator.account_state(ad_testbed.user("alice")["upn"])
    assert (verdict.outcome, verdict.detail) == (Outcome.AGENT_ERROR, "no_service_account")


def test_account_state_of_unreachable_dcs_is_unavailable(ad_testbed):
    service = ad_testbed.service_account
    validator = make_validator(ad_testbed, ldap_urls=[REFUSING_DC], service_account=service["upn"],
                               service_password=service["password"])
    try:
        assert validator.account_state(ad_testbed.user("alice")["upn"]).outcome is Outcome.DIRECTORY_UNAVAILABLE
    finally:
        validator.close()
