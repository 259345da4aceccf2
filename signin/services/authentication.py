"""When and how this browser session last signed in: what OpenID Connect's ``prompt``, ``max_age`` and the ID
token's ``auth_time`` are decided by. Kept in the session, not on the user: ``last_login`` is shared by every
session of the user, so a sign-in elsewhere would make an old session look fresh.

    session_authenticated(session=…)             # a sign-in completed (password, and the factor when asked)
    session_reauthentication_require(session=…)  # prompt=login, or max_age exceeded: the next code needs a new
                                                 # sign-in; only session_authenticated() clears it
    session_authentication(session=…)            # what the authorize endpoint reads
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django_otp import DEVICE_ID_SESSION_KEY

from signin.services.lockout import place_recognised
from signin.services.mfa import mfa_decide
from tenant.models import User

AUTHENTICATED_AT_KEY = "pta_authenticated_at"
REAUTHENTICATE_KEY = "pta_reauthenticate"


@dataclass(frozen=True)
class SessionAuthentication:
    at: float | None  # epoch seconds of the sign-in that completed in this session; None: not recorded
    mfa: bool  # this session's sign-in verified a second factor
    reauthentication_pending: bool  # a new sign-in was asked for and has not completed yet

    def older_than(self, seconds: int, *, now: float | None = None) -> bool:
        return self.at is None or (now if now is not None else time.time()) - self.at > seconds


def session_authenticated(*, session) -> None:
    """A sign-in completed in this session (call after ``login()``, which may have renewed the session)."""
    session.set_expiry(None)  # a signed-in session's own lifetime (SESSION_COOKIE_AGE), not the sign-in's minutes
    session[AUTHENTICATED_AT_KEY] = time.time()
    session.pop(REAUTHENTICATE_KEY, None)


def session_reauthentication_require(*, session) -> None:
    session[REAUTHENTICATE_KEY] = True


def session_authentication(*, session) -> SessionAuthentication:
    at = session.get(AUTHENTICATED_AT_KEY)
    return SessionAuthentication(at=float(at) if at is not None else None,
                                 mfa=bool(session.get(DEVICE_ID_SESSION_KEY)),  # django-otp's marker
                                 reauthentication_pending=bool(session.get(REAUTHENTICATE_KEY)))


def session_mfa_due(*, signed_in: SessionAuthentication, user: User, ip: str, device: str) -> bool:
    """Whether the tenant's MFA policy, as it stands now, would ask this browser's sign-in for the second factor
    that this session never verified (the policy changed since, or the session was signed in by password alone
    from a place that is no longer familiar)."""
    if signed_in.mfa:
        return False
    tenant = user.tenant if user.tenant_id else None
    place = place_recognised(tenant=tenant, username=user.upn, ip=ip, device=device)
    return mfa_decide(tenant=tenant, user=user, familiar_address=place.familiar_address,
                      known_device=place.known_device).required
