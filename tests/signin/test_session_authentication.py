"""What a session knows of its own sign-in: when it completed (auth_time, max_age), whether a new one was asked
(prompt=login), and whether the tenant's MFA policy now asks a factor the session never gave (prompt=none)."""

from __future__ import annotations

import pytest
from django.contrib.sessions.backends.cache import SessionStore
from django_otp import DEVICE_ID_SESSION_KEY

from signin.services.authentication import (
    PENDING_REQUESTS_KEPT,
    REAUTHENTICATE_KEY,
    session_authenticated,
    session_authentication,
    session_mfa_due,
    session_reauthentication_require,
)
from tenant.models import Tenant


def test_only_a_completed_sign_in_clears_a_requested_one():
    session = SessionStore()
    assert session_authentication(session=session).older_than(0)  # never signed in: older than anything
    session_authenticated(session=session)
    signed_in = session_authentication(session=session)
    assert not signed_in.reauthentication_pending("request-1") and not signed_in.older_than(60)
    assert signed_in.at is not None and signed_in.older_than(0, now=signed_in.at + 1)
    session_reauthentication_require(session=session, request_key="request-1")
    assert session_authentication(session=session).reauthentication_pending("request-1")
    session_authenticated(session=session)
    assert not session_authentication(session=session).reauthentication_pending("request-1")


def test_a_requested_sign_in_holds_up_its_own_authorization_request_only_and_never_drops_a_mark():
    session = SessionStore()
    session_authenticated(session=session)
    session_reauthentication_require(session=session, request_key="abandoned")
    signed_in = session_authentication(session=session)
    assert signed_in.reauthentication_pending("abandoned") and not signed_in.reauthentication_pending("another")
    # Piling up other marks never frees the first: past the limit every request waits for the sign-in.
    for n in range(PENDING_REQUESTS_KEPT):
        session_reauthentication_require(session=session, request_key=f"other-{n}")
    signed_in = session_authentication(session=session)
    assert signed_in.reauthentication_pending("abandoned") and signed_in.reauthentication_pending("another")
    session_authenticated(session=session)
    assert not session_authentication(session=session).reauthentication_pending("abandoned")
    session[REAUTHENTICATE_KEY] = True  # a session marked by the release before: every request waits
    assert session_authentication(session=session).reauthentication_pending("any")


@pytest.mark.django_db
def test_a_second_factor_is_due_when_the_policy_asks_one_the_session_never_gave(tenant_a, tenant_admin_factory):
    user = tenant_admin_factory(tenant_a)
    session = SessionStore()
    session_authenticated(session=session)
    due = lambda: session_mfa_due(signed_in=session_authentication(session=session), user=user,  # noqa: E731
                                  ip="192.0.2.1", device="")
    assert not due()  # policy off
    Tenant.objects.filter(pk=tenant_a.pk).update(mfa_policy=Tenant.MfaPolicy.ALL)
    user.tenant.refresh_from_db()
    assert due()
    session[DEVICE_ID_SESSION_KEY] = "otp_totp.totpdevice/1"  # this session verified the factor
    assert not due()
