"""The AD testbed is a real directory: LDAPS binds answer as Windows AD does, `data` sub-codes included."""

import datetime
import re
import ssl

import ldap3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ldap3.core.exceptions import LDAPSocketOpenError

# Plain LDAP against the testbed: no Django, no database.
pytestmark = [pytest.mark.integration]

INVALID_CREDENTIALS = 49
STRONGER_AUTH_REQUIRED = 8
DATA_CODE = re.compile(r"\bdata ([0-9a-f]+)\b")

GOOD_USERS = ["alice", "bob", "ivan", "judy", "mallory"]
REFUSED_USERS = [
    ("carol", "533"),  # disabled
    ("dave", "701"),  # account expired
    ("erin", "773"),  # must change password
    ("frank", "532"),  # password expired
    ("grace", "530"),  # outside logon hours
    ("heidi", "775"),  # locked out
]


def ldaps_server(testbed, ca_file=None):
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file or testbed.ca_file)
    return ldap3.Server(testbed.ldaps_url, tls=tls, get_info=ldap3.NONE, connect_timeout=5)


def bind(testbed, upn, password):
    """A simple bind over verified LDAPS, the password sent as UTF-8 bytes; returns (ok, result)."""
    conn = ldap3.Connection(ldaps_server(testbed), user=upn, password=password.encode("utf-8"))
    try:
        ok = conn.bind()
        return ok, conn.result
    finally:
        conn.unbind()


def data_code(result):
    match = DATA_CODE.search(result["message"])
    assert match, f"no `data` sub-code in {result!r}"
    return match.group(1)


@pytest.mark.parametrize("name", GOOD_USERS)
def test_good_user_binds(ad_testbed, name):
    user = ad_testbed.user(name)
    assert user["state"] == "good"
    assert user["expected"] == "success"

    ok, result = bind(ad_testbed, user["upn"], user["password"])

    assert ok, result


@pytest.mark.parametrize(("name", "code"), REFUSED_USERS)
def test_refused_user_answers_its_data_code(ad_testbed, name, code):
    user = ad_testbed.user(name)
    assert user["expected"] == code

    ok, result = bind(ad_testbed, user["upn"], user["password"])

    assert not ok
    assert result["result"] == INVALID_CREDENTIALS
    assert data_code(result) == code


def test_wrong_password_answers_52e(ad_testbed):
    bob = ad_testbed.user("bob")

    ok, result = bind(ad_testbed, bob["upn"], "Wrong!" + bob["password"])

    assert not ok
    assert result["result"] == INVALID_CREDENTIALS
    assert data_code(result) == "52e"
    # A good bind resets bob's bad-password count, so reruns on a kept testbed never lock him out.
    assert bind(ad_testbed, bob["upn"], bob["password"])[0]


def test_unknown_user_answers_52e_like_a_wrong_password(ad_testbed):
    ok, result = bind(ad_testbed, ad_testbed.unknown_user["upn"], "Any!Passw0rd-1")

    assert not ok
    assert result["result"] == INVALID_CREDENTIALS
    assert data_code(result) == ad_testbed.unknown_user["expected"] == "52e"


def test_service_account_finds_users_by_mail(ad_testbed):
    svc = ad_testbed.service_account
    alice = ad_testbed.user("alice")
    conn = ldap3.Connection(ldaps_server(ad_testbed), user=svc["upn"], password=svc["password"].encode("utf-8"))
    assert conn.bind(), conn.result
    try:
        conn.search(
            ad_testbed.base_dn,
            f"(&(objectClass=user)(mail={alice['mail']}))",
            attributes=["userPrincipalName", "displayName"],
        )
        assert [(e.userPrincipalName.value, e.displayName.value) for e in conn.entries] == [
            (alice["upn"], alice["display_name"])
        ]
        conn.search(ad_testbed.base_dn, "(objectClass=domain)", ldap3.BASE, attributes=["lockoutThreshold"])
        assert int(conn.entries[0].lockoutThreshold.value) == ad_testbed.lockout_threshold
    finally:
        conn.unbind()


def test_plain_bind_without_tls_is_refused(ad_testbed):
    alice = ad_testbed.user("alice")
    server = ldap3.Server(ad_testbed.ldap_url, get_info=ldap3.NONE, connect_timeout=5)
    conn = ldap3.Connection(server, user=alice["upn"], password=alice["password"].encode("utf-8"))
    try:
        ok = conn.bind()
        assert not ok
        assert conn.result["result"] == STRONGER_AUTH_REQUIRED
        assert conn.result["description"] == "strongerAuthRequired"
    finally:
        conn.unbind()


def test_certificate_from_another_ca_fails_the_handshake(ad_testbed, tmp_path):
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(self_signed_ca_pem())
    alice = ad_testbed.user("alice")
    server = ldaps_server(ad_testbed, ca_file=str(other_ca))
    conn = ldap3.Connection(server, user=alice["upn"], password=alice["password"].encode("utf-8"))

    with pytest.raises(LDAPSocketOpenError, match="CERTIFICATE_VERIFY_FAILED"):
        conn.open()


def self_signed_ca_pem():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Some other CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)
