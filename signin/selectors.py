"""Reads of the sign-in under way in a session: which tenant it is for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The session's sign-in state after the username step (signin/views.py: username, organisation, next, tenant_id).
SESSION_KEY = "pta_signin"
# A half-done sign-in waiting for its second factor (signin/views.py).
MFA_SESSION_KEY = "pta_mfa"


def signin_tenant_id(*, session: Mapping[str, Any]) -> str:
    """The id of the tenant the sign-in in ``session`` is for: the one the typed name's domain routed to at the
    username step (never an account's: the pages before a right password must not tell one), else the one of the
    user waiting for the second factor (the password was right). Empty: no sign-in, or a domain no tenant
    verified. The username step and the second factor's start each drop the other's state, so at most one is
    there."""
    state = session.get(SESSION_KEY) or {}
    pending = session.get(MFA_SESSION_KEY) or {}
    return str(state.get("tenant_id") or pending.get("tenant_id") or "")
