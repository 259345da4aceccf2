from .env import env

AUTHENTICATION_BACKENDS = [
    "signin.backends.PassThroughBackend",
    # Permissions for the admin console only; it checks no password.
    "signin.backends.PermissionsBackend",
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/login/done/"

# Every sign-in gets its answer within this many seconds, whatever the agents do.
PTA_SIGNIN_DEADLINE_SECONDS = float(env("PTA_SIGNIN_DEADLINE_SECONDS", "10"))
# No ack within this time and the next agent is tried (safe: no bind happened).
PTA_AGENT_ACK_SECONDS = float(env("PTA_AGENT_ACK_SECONDS", "1"))
# Sessions live in the cache (Redis in production): no database write for the sign-in steps.
SESSION_ENGINE = "django.contrib.sessions.backends.cache"
