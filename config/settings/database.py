import dj_database_url

from .base import STATE_DIR
from .env import DATABASE_URL

if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": STATE_DIR / "portal.sqlite3",
            # Daphne runs sync database work in threads: wait for SQLite's lock rather than failing.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
            # A file, not shared-cache memory: concurrent tests need SQLite's real locking and busy timeout.
            "TEST": {"NAME": STATE_DIR / "test-portal.sqlite3"},
        }
    }
