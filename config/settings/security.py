import secrets

from django.core.exceptions import ImproperlyConfigured

from .base import STATE_DIR
from .env import PRODUCTION, env, env_bool, env_int, env_list, ip_networks, required_in_production


def _embedded_secret(name: str) -> str:
    """A secret generated once for the embedded profile and kept in its state folder (mode 0600)."""
    path = STATE_DIR / name
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


SECRET_KEY = required_in_production("DJANGO_SECRET_KEY", "") or _embedded_secret("secret_key")
# Encrypts the tenant CAs' private keys at rest.
PTA_CA_ENCRYPTION_KEY = required_in_production("PTA_CA_ENCRYPTION_KEY", "") or _embedded_secret(
    "ca_encryption_key"
)

DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# Production cookies are Secure; PTA_INSECURE_COOKIES=1 is the lab override (plain http on loopback, the tests).
SESSION_COOKIE_SECURE = PRODUCTION and not env_bool("PTA_INSECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# HSTS on every https answer of the production profile (SecurityMiddleware sends it only when is_secure()).
SECURE_HSTS_SECONDS = env_int("PTA_HSTS_SECONDS", 31536000, minimum=0) if SESSION_COOKIE_SECURE else 0
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# The proxies whose X-Forwarded-For and X-Forwarded-Proto are believed (config/proxy.py strips them from every
# other peer; signin/services/client.py takes the right-most untrusted hop). Empty: the direct peer only.
PTA_TRUSTED_PROXIES = ip_networks("PTA_TRUSTED_PROXIES")
PTA_BEHIND_PROXY = env_bool("PTA_BEHIND_PROXY", False)
if PTA_BEHIND_PROXY and not PTA_TRUSTED_PROXIES:
    raise ImproperlyConfigured("PTA_BEHIND_PROXY=1 needs PTA_TRUSTED_PROXIES: the addresses of the proxies whose "
                               "X-Forwarded-Proto is believed (no other peer's is).")
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if PTA_BEHIND_PROXY else None
# The bearer token of /metrics (it names every tenant's agents); empty: /metrics answers 404 to everyone.
PTA_METRICS_TOKEN = env("PTA_METRICS_TOKEN", "")
