"""OpenID Connect provider (django-oauth-toolkit) and the second factor (django-otp)."""

import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .base import PTA_PUBLIC_URL, STATE_DIR
from .env import env, env_float, https_in_production, required_in_production

_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.+?-----END [A-Z ]+-----", re.S)


def _embedded_signing_key(name: str) -> str:
    """The ID-token signing key of the embedded profile: generated once, kept in the state folder (0600)."""
    path = STATE_DIR / name
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.touch(mode=0o600)
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return path.read_text()


# Swappable: applications belong to a tenant. Set before DOT's first migration ever runs.
OAUTH2_PROVIDER_APPLICATION_MODEL = "applications.Application"

OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": required_in_production("PTA_OIDC_RSA_PRIVATE_KEY", "")
    or _embedded_signing_key("oidc_rsa_private_key.pem"),
    # Key rotation: retired keys (PEMs, one after another) stay in the JWKS, never sign, until their tokens expire.
    "OIDC_RSA_PRIVATE_KEYS_INACTIVE": _PEM.findall(env("PTA_OIDC_RSA_PRIVATE_KEYS_INACTIVE", "")),
    # Every node and every token names the same issuer, whichever node answered.
    "OIDC_ISS_ENDPOINT": https_in_production("PTA_OIDC_ISSUER", env("PTA_OIDC_ISSUER", PTA_PUBLIC_URL)).rstrip("/"),
    "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,
    "OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT": True,
    "OAUTH2_VALIDATOR_CLASS": "signin.oidc.PortalOAuth2Validator",
    "SCOPES": {"openid": "Sign you in", "profile": "Your name", "email": "Your email address",
               "groups": "Your groups in your organisation's directory"},
    "DEFAULT_SCOPES": ["openid"],
    "PKCE_REQUIRED": True,
    # RFC 9700: S256 only, "plain" is refused.
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    # RFC 9207: the issuer in every authorization response (DOT: successes; TenantAuthorizationView: errors too).
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
    "ID_TOKEN_EXPIRE_SECONDS": 3600,
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    # Refresh tokens: bounded (counted from their access token's expiry), rotated on each use, and a reused one
    # revokes its whole family (a stolen copy and the real one cannot both go on). Public clients get none.
    "REFRESH_TOKEN_EXPIRE_SECONDS": int(env_float("PTA_REFRESH_TOKEN_HOURS", 12.0, minimum=0) * 3600),
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    # RFC 6750 §2.3 / RFC 9700: never an access token in a URL (logs, referrers): headers only.
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
}

# django-otp: TOTP devices name the portal in authenticator apps; failures slow the next attempt
# (1 s, 2 s, 4 s, … after each wrong code) so guessing six digits is not feasible.
OTP_TOTP_ISSUER = env("PTA_OTP_ISSUER", "Pass-through sign-in")
OTP_TOTP_THROTTLE_FACTOR = env_float("PTA_OTP_THROTTLE_FACTOR", 1.0, minimum=0)
OTP_STATIC_THROTTLE_FACTOR = OTP_TOTP_THROTTLE_FACTOR
