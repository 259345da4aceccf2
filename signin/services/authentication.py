"""When and how this browser session last signed in: what OpenID Connect's ``prompt``, ``max_age`` and the ID
token's ``auth_time`` are decided by. Kept in the session, not on the user: ``last_login`` is shared by every
session of the user, so a sign-in elsewhere would make an old session look fresh.

    session_authenticated(session=…)             # a sign-in completed (password, and the factor when asked)
    session_reauthentication_require(session=…, request_key=…)
                                                 # prompt=login, or max_age exceeded: that authorization request
                                                 # gets its code only after a new sign-in, which alone clears it
    session_authentication(session=…)            # what the authorize endpoint reads
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django_otp import DEVICE_ID_SESSION_KEY

from signin.services.lockout import place_recognised
from signin.services.mfa import mfa_decide
from tenant.models import User
from tenant.selectors import location_for_address

AUTHENTICATED_AT_KEY = "pta_authenticated_at"
# How the session's sign-in was made (RFC 8176 amr values: signin/services/passkeys.py amr_values).
AMR_KEY = "pta_amr"
# When this session last gave a second factor (epoch seconds): the self-service page's changes need a recent one.
FACTOR_AT_KEY = "pta_factor_at"
PASSKEY_AT_KEY = "pta_passkey_at"  # the same, when that factor was a passkey
REAUTHENTICATE_KEY = "pta_reauthenticate"
# A browser abandons few sign-ins in a row. Beyond this many, every request waits for the new sign-in (ALL): a mark
# is never dropped, or piling up new ones would free the one an application is waiting on.
PENDING_REQUESTS_KEPT = 16
ALL = "*"


@dataclass(frozen=True)
class SessionAuthentication:
    at: float | None  # epoch seconds of the sign-in that completed in this session; None: not recorded
    mfa: bool  # this session's sign-in verified a second factor
    # The authorization requests (request_key) that asked for a new sign-in which has not completed yet; ALL when
    # a session from before the marks were per request holds the old mark.
    pending: frozenset[str] = frozenset()
    # RFC 8176 methods of that sign-in (pwd, otp, hwk, swk, mfa); empty when not recorded.
    amr: tuple[str, ...] = ()

    @property
    def phishing_resistant(self) -> bool:
        """The sign-in's second factor was a passkey."""
        return "hwk" in self.amr or "swk" in self.amr

    def reauthentication_pending(self, request_key: str) -> bool:
        return ALL in self.pending or request_key in self.pending

    def older_than(self, seconds: int, *, now: float | None = None) -> bool:
        return self.at is None or (now if now is not None else time.time()) - self.at > seconds


def session_authenticated(*, session, amr: list[str] | None = None) -> None:
    """A sign-in completed in this session (call after ``login()``, which may have renewed the session), by the
    methods ``amr`` names."""
    session.set_expiry(None)  # a signed-in session's own lifetime (SESSION_COOKIE_AGE), not the sign-in's minutes
    session[AUTHENTICATED_AT_KEY] = time.time()
    session[AMR_KEY] = list(amr or ["pwd"])
    session.pop(REAUTHENTICATE_KEY, None)


def session_factor_given(*, session, passkey: bool) -> None:
    """A second factor was verified in this session just now; ``passkey``: it was a passkey (the security page then
    lets a user who has one change their passkeys on that alone, never on a code a phishing page could relay)."""
    session[FACTOR_AT_KEY] = time.time()
    if passkey:
        session[PASSKEY_AT_KEY] = session[FACTOR_AT_KEY]
    else:
        session.pop(PASSKEY_AT_KEY, None)


def session_reauthentication_require(*, session, request_key: str) -> None:
    """This authorization request (its request_key) gets a code only after a new sign-in. Only this one: an
    abandoned prompt=login must not send the browser's other authorizations through the sign-in pages."""
    keys = [*(key for key in _pending_keys(session) if key != request_key), request_key]
    session[REAUTHENTICATE_KEY] = [ALL] if ALL in keys or len(keys) > PENDING_REQUESTS_KEPT else keys


def _pending_keys(session) -> list[str]:
    value = session.get(REAUTHENTICATE_KEY)
    if value is True:  # the mark of an older release: every request
        return [ALL]
    return [str(key) for key in value] if isinstance(value, list) else []


def session_authentication(*, session) -> SessionAuthentication:
    at = session.get(AUTHENTICATED_AT_KEY)
    return SessionAuthentication(at=float(at) if at is not None else None,
                                 mfa=bool(session.get(DEVICE_ID_SESSION_KEY)),  # django-otp's marker
                                 pending=frozenset(_pending_keys(session)),
                                 amr=tuple(str(v) for v in session.get(AMR_KEY) or ()))


def session_mfa_due(*, signed_in: SessionAuthentication, user: User, ip: str, device: str,
                    application_requires: bool = False) -> bool:
    """Whether the tenant's MFA policy as it stands now (from the network the browser is on now), or the application
    the code would be for (``application_requires``), asks this browser's sign-in for the second factor that this
    session never verified (the policy changed since, the session was signed in by password alone from a place
    that is no longer familiar or a trusted location it has left, or an application that requires MFA)."""
    if signed_in.mfa:
        return False
    tenant = user.tenant if user.tenant_id else None
    place = place_recognised(tenant=tenant, username=user.upn, ip=ip, device=device)
    return mfa_decide(tenant=tenant, user=user, familiar_address=place.familiar_address,
                      known_device=place.known_device, location=location_for_address(tenant=tenant, ip=ip),
                      application_requires=application_requires).required
