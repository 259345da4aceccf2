"""RP-initiated logout: which application asks to end the session, and whether the browser may be sent back to it.

The application is the ``client_id``, or the audience of the ``id_token_hint`` (``signin/services/id_token_hint.py``:
an expired hint is accepted for naming and nothing else). A hint never says whose tokens are revoked, which is the
signed-in user's at that application (``application_tokens_revoke``), and no one's without a session. The browser
goes back to a registered ``post_logout_redirect_uri`` only from a session that was signed in, with a hint of that
application naming that session's user (``logout_return_allowed``): else anyone could bounce a browser off the
portal to any application's registered address.
"""

from __future__ import annotations

from dataclasses import dataclass

from oauth2_provider.exceptions import ClientIdMissmatch, InvalidOIDCClientError

from applications.models import Application
from signin.services.id_token_hint import IdTokenHint, id_token_hint_read
from tenant.models import User


@dataclass(frozen=True)
class LogoutRequest:
    application: Application | None  # None when the request names none
    hint: IdTokenHint | None  # the verified id_token_hint (for ``application``), if one was sent


def logout_request(*, id_token_hint: str | None, client_id: str | None, issuer: str) -> LogoutRequest:
    """The application asking, and its hint. Raises DOT's OIDC errors for a hint that is not ours, a hint for
    another client than ``client_id``, or an unknown client."""
    hint = id_token_hint_read(id_token_hint=id_token_hint, issuer=issuer) if id_token_hint else None
    if client_id and hint and client_id != hint.audience:
        raise ClientIdMissmatch()
    wanted = client_id or (hint.audience if hint else None)
    if not wanted:
        return LogoutRequest(application=None, hint=None)
    application = Application.objects.filter(client_id=wanted).first()
    if application is None:
        raise InvalidOIDCClientError()
    return LogoutRequest(application=application, hint=hint)


def logout_return_allowed(*, request: LogoutRequest, user: User | None) -> bool:
    """Whether the browser may go back to the application's (registered) post-logout address: ``user`` is the
    session's user before the logout (None: nobody was signed in), and the hint is that application's, for them."""
    return (user is not None and request.application is not None and request.hint is not None
            and request.hint.audience == request.application.client_id and request.hint.subject == str(user.subject))


# --- front-channel logout of the session's other protocols -------------------------------------------------------

# Where a logout() leaves the pages the signed-out page loads in hidden frames to tell the applications of other
# protocols (SAML service providers: samlidp/signals.py) that the session ended: a list of
# {"src": same-origin URL, "name": the application's name, "origin": where the frame then goes}. Set by a
# user_logged_out receiver, before the session (which knows those applications) is flushed.
FRONT_CHANNEL_LOGOUT_ATTR = "pta_front_channel_logout"


def front_channel_logout_notices(*, request) -> list[dict]:
    found = getattr(request, FRONT_CHANNEL_LOGOUT_ATTR, None)
    return list(found) if isinstance(found, list) else []


def front_channel_frame_sources(*, notices: list[dict]) -> list[str]:
    """The origins the notices' frames go on to (for the page's ``frame-src``): scheme://host[:port] only."""
    found = set()
    for notice in notices:
        origin = str(notice.get("origin") or "")
        scheme, _, rest = origin.partition("://")
        if scheme in ("https", "http") and rest and not any(c in rest for c in " ;,'\"/\\*"):
            found.add(origin)
    return sorted(found)
