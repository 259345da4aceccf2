"""The health app's periodic work (scheduled in config/settings/celery.py). Each task calls one service; every
service is idempotent and safe when several workers run it at once."""

import logging

from celery import shared_task
from django.conf import settings

# The delivery tasks live in health.delivery (the incident service enqueues them), the confirmation links' in
# health.confirmations; imported here so that the worker, which discovers tasks modules only, registers them.
from health.confirmations import send_alert_confirmation  # noqa: F401
from health.delivery import deliver_due_notifications, deliver_notification  # noqa: F401
from health.services.availability import agents_availability_mark
from health.services.incidents import alerts_evaluate, certificates_sweep, incidents_purge
from health.services.rollups import signin_rollups_compute, signin_rollups_purge

logger = logging.getLogger(__name__)


@shared_task
def rollup_signins() -> int:
    return signin_rollups_compute()


@shared_task
def purge_signin_rollups() -> int:
    deleted = signin_rollups_purge(older_than_days=settings.PTA_ROLLUP_RETENTION_DAYS)
    logger.info("purged %d sign-in rollup(s) older than %d days", deleted, settings.PTA_ROLLUP_RETENTION_DAYS)
    return deleted


@shared_task
def mark_agent_availability() -> dict[str, int]:
    return agents_availability_mark()


@shared_task
def evaluate_alerts() -> dict[str, int]:
    return alerts_evaluate()


@shared_task
def sweep_certificates() -> dict[str, int]:
    return certificates_sweep()


@shared_task
def purge_resolved_incidents() -> int:
    deleted = incidents_purge(older_than_days=settings.PTA_INCIDENT_RETENTION_DAYS)
    logger.info("purged %d incident(s) resolved more than %d days ago", deleted, settings.PTA_INCIDENT_RETENTION_DAYS)
    return deleted
