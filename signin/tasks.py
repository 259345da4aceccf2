import logging

from celery import shared_task
from django.conf import settings

from signin.services.retention import signin_events_purge

logger = logging.getLogger(__name__)


@shared_task
def purge_signin_events() -> int:
    deleted = signin_events_purge(older_than_days=settings.PTA_SIGNIN_RETENTION_DAYS)
    logger.info("purged %d sign-in record(s) older than %d days", deleted, settings.PTA_SIGNIN_RETENTION_DAYS)
    return deleted
