"""The portal's settings, with its SQLite statements counted (bench/sqlcount.py): bench/run --costs --profile
embedded runs its node with DJANGO_SETTINGS_MODULE=bench.sqlcount_settings and BENCH_SQL_LOG=FILE."""

import os

from bench.sqlcount import install
from config.settings import *  # noqa: F403

install(os.environ["BENCH_SQL_LOG"])
