"""The notification delivery tasks: enqueued by the incident service after its commit, and swept every few
seconds by beat (or the embedded timer) for retries and lost messages."""

from celery import shared_task

from health.services.notifications import notification_deliver, notifications_due


@shared_task(bind=True, max_retries=None)
def deliver_notification(self, notification_id: int) -> None:
    """One attempt; a failure comes back after the service's backoff. A short timeout per attempt and a
    countdown between them: no worker ever waits for a receiver that is down. Eager (the embedded profile), the
    timer's sweep of due notifications does the retrying."""
    retry_in = notification_deliver(notification_id=notification_id)
    if retry_in is not None and not self.request.is_eager:
        raise self.retry(countdown=retry_in)


@shared_task
def deliver_due_notifications() -> int:
    due = notifications_due()
    for notification_id in due:
        deliver_notification.delay(notification_id)
    return len(due)
