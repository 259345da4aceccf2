"""The production profile's HTTPS settings and the proxy settings, as the settings module reads them at start-up
(each case in a fresh interpreter): Secure cookies and HSTS unless the lab override PTA_INSECURE_COOKIES=1,
an https:// public URL, PTA_TRUSTED_PROXIES parsed or refused by name, PTA_BEHIND_PROXY only with it."""

from __future__ import annotations

import pytest

from tests.config import settings_in_subprocess

PRODUCTION = {"DATABASE_URL": "postgres://pta@127.0.0.1:1/unused", "REDIS_URL": "redis://127.0.0.1:1/0",
              "DJANGO_SECRET_KEY": "s" * 50, "PTA_CA_ENCRYPTION_KEY": "k" * 50, "PTA_OIDC_RSA_PRIVATE_KEY": "unused",
              "PTA_PUBLIC_URL": "https://login.contoso.com"}
COOKIES_AND_HSTS = "settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, settings.SECURE_HSTS_SECONDS"


def test_production_has_secure_cookies_and_hsts(tmp_path):
    result = settings_in_subprocess(tmp_path, PRODUCTION, COOKIES_AND_HSTS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True True 31536000"


def test_the_lab_override_is_plain_http_on_loopback_only(tmp_path):
    lab = {**PRODUCTION, "PTA_INSECURE_COOKIES": "1", "PTA_PUBLIC_URL": "http://127.0.0.1:8000"}
    result = settings_in_subprocess(tmp_path, lab, COOKIES_AND_HSTS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False False 0"
    result = settings_in_subprocess(tmp_path, {**lab, "PTA_PUBLIC_URL": "http://login.contoso.com"}, "settings.DEBUG")
    assert result.returncode != 0 and "PTA_PUBLIC_URL must be an https:// URL" in result.stderr


@pytest.mark.parametrize("url", ["http://login.contoso.com", "http://127.0.0.1:8000"])
def test_production_refuses_a_plain_http_public_url_without_the_lab_override(tmp_path, url):
    result = settings_in_subprocess(tmp_path, {**PRODUCTION, "PTA_PUBLIC_URL": url}, "settings.DEBUG")
    assert result.returncode != 0 and "PTA_PUBLIC_URL must be an https:// URL" in result.stderr


def test_the_embedded_profile_keeps_plain_cookies_for_its_http_loopback(tmp_path):
    result = settings_in_subprocess(tmp_path, {}, COOKIES_AND_HSTS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False False 0"


def test_trusted_proxies_are_addresses_or_networks_of_either_family(tmp_path):
    result = settings_in_subprocess(tmp_path, {"PTA_TRUSTED_PROXIES": " 10.0.0.5, 10.1.0.0/16,fd00::/64 ,::1,"},
                                    "[str(n) for n in settings.PTA_TRUSTED_PROXIES]")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['10.0.0.5/32', '10.1.0.0/16', 'fd00::/64', '::1/128']"
    result = settings_in_subprocess(tmp_path, {}, "settings.PTA_TRUSTED_PROXIES, settings.SECURE_PROXY_SSL_HEADER")
    assert result.stdout.strip() == "() None"


def test_a_malformed_trusted_proxy_stops_start_up_naming_it(tmp_path):
    result = settings_in_subprocess(tmp_path, {"PTA_TRUSTED_PROXIES": "10.0.0.5,proxy.lan"}, "settings.DEBUG")
    assert result.returncode != 0
    assert "PTA_TRUSTED_PROXIES: 'proxy.lan' is not an IPv4 or IPv6 address or network" in result.stderr


def test_behind_a_proxy_needs_its_address(tmp_path):
    result = settings_in_subprocess(tmp_path, {"PTA_BEHIND_PROXY": "1"}, "settings.DEBUG")
    assert result.returncode != 0 and "PTA_BEHIND_PROXY=1 needs PTA_TRUSTED_PROXIES" in result.stderr
    result = settings_in_subprocess(tmp_path, {"PTA_BEHIND_PROXY": "1", "PTA_TRUSTED_PROXIES": "10.0.0.5"},
                                    "settings.SECURE_PROXY_SSL_HEADER")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https')"
