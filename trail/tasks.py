import logging

from celery import shared_task
from django.conf import settings

from trail.services import audit_events_purge

logger = logging.getLogger(__name__)


@shared_task
def purge_audit_events() -> int:
    deleted = audit_events_purge(older_than_days=settings.PTA_AUDIT_RETENTION_DAYS)
    logger.info("purged %d audit event(s) older than %d days", deleted, settings.PTA_AUDIT_RETENTION_DAYS)
    return deleted
