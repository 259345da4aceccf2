"""The settings as they read the environment, each case in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys


def settings_in_subprocess(tmp_path, env: dict[str, str], expression: str) -> subprocess.CompletedProcess:
    """Import the settings with exactly ``env`` (the outer profile's variables left out) and print ``expression``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PTA_", "DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    clean.update(DJANGO_SETTINGS_MODULE="config.settings", PTA_STATE_DIR=str(tmp_path), **env)
    return subprocess.run([sys.executable, "-c", f"from django.conf import settings; print({expression})"],
                          env=clean, capture_output=True, text=True, timeout=60, check=False)
