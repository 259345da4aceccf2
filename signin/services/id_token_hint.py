"""An ``id_token_hint``: an ID token this portal signed (with its current key or a retired one still in the JWKS)
naming this issuer, which a relying party sends back to say which application and which user it means
(RP-initiated logout; ``prompt=none``). Its expiry is not checked: relying parties keep the ID token far longer
than its hour, and a hint is only ever believed for naming, never as a credential."""

from __future__ import annotations

import json
from dataclasses import dataclass

from jwcrypto import jwt
from jwcrypto.common import JWException
from oauth2_provider.exceptions import InvalidIDTokenError
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.utils import jwk_from_pem


@dataclass(frozen=True)
class IdTokenHint:
    audience: str  # the client_id the ID token was issued to
    subject: str  # its sub: the user's opaque subject


def id_token_hint_read(*, id_token_hint: str, issuer: str) -> IdTokenHint:
    """The application and user an ID token of ours names. Raises DOT's InvalidIDTokenError for anything else."""
    for pem in (oauth2_settings.OIDC_RSA_PRIVATE_KEY, *oauth2_settings.OIDC_RSA_PRIVATE_KEYS_INACTIVE):
        try:
            token = jwt.JWT(jwt=id_token_hint, key=jwk_from_pem(pem), algs=["RS256"], check_claims={},
                            expected_type="JWS")
            claims = json.loads(token.claims)
        except (JWException, ValueError, TypeError):
            continue  # another key, or not a token of ours at all
        if not isinstance(claims, dict):
            break
        audience, subject = claims.get("aud"), claims.get("sub")
        if isinstance(audience, list) and len(audience) == 1:
            audience = audience[0]
        if claims.get("iss") != issuer or not isinstance(audience, str) or not isinstance(subject, str):
            break
        return IdTokenHint(audience=audience, subject=subject)
    raise InvalidIDTokenError()
