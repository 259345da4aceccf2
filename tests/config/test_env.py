"""The production profile's public URL (the OpenID issuer): https://, or loopback http for the tests only."""

import pytest

from config.settings.env import public_url_problem


@pytest.mark.parametrize("url", ["https://login.contoso.com", "https://login.contoso.com/pta", "https://10.0.0.5:8443"])
def test_https_is_accepted(url):
    assert public_url_problem(url, insecure_loopback=False) is None


@pytest.mark.parametrize("url", ["http://login.contoso.com", "http://127.0.0.1:8000", "", "login.contoso.com",
                                 "https://", "ftp://login.contoso.com"])
def test_anything_else_is_refused(url):
    assert "https://" in public_url_problem(url, insecure_loopback=False)


def test_loopback_http_only_with_insecure_cookies():
    for url in ("http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"):
        assert public_url_problem(url, insecure_loopback=True) is None
    assert public_url_problem("http://portal.test.example", insecure_loopback=True) is not None


@pytest.mark.parametrize(("given", "missing"), [("DATABASE_URL", "REDIS_URL"), ("REDIS_URL", "DATABASE_URL")])
def test_a_half_declared_profile_stops_start_up_naming_the_missing_variable(given, missing):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env[given] = {"DATABASE_URL": "postgres://pta@127.0.0.1:1/unused", "REDIS_URL": "redis://127.0.0.1:1/0"}[given]
    result = subprocess.run([sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode != 0
    assert f"{given} is set but {missing} is not" in result.stderr
