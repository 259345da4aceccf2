"""The task that mails an alert address its confirmation link: enqueued after the commit that added the
address (health/services/alert_settings.py), eager in the embedded profile."""

from celery import shared_task

from health.services.alert_recipients import alert_confirmation_send


@shared_task
def send_alert_confirmation(recipient_id: int) -> bool:
    return alert_confirmation_send(recipient_id=recipient_id)
