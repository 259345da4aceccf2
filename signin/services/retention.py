import datetime

from django.utils import timezone

from signin.models import SignInEvent


def signin_events_purge(*, older_than_days: int) -> int:
    """Delete sign-in records older than the retention period; returns how many."""
    cutoff = timezone.now() - datetime.timedelta(days=older_than_days)
    deleted, _ = SignInEvent.objects.filter(created_at__lt=cutoff).delete()
    return deleted
