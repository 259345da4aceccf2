"""Celery on Redis (production profile): a real worker takes a task sent through the broker."""

import datetime
import subprocess
import sys

import pytest

from tests.fixtures.portal import REPO_ROOT, stop_process, wait_for

pytestmark = pytest.mark.integration


def test_a_worker_on_redis_runs_the_purge(portal_factory, tmp_path):
    portal = portal_factory("production")
    portal.tenant_create("Contoso", "contoso.example.test")
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=400)
    portal.sql("INSERT INTO signin_signinevent (created_at, username, outcome, ad_subcode, user_agent, request_id, "
               "familiar, mfa_decision, mfa_reason, mfa_result, channel) "
               "VALUES (%s, 'old@contoso.example.test', 'success', '', '', gen_random_uuid(), false, '', '', '', "
               "'web')",
               (old,))
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
