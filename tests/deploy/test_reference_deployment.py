"""The reference deployment (deploy/, docs/deploy.md) keeps up with the code: the environment template names
every variable the settings read, nginx's timeouts outlast the agent protocol's silences, the units run the
documented commands, hardened. tests/integration/test_tls.py runs the nginx configuration for real."""

from __future__ import annotations

import re
from pathlib import Path

import pta_protocol as protocol
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
NGINX = (DEPLOY / "nginx" / "pta-portal.conf").read_text()
# The settings' readers of the environment (config/settings/env.py) and the names they are called with.
READERS = re.compile(r'(?:\benv(?:_[a-z]+)?|required_in_production|https_in_production|ip_networks|environ\.get)'
                     r'\(\s*"([A-Z_]+)"')
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
DAPHNE_PING_SECONDS = 20  # Daphne's --ping-interval default


def nginx_block(opening: str) -> str:
    """The text of the last block that starts with ``opening`` (e.g. "location = /agent/ws/"), braces balanced:
    the https server's, whose blocks follow the plain-http server's."""
    start = NGINX.rindex(opening + " {") + len(opening) + 2
    depth, at = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(NGINX[at], 0)
        at += 1
    return NGINX[start:at - 1]


def seconds(block: str, directive: str) -> int:
    match = re.search(rf"^\s*{directive} (\d+)s;", block, re.M)
    assert match, f"no `{directive} …s;` in the block"
    return int(match.group(1))


def test_the_environment_template_names_every_variable_the_settings_read():
    read = {name for path in (REPO_ROOT / "config" / "settings").glob("*.py")
            for name in READERS.findall(path.read_text())}
    assert {"DATABASE_URL", "PTA_TRUSTED_PROXIES", "PTA_OIDC_RSA_PRIVATE_KEY"} <= read  # the pattern finds them
    template = (DEPLOY / "pta-portal.env").read_text()
    named = set(re.findall(r"^#? ?([A-Z_]+)=", template, re.M))
    assert read - named == set(), "missing from deploy/pta-portal.env"


def test_the_agents_websocket_outlasts_heartbeats_and_pings():
    block = nginx_block(f"location = {protocol.WEBSOCKET_PATH}")
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        assert seconds(block, directive) > max(protocol.PRESENCE_TTL_SECONDS, DAPHNE_PING_SECONDS), directive
    assert 'proxy_set_header Upgrade $http_upgrade;' in block and 'proxy_set_header Connection "upgrade";' in block


@pytest.mark.parametrize("location", ["location = /agent/ws/", "location /"])
def test_every_proxied_location_forwards_the_client_and_the_scheme(location):
    # proxy_set_header in a location replaces the server's: each location must set all of them.
    block = nginx_block(location)
    for line in ("proxy_pass http://pta_portal;", "proxy_http_version 1.1;", "proxy_set_header Host $http_host;",
                 "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                 "proxy_set_header X-Forwarded-Proto $scheme;"):
        assert line in block, f"{location}: {line}"


def test_nginx_keeps_upstream_connections_limits_bodies_and_never_retries_a_post():
    assert re.search(r"^\s*keepalive \d+;", nginx_block("upstream pta_portal"), re.M)
    assert 'proxy_set_header Connection "";' in nginx_block("location /")
    assert re.search(r"^\s*client_max_body_size \d+[km];", NGINX, re.M)
    assert "non_idempotent" not in re.sub(r"#.*", "", NGINX)
    assert seconds(nginx_block("location /"), "proxy_read_timeout") > 10  # PTA_SIGNIN_DEADLINE_SECONDS


def test_the_portal_units_run_the_documented_commands_hardened():
    node = (DEPLOY / "systemd" / "pta-portal@.service").read_text()
    assert "ExecStart=/opt/pta-portal/venv/bin/daphne -b 127.0.0.1 -p %i config.asgi:application\n" in node
    assert "--proxy-headers" not in node.split("ExecStart=", 1)[1].splitlines()[0]
    assert {unit.name for unit in UNITS} == {"pta-portal@.service", "pta-celery-worker.service",
                                              "pta-celery-beat.service", "pta-agent.service"}
    for unit in UNITS:
        text = unit.read_text()
        for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=\n"):
            assert line in text, f"{unit.name}: {line}"
        user = re.search(r"^User=(\S+)", text, re.M)
        assert user and user.group(1) != "root", unit.name
    # The agent's unit is the one the agent ships with.
    shipped = REPO_ROOT / "agents" / "onprem" / "pta_agent" / "pta-agent.service"
    assert (DEPLOY / "systemd" / "pta-agent.service").resolve() == shipped


def test_the_redis_file_keeps_the_data_through_a_restart_and_never_evicts():
    # tests/resilience/test_faults.py runs a redis-server on this very file (RedisServer(persistent=True)).
    conf = (DEPLOY / "redis" / "pta-redis.conf").read_text()
    directives = {tuple(line.split(None, 1)) for line in conf.splitlines() if line.strip() and not line.startswith("#")}
    assert directives == {("appendonly", "yes"), ("appendfsync", "everysec"), ("maxmemory-policy", "noeviction")}
