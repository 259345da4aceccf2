"""Agent health: alerts and the mail they go out through."""

from .env import PRODUCTION, env, env_bool, env_float, env_int, ip_networks

# Alert e-mail goes through Django's own mail settings (SMTP).
EMAIL_HOST = env("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("DJANGO_EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env("DJANGO_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("DJANGO_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("DJANGO_EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("DJANGO_EMAIL_USE_SSL", False)
# A mail server that does not answer fails the attempt (retried later), it never holds a worker.
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env("DJANGO_DEFAULT_FROM_EMAIL", "pta-portal@localhost")

# An agent counts as gone for the alerts only after this long without presence: a restart is not an incident.
PTA_ALERT_GRACE_SECONDS = env_float("PTA_ALERT_GRACE_SECONDS", 60.0, minimum=0)
# A spike: directory_unavailable or agent_timeout above this share of a tenant's sign-ins in the last five
# minutes, counted once the tenant had at least PTA_ALERT_SPIKE_MIN_SIGNINS of them.
PTA_ALERT_SPIKE_SHARE = env_float("PTA_ALERT_SPIKE_SHARE", 0.2, minimum=0)
PTA_ALERT_SPIKE_MIN_SIGNINS = env_int("PTA_ALERT_SPIKE_MIN_SIGNINS", 10, minimum=0)
# Webhooks are https://; plain http only to loopback, in the embedded profile or with PTA_INSECURE_COOKIES=1.
PTA_ALERT_WEBHOOK_HTTP_LOOPBACK = not PRODUCTION or env_bool("PTA_INSECURE_COOKIES", False)
# Webhooks reach public addresses only, checked after DNS resolution each time one is sent: a tenant administrator
# must not make the portal post into its own network. An operator's receiver on an internal network (or a test's on
# loopback) is allowed by listing its addresses or networks here.
PTA_ALERT_WEBHOOK_ALLOWED_NETWORKS = ip_networks("PTA_ALERT_WEBHOOK_ALLOWED_NETWORKS")
