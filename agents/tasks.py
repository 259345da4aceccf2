import logging

from celery import shared_task
from django.conf import settings

from agents.services.registration import registration_tokens_purge
from agents.services.retirement import agents_inactive_remove

logger = logging.getLogger(__name__)


@shared_task
def purge_registration_tokens() -> int:
    deleted = registration_tokens_purge()
    logger.info("purged %d used or expired registration token(s)", deleted)
    return deleted


@shared_task
def remove_inactive_agents() -> int:
    removed = agents_inactive_remove(older_than_days=settings.PTA_AGENT_REMOVAL_DAYS)
    if removed:
        logger.info("removed %d agent(s) unseen for %d days: %s", len(removed), settings.PTA_AGENT_REMOVAL_DAYS,
                    ", ".join(removed))
    return len(removed)
