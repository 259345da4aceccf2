"""Celery for the periodic work: a worker and beat on Redis in production; eager (inline) in the embedded profile."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("pta")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
