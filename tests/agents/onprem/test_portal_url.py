"""The agent sends its registration token, and later its WebSocket, only over TLS: a plain http:// portal is
refused unless it is on this machine (loopback), before any key is written or any connection is tried."""

from __future__ import annotations

import os
import socket
import subprocess
import textwrap
import time
from pathlib import Path

import msgspec
import pytest
from pta_agent.cli import main
from pta_agent.config import ConfigError, config_load, config_save, portal_url_problem

from tests.fixtures.portal import pta_agent

REPO_ROOT = Path(__file__).resolve().parents[3]
# A name under .test (RFC 2606) never resolves: even a lookup of it would leak nothing.
REMOTE_HTTP = "http://portal.example.test"


@pytest.mark.parametrize("url", [
    "https://portal.example.com", "https://portal.example.com:8443/prefix/", "https://10.0.0.5",
    "http://127.0.0.1:8000", "http://127.8.9.10", "http://[::1]:8000/", "http://localhost", "http://LOCALHOST:81",
])
def test_https_anywhere_and_http_on_loopback_are_accepted(url):
    assert portal_url_problem(url) == ""


@pytest.mark.parametrize("url", [
    REMOTE_HTTP, "http://portal.example.test:8000/", "http://10.0.0.5", "http://192.168.1.10:80", "http://[fe80::1]",
    "http://127.0.0.1@portal.example.test/", "http://127.0.0.1.portal.example.test", "http://localhost.example.test",
    "http://[::ffff:10.0.0.5]", "http://0.0.0.0:8000",
])
def test_plain_http_to_another_machine_is_refused_with_the_reason(url):
    problem = portal_url_problem(url)
    assert "unencrypted" in problem and "https://" in problem and "127.0.0.1, ::1, localhost" in problem


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://portal.example.com", "https://", "http://",
                                 "HTTPS://portal.example.com", "portal.example.com", "http://[::1", ""])
def test_other_urls_are_refused(url):
    assert "https://" in portal_url_problem(url)


@pytest.mark.parametrize("url", ["ws://portal.example.test/agent/ws/", "ws://127.0.0.1:8000", "WS://10.0.0.5",
                                 "wss://portal.example.com/agent/ws/"])
def test_websocket_urls_are_refused_the_agent_derives_wss_from_https(url):
    """Only an https:// portal gives a wss:// socket (and http:// on loopback a ws:// one): a ws:// URL is refused
    wherever it points, a wss:// one because the portal's https:// URL is what the agent registers against."""
    problem = portal_url_problem(url)
    assert "WebSocket URL" in problem and "https://" in problem


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test on any name lookup or connection (the check must come first)."""
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"a connection was attempted: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def test_register_refuses_remote_http_before_writing_or_connecting(tmp_path, capsys, no_network):
    config = tmp_path / "agent.toml"
    code = main(["register", "--portal", REMOTE_HTTP, "--token", "pta_secret-token", "--config", str(config),
                 "--ldap-url", "ldaps://dc.example:636"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--portal" in err and "unencrypted" in err and "https://" in err
    assert "pta_secret-token" not in err
    assert no_network == [] and list(tmp_path.iterdir()) == []


def test_run_and_status_refuse_a_config_with_remote_http(tmp_path, agent_config, capsys, no_network):
    path = tmp_path / "agent.toml"
    config_save(msgspec.structs.replace(agent_config, portal=msgspec.structs.replace(agent_config.portal,
                                                                                       url=REMOTE_HTTP)), path)
    with pytest.raises(ConfigError, match="portal.url .*unencrypted.*https://"):
        config_load(path)
    for command in ("run", "status"):
        assert main([command, "--config", str(path)]) == 2
        assert "unencrypted" in capsys.readouterr().err
    assert no_network == []


def test_a_config_with_loopback_http_still_loads(tmp_path, agent_config):
    for url in ("http://127.0.0.1:8000", "http://[::1]:8000", "http://localhost:8000", "https://portal.example.com"):
        path = tmp_path / "agent.toml"
        config_save(msgspec.structs.replace(agent_config, portal=msgspec.structs.replace(agent_config.portal, url=url)),
                    path)
        assert config_load(path).portal.url == url


# --- the real command, as an operator runs it ---------------------------------------------------------------

AUDIT_HOOK = """
import os, sys

def _record(event, args):
    if event in ("socket.getaddrinfo", "socket.connect"):
        with open(os.environ["PTA_TEST_NETWORK_LOG"], "a") as log:
            log.write(f"{event} {args!r}\\n")

sys.addaudithook(_record)
"""


def pta_agent_register(portal: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, float, str]:
    """`pta-agent register` as a subprocess; every name lookup and connection it tries is logged by an audit
    hook (sitecustomize on PYTHONPATH). Returns the result, its duration and the network log."""
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(textwrap.dedent(AUDIT_HOOK))
    network_log = tmp_path / "network.log"
    network_log.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PTA_"))}
    env.update(PYTHONPATH=os.pathsep.join([str(hook_dir), str(REPO_ROOT)]), PTA_TEST_NETWORK_LOG=str(network_log))
    config = tmp_path / "etc" / "agent.toml"
    started = time.monotonic()
    result = subprocess.run([*pta_agent(), "register", "--portal", portal, "--token", "pta_secret-token",
                             "--config", str(config), "--ldap-url", "ldaps://dc.example:636"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    elapsed = time.monotonic() - started
    return result, elapsed, network_log.read_text() if network_log.exists() else ""


def test_the_pta_agent_command_refuses_remote_http_at_once(tmp_path):
    result, elapsed, network = pta_agent_register(REMOTE_HTTP, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "--portal 'http://portal.example.test' is plain http:// to another machine" in result.stderr
    assert "unencrypted" in result.stderr and "Use the portal's https:// URL" in result.stderr
    assert "Cannot reach the portal" not in result.stderr  # refused for its scheme, not for the missing host
    assert "pta_secret-token" not in result.stderr + result.stdout
    assert network == "", f"the agent tried the network: {network}"
    assert not (tmp_path / "etc").exists()  # no key, no config
    assert elapsed < 20  # at once: no lookup, no connect timeout (the interpreter's start-up is most of it)


def test_the_pta_agent_command_still_accepts_loopback_http(tmp_path):
    with socket.socket() as s:  # a free loopback port: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result, _, network = pta_agent_register(f"http://127.0.0.1:{port}", tmp_path)
    assert result.returncode == 2
    assert "Cannot reach the portal" in result.stderr and "unencrypted" not in result.stderr
    assert f"127.0.0.1', {port}" in network  # the hook sees connections: its silence above means none was tried
