import os

import dj_database_url

from .base import STATE_DIR
from .env import DATABASE_URL

if DATABASE_URL:
    # Under ASGI every request's database work runs in a thread of its own, so persistent per-thread
    # connections pile up past PostgreSQL's limit: a pool per process instead (psycopg_pool).
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 2, "max_size": 20, "timeout": 10}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(STATE_DIR / "portal.sqlite3"),
            # Kept open per thread: opening SQLite (and its PRAGMAs) on every sign-in hop cost more than the queries.
            "CONN_MAX_AGE": None,
            "OPTIONS": {
                # Daphne runs sync database work in threads: wait for SQLite's lock rather than failing.
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                # WAL: readers never wait for the writer, and a commit is not an fsync of a rollback journal.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file, not shared-cache memory: concurrent tests need SQLite's real locking and busy timeout.
            # One per test run, so two runs on one machine never share it.
            "TEST": {"NAME": STATE_DIR / f"test-portal-{os.getpid()}.sqlite3"},
        }
    }
