import logging

from celery import shared_task

from agents.services.registration import registration_tokens_purge

logger = logging.getLogger(__name__)


@shared_task
def purge_registration_tokens() -> int:
    deleted = registration_tokens_purge()
    logger.info("purged %d used or expired registration token(s)", deleted)
    return deleted
