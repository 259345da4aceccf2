"""The agent reads a signed-in user's transitive groups (tokenGroups) against the Samba DC: nested groups count,
a removal shows at the next sign-in, and the account-state check and the password change carry them too."""

from __future__ import annotations

import pta_protocol as protocol
import pytest
from pta_protocol import Outcome

from tests.fixtures.directory_admin import DirectoryAdmin
from tests.integration.test_directory import make_validator

pytestmark = pytest.mark.integration

PASSWORD = "Gr0ups!Pa55-word"


@pytest.fixture
def directory(ad_testbed):
    admin = DirectoryAdmin(ad_testbed)
    yield admin
    admin.close()


@pytest.fixture
def nested(directory):
    """Group A holds group B, which holds the user."""
    user = directory.unique("gu")
    upn = directory.add_user(user, PASSWORD)
    inner, outer = directory.unique("gB"), directory.unique("gA")
    directory.add_group(inner, user)
    directory.add_group(outer, inner)
    return {"user": user, "upn": upn, "inner": inner, "outer": outer}


def names(verdict) -> set[str]:
    return {group["name"] for group in verdict.groups or []}


def test_nested_groups_count_and_a_removal_shows_at_the_next_sign_in(ad_testbed, directory, nested):
    validator = make_validator(ad_testbed)
    try:
        verdict = validator.validate(nested["upn"], PASSWORD, groups=True)
        assert verdict.outcome is Outcome.SUCCESS and not verdict.groups_truncated
        assert {nested["inner"], nested["outer"], "Domain Users"} <= names(verdict)
        outer = next(group for group in verdict.groups or [] if group["name"] == nested["outer"])
        assert outer["dn"] == directory.dn(nested["outer"]) and len(outer["id"]) == 36
        directory.remove_member(nested["inner"], nested["user"])
        again = validator.validate(nested["upn"], PASSWORD, groups=True)
        assert again.outcome is Outcome.SUCCESS
        assert not {nested["inner"], nested["outer"]} & names(again) and "Domain Users" in names(again)
        # Not asked, nothing read: the verdict says "not read", never "no groups".
        assert validator.validate(nested["upn"], PASSWORD).groups is None
        assert validator.validate(nested["upn"], "wrong-Pa55", groups=True).groups is None
    finally:
        validator.close()


def test_an_agent_set_not_to_read_groups_reads_none(ad_testbed, nested):
    validator = make_validator(ad_testbed, read_groups=False)
    try:
        assert not validator.can_read_groups
        verdict = validator.validate(nested["upn"], PASSWORD, groups=True)
        assert verdict.outcome is Outcome.SUCCESS and verdict.groups is None
    finally:
        validator.close()


def test_the_account_state_check_and_the_alternate_id_sign_in_carry_the_groups(ad_testbed, nested):
    service = ad_testbed.service_account
    validator = make_validator(ad_testbed, service_account=service["upn"], service_password=service["password"])
    try:
        state = validator.account_state(nested["upn"], groups=True)
        assert state.outcome is Outcome.SUCCESS and {nested["inner"], nested["outer"]} <= names(state)
        by_name = make_validator(ad_testbed, login_attribute="sAMAccountName", service_account=service["upn"],
                                 service_password=service["password"])
        try:
            verdict = by_name.validate(nested["user"], PASSWORD, groups=True)
            assert verdict.outcome is Outcome.SUCCESS and {nested["inner"], nested["outer"]} <= names(verdict)
        finally:
            by_name.close()
    finally:
        validator.close()


def test_a_password_change_signs_in_with_the_groups(ad_testbed, directory):
    user, group = directory.unique("gc"), directory.unique("gG")
    upn = directory.add_user(user, PASSWORD, must_change=True)
    directory.add_group(group, user)
    service = ad_testbed.service_account
    validator = make_validator(ad_testbed, service_account=service["upn"], service_password=service["password"])
    try:
        verdict = validator.change_password(upn, PASSWORD, "Changed!Gr0ups-9", groups=True)
        assert verdict.outcome is Outcome.PASSWORD_CHANGED and group in names(verdict)
    finally:
        validator.close()


def test_a_user_in_two_hundred_groups_gets_them_all_within_one_result_frame(ad_testbed, directory):
    user = directory.unique("gm")
    upn = directory.add_user(user, PASSWORD)
    many = [directory.unique(f"gM{i:03d}x") for i in range(200)]
    for group in many:
        directory.add_group(group, user)
    validator = make_validator(ad_testbed)
    try:
        verdict = validator.validate(upn, PASSWORD, groups=True)
        assert set(many) <= names(verdict) and not verdict.groups_truncated
        frame = protocol.encode(protocol.Result(request_id="r", outcome="success", groups=verdict.groups))
        read = protocol.decode(frame)
        assert len(frame) < protocol.MAX_FRAME_BYTES and isinstance(read, protocol.Result)
        assert read.groups == verdict.groups
    finally:
        validator.close()
