"""Every way a sign-in can end, and what the page says for each: the one taxonomy that pages (``data-outcome``,
the ``PTA-Outcome`` header), records, metrics and the OAuth error bodies use.

Each code has one owner. An agent reports the directory's answers (``pta_protocol.Outcome``: they cross the
wire); the hand-off ends a sign-in without one (``agents.handoff.HandoffOutcome``); the portal decides the rest
here. This enum holds them all, by the owner's value, so a code's string is written once. Turn an outcome from
the hand-off into this enum with ``Outcome(validation.outcome)`` before comparing it by identity.
"""

from __future__ import annotations

import enum

import pta_protocol as protocol

from agents.handoff import HandoffOutcome

_wire = protocol.Outcome


class Outcome(enum.StrEnum):
    SUCCESS = _wire.SUCCESS
    INVALID_CREDENTIALS = _wire.INVALID_CREDENTIALS
    LOGON_HOURS = _wire.LOGON_HOURS
    WORKSTATION_RESTRICTED = _wire.WORKSTATION_RESTRICTED
    PASSWORD_EXPIRED = _wire.PASSWORD_EXPIRED
    ACCOUNT_DISABLED = _wire.ACCOUNT_DISABLED
    ACCOUNT_EXPIRED = _wire.ACCOUNT_EXPIRED
    PASSWORD_MUST_CHANGE = _wire.PASSWORD_MUST_CHANGE
    ACCOUNT_LOCKED = _wire.ACCOUNT_LOCKED
    DIRECTORY_UNAVAILABLE = _wire.DIRECTORY_UNAVAILABLE
    UNKNOWN_DOMAIN = "unknown_domain"  # no tenant has verified the UPN's domain
    CLOUD_LOCKED = "cloud_locked"  # the account's cloud lockout refused the guess before any agent
    NO_AGENT_AVAILABLE = HandoffOutcome.NO_AGENT_AVAILABLE
    AGENT_TIMEOUT = HandoffOutcome.AGENT_TIMEOUT
    AGENT_ERROR = HandoffOutcome.AGENT_ERROR
    IDENTITY_CONFLICT = "identity_conflict"  # the directory's answer names someone this portal will not sign in
    TOO_MANY_SIGNINS = HandoffOutcome.TOO_MANY_SIGNINS  # also: the account's guesses in flight left no room
    SESSION_EXPIRED = "session_expired"  # the sign-in's state was gone (interrupted, or too slow)
    MFA_REQUIRED = "mfa_required"
    MFA_FAILED = "mfa_failed"
    PASSWORD_CHANGED = _wire.PASSWORD_CHANGED
    PASSWORD_REJECTED = _wire.PASSWORD_REJECTED
    # The client's address is in one of the tenant's blocked locations: refused before any agent or lockout count.
    LOCATION_BLOCKED = "location_blocked"
    # The application requires assignment and this user is neither assigned nor in an assigned group: the sign-in
    # may succeed (the portal session), but the application gets no code or token (applications/selectors.py).
    APP_NOT_ASSIGNED = "app_not_assigned"

    @property
    def message(self) -> str:
        return OUTCOME_MESSAGES[self]


OUTCOME_MESSAGES: dict[Outcome, str] = {
    Outcome.SUCCESS: "You are signed in.",
    Outcome.INVALID_CREDENTIALS: "Your account or password is incorrect.",
    Outcome.LOGON_HOURS: "You can't sign in at this time of day.",
    Outcome.WORKSTATION_RESTRICTED: "You can't sign in from here.",
    Outcome.PASSWORD_EXPIRED: "Your password has expired.",
    Outcome.ACCOUNT_DISABLED: "Your account has been disabled.",
    Outcome.ACCOUNT_EXPIRED: "Your account has expired.",
    Outcome.PASSWORD_MUST_CHANGE: "You must change your password.",
    Outcome.ACCOUNT_LOCKED: "Your account is locked.",
    Outcome.DIRECTORY_UNAVAILABLE: "We can't reach your organisation's directory right now. Try again in a moment.",
    Outcome.UNKNOWN_DOMAIN: "We don't know that organisation. Check the part of your username after the @.",
    Outcome.CLOUD_LOCKED: "Your account is temporarily locked to prevent unauthorised use. Try again later.",
    Outcome.LOCATION_BLOCKED: "Your organisation doesn't allow sign-ins from your network or location.",
    Outcome.APP_NOT_ASSIGNED: "You don't have access to this application.",
    Outcome.NO_AGENT_AVAILABLE: "Your organisation's sign-in service is not available right now. Try again later.",
    Outcome.AGENT_TIMEOUT: "Your organisation's sign-in service did not answer in time. Try again.",
    Outcome.AGENT_ERROR: "Your organisation's sign-in service could not check your password. Try again later.",
    Outcome.SESSION_EXPIRED: "Your sign-in was interrupted or took too long. Please start again.",
    Outcome.TOO_MANY_SIGNINS: "Too many people are signing in right now. Try again in a moment.",
    Outcome.IDENTITY_CONFLICT: "This account can't be signed in here. Contact your organisation's administrator.",
    Outcome.MFA_REQUIRED: "Enter the code from your authenticator app.",
    Outcome.MFA_FAILED: "That code didn't work. Check your authenticator app and try again.",
    Outcome.PASSWORD_CHANGED: "Your password has been changed.",
    Outcome.PASSWORD_REJECTED: "Your organisation's directory did not accept the new password. Choose another one.",
}


# What a person can do about an answer that another try with the same password will not change: said under it,
# with the tenant's helpdesk contact (signin/helpdesk.py), on the page that replaces the password form.
OUTCOME_NEXT_STEPS: dict[Outcome, str] = {
    Outcome.LOGON_HOURS: "Your organisation lets this account sign in at certain hours only. Try again later, "
                         "or ask your helpdesk to change your hours.",
    Outcome.WORKSTATION_RESTRICTED: "Your organisation lets this account sign in from certain computers only. "
                                    "Ask your helpdesk.",
    Outcome.PASSWORD_EXPIRED: "Your password can't be changed here right now. To get a new password, contact "
                              "your organisation's helpdesk.",
    Outcome.PASSWORD_MUST_CHANGE: "Your password can't be changed here right now. To get a new password, contact "
                                  "your organisation's helpdesk.",
    Outcome.ACCOUNT_DISABLED: "Only your organisation can enable it again: contact your helpdesk.",
    Outcome.ACCOUNT_EXPIRED: "Your organisation set an end date on this account. To have it extended, contact "
                             "your helpdesk.",
    Outcome.ACCOUNT_LOCKED: "Your organisation's directory locked it, usually after too many wrong passwords. It "
                            "may unlock by itself after a while; your helpdesk can unlock it now.",
    Outcome.CLOUD_LOCKED: "It unlocks by itself. If the wrong passwords were not yours, tell your helpdesk.",
    # Any password from this network gets the same answer: no password box, what to do instead.
    Outcome.LOCATION_BLOCKED: "Connect from a network your organisation allows (your office, or its VPN), then try "
                              "again. If you need to sign in from here, ask your helpdesk.",
    Outcome.APP_NOT_ASSIGNED: "Your organisation decides who may use each application, and has not given this "
                              "account access to this one. If you need it, ask your helpdesk for access. If you "
                              "were given access just now, sign in again.",
}
