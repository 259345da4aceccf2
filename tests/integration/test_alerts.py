"""Alerts end to end: a tenant's only agent stops, then comes back. One e-mail (to a real SMTP server on
loopback, aiosmtpd) and one signed webhook (to a real HTTP receiver) for each, sent by the periodic work: a real
Celery worker and beat on Redis in the production profile, the portal's own timer in the embedded one. The
address is confirmed first, through the link mailed to it and the portal's page."""

import datetime
import hashlib
import hmac
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import IO

import httpx
import pytest

from tests.fixtures.http import found, sign_in
from tests.fixtures.portal import REPO_ROOT, Portal, stop_process, tail, wait_for

pytestmark = pytest.mark.integration
SECRET = "the-tenant-webhook-secret-0123456789"
SWEEP_SECONDS = 1
SUMMARY = "Contoso: 0 active agent(s), 1 needed"
CONFIRM = "[PTA] Confirm alert e-mail for Contoso"


def confirm_by_link(node_url: str, message) -> None:
    """The recipient opens the mailed link on the portal and presses the button."""
    token = found(r"/alerts/confirm/([^/\s]+)/", message.get_content())
    with httpx.Client(base_url=node_url, timeout=20) as browser:
        page = browser.get(f"/alerts/confirm/{token}/")
        assert page.status_code == 200 and 'data-state="ask"' in page.text, page.text[:500]
        done = browser.post(f"/alerts/confirm/{token}/",
                            data={"csrfmiddlewaretoken": found(r'name="csrfmiddlewaretoken" value="([^"]+)"',
                                                               page.text)})
        assert done.status_code == 200 and 'data-state="confirmed"' in done.text, done.text[:500]


@pytest.fixture
def periodic_work(tmp_path) -> Iterator:
    """Starts a Celery worker and beat for a production portal; stops them by pid."""
    started: list[tuple[subprocess.Popen, IO[bytes]]] = []

    def start(portal: Portal) -> None:
        for name, args in (("worker", ["worker", "--pool", "solo"]),
                           ("beat", ["beat", "--schedule", str(tmp_path / "celerybeat-schedule")])):
            log = (tmp_path / f"celery-{name}.log").open("wb")
            proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", *args, "--loglevel", "INFO"],
                                    cwd=REPO_ROOT, env=portal.env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            started.append((proc, log))

    yield start
    for proc, log in started:
        stop_process(proc)
        log.close()


def signature_verifies(request) -> bool:
    match = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", request.headers.get("PTA-Signature", ""))
    if not match:
        return False
    expected = hmac.new(SECRET.encode(), match.group(1).encode() + b"." + request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, match.group(2))


@pytest.mark.parametrize("profile", ["production", "embedded"])
def test_the_only_agent_stopping_and_coming_back_alerts_once_each_way(
        profile, request, portal_factory, periodic_work, smtp_server, webhook_receiver, tmp_path):
    timings = {"PTA_HEALTH_SWEEP_SECONDS": str(SWEEP_SECONDS), "PTA_ALERT_GRACE_SECONDS": "2",
               "DJANGO_EMAIL_HOST": "127.0.0.1", "DJANGO_EMAIL_PORT": str(smtp_server.port),
               "PTA_ALERT_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1"}  # the receiver is on loopback
    if profile == "production":  # a Redis of its own: its broker queue is nobody else's
        portal = portal_factory(profile, redis_url=request.getfixturevalue("redis_server").url, timings=timings)
    else:
        portal = portal_factory(profile, timings=timings)
    tenant = portal.tenant_create("Contoso", "contoso.example.test")
    node = portal.start_node()
    if profile == "production":
        periodic_work(portal)
    config, registered = portal.agent_register(node, portal.agent_token(tenant))
    assert registered.returncode == 0, registered.stderr
    agent = portal.agent_run(config)
    agent_id = portal.db_uuid(agent.agent_id)

    def marked_active() -> bool:
        return portal.sql("SELECT active FROM health_agentavailability WHERE agent_id = %s", (agent_id,)) == [(True,)]

    def logs() -> str:
        return "\n".join(f"--- {path.name}\n{tail(path)}" for path in
                         [node.log_path, agent.log_path, *sorted(tmp_path.glob("celery-*.log"))])

    wait_for(lambda: marked_active() and not portal.sql("SELECT id FROM health_incident WHERE resolved_at IS NULL"),
             timeout=60, message=lambda: f"the agent marked active and no incident open\n{logs()}")
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text(SECRET)
    portal.manage("tenant_alerts", tenant, "--email", "ops@contoso.example.test", "--webhook", webhook_receiver.url,
                  "--webhook-secret-file", str(secret_file))
    wait_for(lambda: smtp_server.messages, timeout=60, message=lambda: f"the confirmation e-mail\n{logs()}")
    [confirmation] = smtp_server.messages
    assert confirmation["Subject"] == CONFIRM and confirmation["To"] == "ops@contoso.example.test"
    confirm_by_link(node.url, confirmation)
    smtp_server.messages.clear()

    signed_in_at = time.time()
    attempt = sign_in(node.url, "someone@contoso.example.test", "a password")
    assert attempt.outcome == "directory_unavailable"  # the agent reaches no DC: a sign-in all the same

    # Incidents before this point (one opens and resolves when the agent is slow to connect on a busy machine)
    # were before the alert settings: the one under test is the stop's.
    earlier = {row[0] for row in portal.sql("SELECT id FROM health_incident")}
    agent.stop()
    wait_for(lambda: smtp_server.messages and webhook_receiver.requests, timeout=60,
             message=lambda: f"the 'opened' e-mail and webhook\n{logs()}")
    time.sleep(5 * SWEEP_SECONDS)  # several evaluations later: still the one of each
    assert [m["Subject"] for m in smtp_server.messages] == [f"[PTA] Opened: {SUMMARY}"]
    assert [json.loads(r.body)["event"] for r in webhook_receiver.requests] == ["incident.opened"]

    agent = portal.agent_run(config)
    wait_for(lambda: len(smtp_server.messages) == 2 and len(webhook_receiver.requests) == 2, timeout=60,
             message=lambda: f"the 'resolved' e-mail and webhook\n{logs()}")
    time.sleep(5 * SWEEP_SECONDS)
    assert [m["Subject"] for m in smtp_server.messages] == [f"[PTA] Opened: {SUMMARY}",
                                                          f"[PTA] Resolved: {SUMMARY}"]
    assert all(m["To"] == "ops@contoso.example.test" for m in smtp_server.messages)
    bodies = [json.loads(r.body) for r in webhook_receiver.requests]
    assert [b["event"] for b in bodies] == ["incident.opened", "incident.resolved"]
    assert bodies[0]["incident"]["id"] == bodies[1]["incident"]["id"]
    assert bodies[1]["incident"]["summary"] == SUMMARY and bodies[1]["incident"]["tenant"] == tenant
    assert all(signature_verifies(r) for r in webhook_receiver.requests)
    incidents = [row[1:] for row in portal.sql("SELECT id, kind, resolved_at IS NOT NULL FROM health_incident")
                 if row[0] not in earlier]
    assert [(kind, bool(resolved)) for kind, resolved in incidents] == [("agents_below_threshold", True)]

    # The sign-in, rolled up in its minute with the agent that answered it.
    [(minute, answered_by, outcome, count)] = portal.sql(
        "SELECT minute, agent_id, outcome, count FROM health_signinrollup")
    assert (str(answered_by), outcome, count) == (agent_id, "directory_unavailable", 1)
    assert epoch(minute) in (signed_in_at // 60 * 60, signed_in_at // 60 * 60 + 60)


def epoch(value: datetime.datetime | str) -> float:
    """A rollup's minute as PostgreSQL (a datetime) or SQLite (text in UTC) gives it."""
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value).replace(tzinfo=datetime.UTC)
    return value.timestamp()
