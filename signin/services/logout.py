"""RP-initiated logout: which application asks to end the session.

The application is the ``client_id``, or the audience of the ``id_token_hint``: an ID token this portal signed
(with its current key or a retired one still in the JWKS) naming this issuer. An expired hint is accepted for
that and nothing else (relying parties keep the ID token far longer than its hour): a hint never says whose
tokens are revoked, which is the signed-in user's at that application (``application_tokens_revoke``), and
no one's without a session.
"""

from __future__ import annotations

import json

from jwcrypto import jwt
from jwcrypto.common import JWException
from oauth2_provider.exceptions import ClientIdMissmatch, InvalidIDTokenError, InvalidOIDCClientError
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.utils import jwk_from_pem

from applications.models import Application


def _hint_audience(id_token_hint: str, *, issuer: str) -> str:
    """The ``aud`` of an ID token this portal signed for ``issuer``; its expiry is not checked (see above)."""
    for pem in (oauth2_settings.OIDC_RSA_PRIVATE_KEY, *oauth2_settings.OIDC_RSA_PRIVATE_KEYS_INACTIVE):
        try:
            token = jwt.JWT(jwt=id_token_hint, key=jwk_from_pem(pem), algs=["RS256"], check_claims={},
                            expected_type="JWS")
            claims = json.loads(token.claims)
        except (JWException, ValueError, TypeError):
            continue  # another key, or not a token of ours at all
        audience = claims.get("aud") if isinstance(claims, dict) else None
        if isinstance(audience, list) and len(audience) == 1:
            audience = audience[0]
        if claims.get("iss") != issuer or not isinstance(audience, str):
            break
        return audience
    raise InvalidIDTokenError()


def logout_application(*, id_token_hint: str | None, client_id: str | None, issuer: str) -> Application | None:
    """The application asking, or None when the request names none. Raises DOT's OIDC errors for a hint that is
    not ours, a hint for another client than ``client_id``, or an unknown client."""
    hinted = _hint_audience(id_token_hint, issuer=issuer) if id_token_hint else None
    if client_id and hinted and client_id != hinted:
        raise ClientIdMissmatch()
    wanted = client_id or hinted
    if not wanted:
        return None
    application = Application.objects.filter(client_id=wanted).first()
    if application is None:
        raise InvalidOIDCClientError()
    return application
