"""/healthz for load balancers: 200 when the database, cache and channel layer answer, else 503 naming the
failing parts; never anything about a tenant. Redis and PostgreSQL stopped under a real node:
test_healthz_servers.py."""

from django.test import override_settings

from tests.fixtures.portal import free_port


def test_ready_answers_200_with_nothing_else(client, tenant_a):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


def test_a_cache_and_a_channel_layer_that_do_not_answer_are_named(client, db):
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # a free port: nothing listens there
    with override_settings(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": nowhere}},
        CHANNEL_LAYERS={"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                                    "CONFIG": {"hosts": [nowhere]}}},
    ):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "failing": ["cache", "channel_layer"]}
