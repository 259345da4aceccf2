from .env import REDIS_URL, env_float, env_int

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# The embedded profile has no worker: tasks run inline.
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Periodic work (run `celery -A config beat`). Every task is idempotent and safe on several workers; the
# embedded profile runs this same schedule on a timer inside the portal process (health/timer.py). Frequent
# work expires rather than piling up while no worker takes it.
# Rolling up sign-ins (the current minute so far included), marking agents present or not, evaluating alerts
# and retrying notifications: this often (seconds).
PTA_HEALTH_SWEEP_SECONDS = env_float("PTA_HEALTH_SWEEP_SECONDS", 15.0, minimum=1)
_SWEEP = {"schedule": PTA_HEALTH_SWEEP_SECONDS, "options": {"expires": PTA_HEALTH_SWEEP_SECONDS}}
CELERY_BEAT_SCHEDULE = {
    "rollup-signins": {"task": "health.tasks.rollup_signins", **_SWEEP},
    "mark-agent-availability": {"task": "health.tasks.mark_agent_availability", **_SWEEP},
    "evaluate-alerts": {"task": "health.tasks.evaluate_alerts", **_SWEEP},
    "deliver-due-notifications": {"task": "health.delivery.deliver_due_notifications", **_SWEEP},
    "sweep-certificates": {"task": "health.tasks.sweep_certificates", "schedule": 3600.0},
    "remove-inactive-agents": {"task": "agents.tasks.remove_inactive_agents", "schedule": 3600.0},
    "purge-signin-events": {"task": "signin.tasks.purge_signin_events", "schedule": 3600.0},
    "purge-signin-rollups": {"task": "health.tasks.purge_signin_rollups", "schedule": 3600.0},
    "purge-registration-tokens": {"task": "agents.tasks.purge_registration_tokens", "schedule": 3600.0},
    "purge-audit-events": {"task": "trail.tasks.purge_audit_events", "schedule": 3600.0},
    "purge-resolved-incidents": {"task": "health.tasks.purge_resolved_incidents", "schedule": 3600.0},
}
# Sign-in records are kept this long (days), then purged.
PTA_SIGNIN_RETENTION_DAYS = env_int("PTA_SIGNIN_RETENTION_DAYS", 90, minimum=1)
# The per-minute rollups of sign-ins (the health view's history), this long (days).
PTA_ROLLUP_RETENTION_DAYS = env_int("PTA_ROLLUP_RETENTION_DAYS", 30, minimum=1)
# An agent inactive (unseen) for this many days is removed, except the last one of its tenant.
PTA_AGENT_REMOVAL_DAYS = env_int("PTA_AGENT_REMOVAL_DAYS", 30, minimum=1)
