"""/healthz on a production-profile node whose Redis and PostgreSQL are private servers this test stops and
starts (never the machine's shared ones): 503 naming the part while it is down, 200 again once it is back."""

import httpx
import pytest

from tests.fixtures.portal import wait_for

pytestmark = pytest.mark.integration


def healthz(node) -> tuple[int, dict]:
    response = httpx.get(f"{node.url}/healthz", timeout=15)
    return response.status_code, response.json()


def test_healthz_follows_redis_and_postgresql(redis_server, postgres_cluster, portal_factory):
    portal = portal_factory("production", redis_url=redis_server.url, pg_url=postgres_cluster.url())
    node = portal.start_node("behind-the-balancer")
    assert healthz(node) == (200, {"status": "ok"})

    redis_server.stop(kill=True)
    assert healthz(node) == (503, {"status": "unavailable", "failing": ["cache", "channel_layer"]})
    redis_server.start()
    wait_for(lambda: healthz(node)[0] == 200, timeout=30, interval=0.5,
             message=lambda: f"/healthz to answer 200 once Redis is back: {healthz(node)}")

    postgres_cluster.stop()
    assert healthz(node) == (503, {"status": "unavailable", "failing": ["database"]})
    postgres_cluster.start()
    wait_for(lambda: healthz(node)[0] == 200, timeout=30, interval=0.5,
             message=lambda: f"/healthz to answer 200 once PostgreSQL is back: {healthz(node)}")
