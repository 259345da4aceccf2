"""From a checked request (or an IdP-initiated link) to the answer: the pending request kept in the browser's
session while the person goes through the sign-in pages, who the assertion is about, and the NameID.

    sso_pending_store(session=…, request=…)  # a key for the way back from the sign-in pages
    sso_pending(session=…, key=…)            # that request again (None: unknown or expired)
    sso_identity(user=…, sp=…, session=…)    # NameID, attributes, AuthnInstant
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from django.core.cache import cache

from samlidp.models import ServiceProvider
from samlidp.services.idp import NAMEID_FORMATS, Identity
from samlidp.services.requests import AuthnRequest
from signin.services.authentication import session_authentication
from signin.services.group_claims import groups_claims
from tenant.models import User

PENDING_KEY = "pta_saml_pending"
# The SPs this session signed in to (for single logout): SP pk → NameID, its format, the SessionIndex.
PARTICIPANTS_KEY = "pta_saml_sps"
PENDING_SECONDS = 600  # as long as a sign-in may take
PENDING_KEPT = 8
TICKET_PREFIX = "pta:saml:ticket:"
TICKET_SECONDS = 120  # a browser has few SSO requests under way at once; the oldest go first


def sso_pending_store(*, session, request: AuthnRequest) -> str:
    key = secrets.token_urlsafe(16)
    now = time.time()
    kept = {k: v for k, v in dict(session.get(PENDING_KEY) or {}).items()
            if isinstance(v, dict) and now - float(v.get("created", 0)) < PENDING_SECONDS}
    kept = dict(sorted(kept.items(), key=lambda item: item[1]["created"])[-(PENDING_KEPT - 1):])
    kept[key] = {"sp": request.sp.pk, "id": request.request_id, "acs": request.acs_url,
                 "relay_state": request.relay_state, "force": request.force_authn, "passive": request.is_passive,
                 "contexts": _contexts_stored(request), "created": now}
    session[PENDING_KEY] = kept
    return key


def sso_pending(*, session, key: str) -> dict | None:
    found = (session.get(PENDING_KEY) or {}).get(key)
    if not isinstance(found, dict) or time.time() - float(found.get("created", 0)) >= PENDING_SECONDS:
        return None
    return found


def sso_pending_drop(*, session, key: str) -> None:
    kept = dict(session.get(PENDING_KEY) or {})
    if kept.pop(key, None) is not None:
        session[PENDING_KEY] = kept


def sso_ticket_issue(*, request: AuthnRequest) -> str:
    """A checked request kept TICKET_SECONDS under a one-time ticket (the POST binding's way to a GET)."""
    ticket = secrets.token_urlsafe(24)
    cache.set(f"{TICKET_PREFIX}{ticket}", {
        "tenant": str(request.sp.application.tenant_id), "sp": request.sp.pk, "id": request.request_id,
        "acs": request.acs_url, "relay_state": request.relay_state, "force": request.force_authn,
        "passive": request.is_passive, "contexts": _contexts_stored(request)}, timeout=TICKET_SECONDS)
    return ticket


def sso_ticket_redeem(*, tenant, ticket: str) -> AuthnRequest | None:
    """The request behind a ticket, once (None: unknown, expired, used, or another tenant's)."""
    if not ticket or len(ticket) > 64:
        return None
    key = f"{TICKET_PREFIX}{ticket}"
    found = cache.get(key)
    if not isinstance(found, dict) or found.get("tenant") != str(tenant.pk) or not cache.delete(key):
        return None  # the delete that succeeds is the one use
    sp = ServiceProvider.objects.select_related("application").filter(pk=found["sp"]).first()
    if sp is None:
        return None
    return AuthnRequest(sp=sp, request_id=found["id"], acs_url=found["acs"], relay_state=found["relay_state"],
                        force_authn=found["force"], is_passive=found["passive"],
                        authn_contexts=None if found.get("contexts") is None else tuple(found["contexts"]))


def _contexts_stored(request: AuthnRequest) -> list[str] | None:
    return None if request.authn_contexts is None else list(request.authn_contexts)


def persistent_name_id(*, user: User, sp: ServiceProvider) -> str:
    """Opaque, the same for this user at this SP every time, different at every other SP, and never another
    person's: a keyed hash (the SP's own secret) of the user's subject, which is never reused (as OIDC's sub)."""
    digest = hmac.new(sp.pairwise_secret.encode(), str(user.subject).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sso_identity(*, user: User, sp: ServiceProvider, session) -> Identity:
    if sp.nameid_format == ServiceProvider.NameIdFormat.PERSISTENT:
        name_id = persistent_name_id(user=user, sp=sp)
    elif sp.nameid_format == ServiceProvider.NameIdFormat.EMAIL:
        name_id = user.email or user.upn
    else:
        name_id = user.upn
    attributes: dict[str, list[str]] = {"upn": [user.upn], "name": [user.display_name or user.upn]}
    if user.email:
        attributes["email"] = [user.email]
    if sp.send_groups:
        groups = groups_claims(user=user, application=sp.application).get("groups")
        if isinstance(groups, list) and groups:
            attributes["groups"] = [str(group) for group in groups]
    signed_in = session_authentication(session=session)
    if signed_in.amr:  # which factor: a passkey is hwk or swk (phishing-resistant), a code otp
        attributes["amr"] = list(signed_in.amr)
    return Identity(name_id=name_id, name_id_format=NAMEID_FORMATS[str(sp.nameid_format)], attributes=attributes,
                    authn_instant=signed_in.at if signed_in.at is not None else time.time(), mfa=signed_in.mfa,
                    amr=signed_in.amr)


def sso_participant_record(*, session, sp: ServiceProvider, identity: Identity, session_index: str) -> None:
    participants = dict(session.get(PARTICIPANTS_KEY) or {})
    participants[str(sp.pk)] = {"name_id": identity.name_id, "format": identity.name_id_format,
                                "session_index": session_index}
    session[PARTICIPANTS_KEY] = participants


def sso_participants(*, session) -> dict[str, dict]:
    found = session.get(PARTICIPANTS_KEY)
    return dict(found) if isinstance(found, dict) else {}
