import ipaddress

import pytest


@pytest.fixture
def loopback_webhooks(settings):
    """The operator's settings that let webhooks reach the tests' receivers: plain http to loopback, and loopback
    among the addresses a webhook may reach (refused by default, as any address that is not public)."""
    settings.PTA_ALERT_WEBHOOK_HTTP_LOOPBACK = True
    settings.PTA_ALERT_WEBHOOK_ALLOWED_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"),)
