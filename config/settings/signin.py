from .env import env, env_bool, env_float, env_int, env_list

AUTHENTICATION_BACKENDS = [
    "signin.backends.PassThroughBackend",
    # Permissions for the admin console only; it checks no password.
    "signin.backends.PermissionsBackend",
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/login/done/"

# Every sign-in gets its answer within this many seconds, whatever the agents do.
PTA_SIGNIN_DEADLINE_SECONDS = env_float("PTA_SIGNIN_DEADLINE_SECONDS", 10.0, minimum=0.1)
# No ack within this time and the next agent is tried (safe: no bind happened).
PTA_AGENT_ACK_SECONDS = env_float("PTA_AGENT_ACK_SECONDS", 1.0, minimum=0.01)
# A sign-in that finds none of its tenant's agents present, when one was moments ago (a node left and its agents
# are reconnecting elsewhere, Redis restarted and the nodes republish them, agents restarted), waits this long
# at most for one (within the deadline) before it answers no_agent_available.
PTA_PRESENCE_WAIT_SECONDS = env_float("PTA_PRESENCE_WAIT_SECONDS", 5.0, minimum=0.0)
# Who answers the domain-verification TXT lookups ("host" or "host:port", "[v6]:port"); empty: the system resolver.
PTA_DNS_NAMESERVERS = env_list("PTA_DNS_NAMESERVERS")
# Each portal process remembers which tenant a domain routes to, and forgets it when any domain or tenant changes
# (tenant/routing.py); at the latest this many seconds after reading it, should the word of a change be lost.
PTA_ROUTING_CACHE_SECONDS = env_float("PTA_ROUTING_CACHE_SECONDS", 30.0, minimum=0.0)
# The password POST's answer carries a Server-Timing header with its steps' durations (signin/timing.py): for the
# benchmark's latency tail only. Off in production: a sign-in's timing tells which route it took.
PTA_SERVER_TIMING = env_bool("PTA_SERVER_TIMING", False)
# Sessions live in the cache (Redis in production): no database write for the sign-in steps.
SESSION_ENGINE = "signin.sessions"
# A sign-in under way (its username typed, nobody signed in yet) keeps its session this long after its last step:
# the time a person needs for the password and the second factor (ten minutes, as the half-done sign-in's own window
# for the factor and for a password change), not Django's two weeks, so a flood of usernames leaves nothing behind
# for long. A completed sign-in gets SESSION_COOKIE_AGE.
PTA_SIGNIN_SESSION_SECONDS = env_int("PTA_SIGNIN_SESSION_SECONDS", 600, minimum=60)
# Platform administrators (no tenant) have cloud lockout like everyone, with this policy, and MFA by default.
PTA_PLATFORM_LOCKOUT_THRESHOLD = env_int("PTA_PLATFORM_LOCKOUT_THRESHOLD", 5, minimum=1)
PTA_PLATFORM_LOCKOUT_SECONDS = env_int("PTA_PLATFORM_LOCKOUT_SECONDS", 60, minimum=1)
PTA_PLATFORM_MFA = env_bool("PTA_PLATFORM_MFA", True)
# For this long after this release's first node met the Redis (a marker key says when), lockout reads and writes
# the previous release's keys as well as its own (signin/services/lockout.py, docs/deploy.md "Upgrades"): the
# previous release's nodes may still be serving, and their locks last up to 75 minutes; the period goes on while a
# node of the previous release is seen. 0: never (a fresh install).
PTA_LOCKOUT_UPGRADE_SECONDS = env_int("PTA_LOCKOUT_UPGRADE_SECONDS", 7200, minimum=0)
# Platform administrators' second factor must be a passkey (authenticator-app and recovery codes refused).
PTA_PLATFORM_PHISHING_RESISTANT = env_bool("PTA_PLATFORM_PHISHING_RESISTANT", False)
# Shown on the password page to platform administrators (accounts of no tenant).
PTA_PLATFORM_NAME = env("PTA_PLATFORM_NAME", "Platform administration")
# A sign-in that finds every agent of its tenant busy waits for a slot, first come first served, within its
# deadline; at most this many wait per tenant (and node) before the next is answered too_many_signins.
PTA_SIGNIN_QUEUE_LENGTH = env_int("PTA_SIGNIN_QUEUE_LENGTH", 2000, minimum=1)
