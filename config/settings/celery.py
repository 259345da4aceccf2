from .env import REDIS_URL, env

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# The embedded profile has no worker: tasks run inline.
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Periodic work (run `celery -A config beat`); presence and last_seen are kept by the portal nodes themselves.
CELERY_BEAT_SCHEDULE = {
    "purge-signin-events": {"task": "signin.tasks.purge_signin_events", "schedule": 3600.0},
    "purge-registration-tokens": {"task": "agents.tasks.purge_registration_tokens", "schedule": 3600.0},
}
# Sign-in records are kept this long (days), then purged.
PTA_SIGNIN_RETENTION_DAYS = int(env("PTA_SIGNIN_RETENTION_DAYS", "90"))
