"""/metrics names every tenant's agents and outcome counts: only the scraper holding PTA_METRICS_TOKEN reads it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from signin.metrics import signins

TOKEN = "scraper-token-0123456789abcdef"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def counted_signin():
    signins.labels("success", "web").inc()  # so that the body has a pta_signin_total sample to leak


@pytest.mark.parametrize("configured", [None, ""])
@pytest.mark.parametrize("authorization", [None, f"Bearer {TOKEN}", "Bearer "])
def test_without_a_configured_token_metrics_do_not_exist(client, settings, configured, authorization):
    settings.PTA_METRICS_TOKEN = configured or ""
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 404
    assert b"pta_signin" not in response.content


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", "Bearer wrong-token", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}",
    f"Basic {TOKEN}", TOKEN, "Bearer ünïcode",
])
def test_a_missing_or_wrong_token_is_refused(client, settings, authorization):
    settings.PTA_METRICS_TOKEN = TOKEN
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"pta_" not in response.content


def test_the_token_in_the_query_string_is_not_enough(client, settings):
    settings.PTA_METRICS_TOKEN = TOKEN
    assert client.get("/metrics", {"token": TOKEN, "access_token": TOKEN}).status_code == 401


def test_the_right_token_reads_the_metrics(client, settings):
    settings.PTA_METRICS_TOKEN = TOKEN
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    body = response.content.decode()
    assert 'pta_signin_total{channel="web",outcome="success"}' in body
    assert "pta_agents_local" in body and "pta_handoff_reply_waiters" in body
    assert "pta_agent_handshakes_refused_total" in body and "pta_agent_handshakes_waiting" in body
    assert "no-store" in response["Cache-Control"]


def test_the_scheme_is_case_insensitive(client, settings):
    settings.PTA_METRICS_TOKEN = TOKEN
    assert client.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_the_setting_comes_from_the_environment(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", PTA_STATE_DIR=str(tmp_path), PTA_METRICS_TOKEN=TOKEN)
    code = "from django.conf import settings; print(repr(settings.PTA_METRICS_TOKEN))"
    read = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    assert read.stdout.strip() == repr(TOKEN)
    del env["PTA_METRICS_TOKEN"]
    unset = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                           timeout=60, check=True)
    assert unset.stdout.strip() == "''"
