"""The settings' readers of the environment: a value that cannot be used stops start-up naming its variable;
the production profile's public URL (the OpenID issuer) is https://, or loopback http for the tests only."""

import pytest

from config.settings.env import public_url_problem
from tests.config import settings_in_subprocess


@pytest.mark.parametrize("url", ["https://login.contoso.com", "https://login.contoso.com/pta", "https://10.0.0.5:8443"])
def test_https_is_accepted(url):
    assert public_url_problem(url, insecure_loopback=False) is None


@pytest.mark.parametrize("url", ["http://login.contoso.com", "http://127.0.0.1:8000", "", "login.contoso.com",
                                 "https://", "ftp://login.contoso.com"])
def test_anything_else_is_refused(url):
    problem = public_url_problem(url, insecure_loopback=False)
    assert problem is not None and "https://" in problem


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


@pytest.mark.parametrize(("name", "value"), [
    ("PTA_SIGNIN_QUEUE_LENGTH", "abc"),
    ("PTA_SIGNIN_QUEUE_LENGTH", "0"),
    ("PTA_SIGNIN_DEADLINE_SECONDS", "ten"),
    ("PTA_AGENT_ACK_SECONDS", "nan"),
    ("PTA_AGENT_HEARTBEAT_SECONDS", "1.5"),
    ("DJANGO_DEBUG", "maybe"),
    ("PTA_LOG_LEVEL", "LOUD"),
    ("REDIS_URL", "localhost:6379"),
])
def test_an_unusable_value_stops_start_up_naming_the_variable(tmp_path, name, value):
    result = settings_in_subprocess(tmp_path, {name: value}, "settings.DEBUG")
    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("django.core.exceptions.ImproperlyConfigured: ") and name in error


def test_a_bad_database_url_is_named_but_never_shown(tmp_path):
    result = settings_in_subprocess(tmp_path, {"DATABASE_URL": "mysql://pta:Hidden-Pa55@db/pta",
                                               "REDIS_URL": "redis://127.0.0.1:1/0"}, "settings.DEBUG")
    assert "ImproperlyConfigured: DATABASE_URL must be a URL starting postgres://" in result.stderr
    assert "Hidden-Pa55" not in result.stderr


def test_typed_values_are_read_and_unset_or_empty_means_the_default(tmp_path):
    result = settings_in_subprocess(tmp_path, {
        "PTA_SIGNIN_QUEUE_LENGTH": " 50 ", "PTA_PLATFORM_MFA": "off", "DJANGO_DEBUG": "true",
        "PTA_DNS_NAMESERVERS": "10.0.0.53, ,[fd00::53]:5353,", "PTA_SIGNIN_DEADLINE_SECONDS": "",
    }, "settings.PTA_SIGNIN_QUEUE_LENGTH, settings.PTA_PLATFORM_MFA, settings.DEBUG, settings.PTA_DNS_NAMESERVERS, "
       "settings.PTA_SIGNIN_DEADLINE_SECONDS, settings.ALLOWED_HOSTS")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("50 False True ['10.0.0.53', '[fd00::53]:5353'] 10.0 "
                                     "['127.0.0.1', 'localhost', '[::1]']")
