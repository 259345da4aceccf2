"""Spellings of one name against the real Samba DC (docs/SECURITY.md, second review, finding 1): an embedded portal
on Daphne, a real pta-agent, a user of this module's own. Samba binds ``name   @domain`` as the name, so each
spelling used to be a fresh lockout bucket whose guesses all reached AD and locked the account there.

Measured here too: which spellings the DC binds as the user (the rules in signin/services/names.py)."""

from __future__ import annotations

import ssl
import uuid

import httpx
import ldap3
import pytest

from signin.services.names import UsernameRefused, username_canonical, username_folded
from tests.fixtures.http import sign_in
from tests.fixtures.portal import site_with_agent

pytestmark = pytest.mark.integration

THRESHOLD = 5  # the tenant's default: below the DC's (the test bed's LOCKOUT_THRESHOLD, 10)
PASSWORD = "Spell!ings-0f-One"


def kv(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def connection(ad, user: str, password: str) -> ldap3.Connection:
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ad.ca_file)
    server = ldap3.Server(ad.ldaps_url, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=5)
    # Bytes, as the agent sends them (ldap3 takes both; types-ldap3 says str only).
    return ldap3.Connection(server, user=user, password=password.encode(), raise_exceptions=False)  # type: ignore[arg-type]


def binds(ad, user: str, password: str) -> bool:
    conn = connection(ad, user, password)
    try:
        return bool(conn.bind())
    finally:
        conn.unbind()


@pytest.fixture(scope="module")
def victim(ad_testbed):
    """A user of this module's own (the attack locks it on the code before the fix): sAMAccountName = the UPN's
    name, as for most accounts."""
    sam = f"sp{uuid.uuid4().hex[:10]}"
    dn = f"CN={sam},CN=Users,{ad_testbed.base_dn}"
    with connection(ad_testbed, ad_testbed.admin_upn, ad_testbed.admin_password) as admin:
        assert admin.add(dn, ["top", "person", "organizationalPerson", "user"], {
            "sAMAccountName": sam, "userPrincipalName": f"{sam}@{ad_testbed.upn_suffix}",
            "unicodePwd": f'"{PASSWORD}"'.encode("utf-16-le"), "userAccountControl": 0x0200}), admin.result
    yield {"sam": sam, "upn": f"{sam}@{ad_testbed.upn_suffix}", "dn": dn}
    with connection(ad_testbed, ad_testbed.admin_upn, ad_testbed.admin_password) as admin:
        admin.delete(dn)


def assert_binds(ad, user: str, password: str) -> None:
    conn = connection(ad, user, password)
    try:
        assert conn.bind(), conn.result  # locked in AD: invalidCredentials, "data 775"
    finally:
        conn.unbind()


def bad_password_count(ad, dn: str) -> int:
    """AD's own count of wrong passwords for the account (read as the domain administrator)."""
    with connection(ad, ad.admin_upn, ad.admin_password) as conn:
        conn.search(dn, "(objectClass=user)", search_scope=ldap3.BASE, attributes=["badPwdCount"])
        return int(conn.entries[0].badPwdCount.value or 0)


@pytest.fixture(scope="module")
def site(ad_testbed):
    """An embedded portal on Daphne with one pta-agent on the DC, and a confidential password-grant client."""
    with site_with_agent(ad_testbed) as (portal, node, tenant, agent):
        portal.manage("tenant_policy", tenant, "--password-grant", "on")
        legacy = kv(portal.manage("app_register", "--tenant", tenant, "--name", "Legacy mail client",
                                  "--grant", "password").stdout)
        yield portal, node, legacy


def spellings(name: str, domain: str) -> dict[str, str]:
    """What an attacker types for one account."""
    return {
        "plain": f"{name}@{domain}",
        "upper case": f"{name.upper()}@{domain.upper()}",
        "mixed case": f"{name.capitalize()}@{domain.title()}",
        "full width": f"{name.translate(FULL_WIDTH)}@{domain}",
        "full-width @": f"{name}\uff20{domain}",
        "1 space before @": f"{name} @{domain}",
        "3 spaces before @": f"{name}   @{domain}",
        "7 spaces before @": f"{name}       @{domain}",
        "space after @": f"{name}@ {domain}",
        "spaces at the ends": f"  {name}@{domain}  ",
        "ideographic space before @": f"{name}\u3000@{domain}",
        "trailing dot": f"{name}@{domain}.",
    }


FULL_WIDTH = {c: c + 0xFEE0 for c in range(0x21, 0x7F)}


def test_many_spellings_never_lock_the_ad_account(site, ad_testbed, victim):
    portal, node, legacy = site
    assert binds(ad_testbed, victim["upn"], PASSWORD)  # a right bind first: AD's count starts at zero
    assert bad_password_count(ad_testbed, victim["dn"]) == 0
    typed = spellings(victim["sam"], ad_testbed.upn_suffix)

    answers = {label: [sign_in(node.url, name, f"Wrong-{label}-{i}") for i in range(THRESHOLD)]
               for label, name in typed.items()}
    with httpx.Client(base_url=node.url, timeout=30) as client:
        grants = {label: client.post("/token/", data={
            "grant_type": "password", "username": name, "password": f"Wrong-grant-{label}", "scope": "openid",
            "client_id": legacy["client_id"], "client_secret": legacy["client_secret"]}).json()["outcome"]
            for label, name in typed.items()}

    # At most the tenant's threshold reached AD, whatever was typed: its account is not locked.
    reached_ad = portal.sql("SELECT count(*) FROM signin_signinevent WHERE ad_subcode <> ''")[0][0]
    assert bad_password_count(ad_testbed, victim["dn"]) == reached_ad == THRESHOLD < ad_testbed.lockout_threshold
    assert_binds(ad_testbed, victim["upn"], PASSWORD)
    # The first five guesses reached AD; every other spelling of the name is the same account: cloud_locked.
    outcomes = {label: [a.outcome for a in attempts] for label, attempts in answers.items()}
    assert outcomes.pop("plain") == ["invalid_credentials"] * THRESHOLD
    for label in ("1 space before @", "3 spaces before @", "7 spaces before @", "space after @",
                  "ideographic space before @"):
        refused = answers.pop(label)
        outcomes.pop(label)
        assert all(a.status == 400 and "A username has no spaces." in a.text for a in refused), label
    # No verified domain ends with a dot: no agent is asked, and the name is answered as nobody's (docs/SECURITY.md
    # 5a: a wrong password, then the platform's lockout), never as an unknown domain.
    assert set(outcomes.pop("trailing dot")) <= {"invalid_credentials", "cloud_locked"}
    assert all(set(each) == {"cloud_locked"} for each in outcomes.values()), outcomes
    assert set(grants.values()) <= {"cloud_locked", "unknown_domain"}, grants


# What the DC binds as the user, with the right password (no count spent), measured: each spelling it accepts
# is refused by the portal or has the account's canonical name; each it refuses names no account.
BOUND_BY_SAMBA = ["plain", "upper case", "mixed case", "1 space before @", "3 spaces before @", "7 spaces before @",
                  "space after @", "spaces at the ends"]
REFUSED_BY_SAMBA = ["full width", "full-width @", "ideographic space before @", "trailing dot"]


def test_every_spelling_the_dc_binds_as_the_user_is_refused_or_one_name(ad_testbed, victim):
    typed = spellings(victim["sam"], ad_testbed.upn_suffix)
    more = {"tab before @": f"{victim['sam']}\t@{ad_testbed.upn_suffix}",
            "space inside": f"{victim['sam'][:2]} {victim['sam'][2:]}@{ad_testbed.upn_suffix}",
            "zero-width space": f"{victim['sam']}\u200b@{ad_testbed.upn_suffix}",
            "trailing dot in the name": f"{victim['sam']}.@{ad_testbed.upn_suffix}"}
    bound = {label for label, name in {**typed, **more}.items() if binds(ad_testbed, name, PASSWORD)}
    assert bound == set(BOUND_BY_SAMBA)
    assert not bound & set(REFUSED_BY_SAMBA)
    for label in bound:
        try:
            canonical = username_canonical(typed=typed[label])
        except UsernameRefused:
            continue
        assert username_folded(upn=canonical) == username_folded(upn=victim["upn"]), label
