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
