import ipaddress

import pytest


@pytest.fixture
def loopback_webhooks(settings):
    """The operator's settings that let webhooks reach the tests' receivers: plain http to loopback, and loopback
    among the addresses a webhook may reach (refused by default, as any address that is not public)."""
    settings.PTA_ALERT_WEBHOOK_HTTP_LOOPBACK = True
    settings.PTA_ALERT_WEBHOOK_ALLOWED_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"),)


def confirm_emails(tenant) -> None:
    """Every alert address of ``tenant`` confirmed through its link's token, as its owner's button does (for
    tests about what is sent, not about confirming: tests/health/test_alert_confirmation.py)."""
    from health.models import AlertRecipient
    from health.services.alert_recipients import alert_confirmation_token, alert_recipient_confirm

    for recipient in AlertRecipient.objects.filter(tenant=tenant):
        assert alert_recipient_confirm(token=alert_confirmation_token(recipient)) is not None
