"""Celery on Redis (production profile): a real worker takes a task sent through the broker."""

import subprocess
import sys

import pytest

from tests.fixtures.portal import REPO_ROOT, stop_process, wait_for

pytestmark = pytest.mark.integration


def test_a_worker_on_redis_runs_the_purge(portal_factory, tmp_path):
    portal = portal_factory("production")
    portal.tenant_create("Contoso", "contoso.example.test")
    # Through the model, so every column gets its default whatever fields records gain.
    portal.manage("shell", "-c", "import datetime; from django.utils import timezone; "
                  "from signin.models import SignInEvent; "
                  "SignInEvent.objects.create(username='old@contoso.example.test', outcome='success', "
                  "created_at=timezone.now() - datetime.timedelta(days=400))")
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo",
                               "--loglevel", "INFO", "-Q", f"{portal.redis_prefix}-q"],
                              cwd=REPO_ROOT, env=portal.env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        portal.manage("shell", "-c", "from signin.tasks import purge_signin_events; "
                      f"purge_signin_events.apply_async(queue='{portal.redis_prefix}-q')")
        wait_for(lambda: portal.sql("SELECT COUNT(*) FROM signin_signinevent")[0][0] == 0, timeout=30,
                 message=lambda: (tmp_path / "worker.log").read_text()[-2000:])
        assert "purged 1 sign-in record" in (tmp_path / "worker.log").read_text()
    finally:
        stop_process(worker)
        log.close()
