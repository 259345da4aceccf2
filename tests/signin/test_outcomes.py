"""The one taxonomy: every outcome of the wire and of the hand-off is an outcome of the portal, with its words."""

import pta_protocol as protocol

from agents.handoff import HandoffOutcome
from signin.outcomes import OUTCOME_MESSAGES, Outcome


def test_every_wire_and_hand_off_outcome_is_a_portal_outcome_with_a_message():
    for owned in (*protocol.Outcome, *HandoffOutcome):
        outcome = Outcome(owned)
        assert outcome.value == owned.value and outcome.name == owned.name
        assert outcome.message


def test_every_outcome_has_a_message():
    assert set(OUTCOME_MESSAGES) == set(Outcome)
    assert all(message.strip() for message in OUTCOME_MESSAGES.values())


def test_the_portal_decides_only_what_nobody_else_does():
    others = {o.value for o in (*protocol.Outcome, *HandoffOutcome)}
    assert {o.value for o in Outcome} - others == {
        "unknown_domain", "cloud_locked", "identity_conflict", "session_expired", "mfa_required", "mfa_failed",
        "location_blocked", "app_not_assigned"}


def test_the_codes_are_a_stable_interface():
    # Pages (data-outcome, PTA-Outcome), records, metrics and the bench read these strings: never rename one.
    assert [o.value for o in Outcome] == [
        "success", "invalid_credentials", "logon_hours", "workstation_restricted", "password_expired",
        "account_disabled", "account_expired", "password_must_change", "account_locked", "directory_unavailable",
        "unknown_domain", "cloud_locked", "no_agent_available", "agent_timeout", "agent_error", "identity_conflict",
        "too_many_signins", "session_expired", "mfa_required", "mfa_failed", "password_changed", "password_rejected",
        "location_blocked", "app_not_assigned"]
