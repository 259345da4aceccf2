"""`pta-agent register` and `status` against a fake portal on loopback (http.server)."""

from __future__ import annotations

import http.server
import json
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pta_agent.cli import main
from pta_agent.config import config_load

from .conftest import DOMAIN, TENANT, pem


class FakeRegistrationPortal(http.server.ThreadingHTTPServer):
    """Answers POST /agent/register/ like agents/views.py, signing the CSR with a test tenant CA."""

    def __init__(self, tenant_ca, signing_key, *, refuse: bool = False):
        self.tenant_ca, self.signing_key, self.refuse = tenant_ca, signing_key, refuse
        self.received: list[dict] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FakeRegistrationPortal

    def do_GET(self):  # noqa: N802 - http.server's naming
        self._answer(404, {"error": "not_found"})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append(body)
        if self.path != "/agent/register/" or self.server.refuse:
            self._answer(403, {"error": "bad_token", "message": "The registration token is unknown, expired or "
                                                                "already used."})
            return
        csr = x509.load_pem_x509_csr(body["csr"].encode())
        self._answer(201, {
            "agent_id": "0b7f7c2a-agent", "tenant": TENANT, "domains": [DOMAIN],
            "certificate": pem(self.server.tenant_ca.issue(csr.public_key())),
            "ca_certificate": pem(self.server.tenant_ca.certificate),
            "signing_public_key": self.server.signing_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        })

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_portal(tenant_ca, portal_signing_key):
    servers = []

    def start(**options) -> FakeRegistrationPortal:
        server = FakeRegistrationPortal(tenant_ca, portal_signing_key, **options)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def register(portal_url: str, config: Path, *extra: str) -> int:
    return main(["register", "--portal", portal_url, "--token", "pta_secret-token", "--config", str(config),
                 "--ldap-url", "ldaps://127.0.0.1:1", "--ldap-url", "ldaps://127.0.0.1:2",
                 *extra])


def test_register_writes_key_certificate_trust_and_config(fake_portal, tmp_path, capsys):
    portal = fake_portal()
    config_path = tmp_path / "etc" / "agent.toml"
    assert register(portal.url, config_path, "--name", "site-a") == 0
    config = config_load(config_path)
    assert (config.agent.id, config.agent.tenant, config.agent.domains) == ("0b7f7c2a-agent", TENANT, [DOMAIN])
    assert config.directory.ldap_urls == ["ldaps://127.0.0.1:1", "ldaps://127.0.0.1:2"]
    assert config.directory.base_dn == "DC=corp,DC=example,DC=test"
    assert config.portal.url == portal.url
    assert stat.S_IMODE(Path(config.files.private_key).stat().st_mode) == 0o600
    for path in (config.files.certificate, config.files.tenant_ca, config.files.portal_signing_key):
        assert Path(path).parent == config_path.parent
    sent = portal.received[0]
    assert set(sent) == {"token", "csr", "name", "hostname", "version"} and sent["name"] == "site-a"
    assert "PRIVATE KEY" not in json.dumps(sent)  # the private key never leaves the machine
    assert "registered agent 0b7f7c2a-agent" in capsys.readouterr().out


def test_a_refused_token_exits_2_with_a_clear_message_and_leaves_no_key(fake_portal, tmp_path, capsys):
    portal = fake_portal(refuse=True)
    assert register(portal.url, tmp_path / "agent.toml") == 2
    assert "refused the token" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_portal_exits_2(tmp_path, capsys):
    assert register("http://127.0.0.1:9", tmp_path / "agent.toml") == 2
    assert "Cannot reach the portal" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_registration_is_not_overwritten_without_force(fake_portal, tmp_path, capsys):
    portal = fake_portal()
    assert register(portal.url, tmp_path / "agent.toml") == 0
    assert register(portal.url, tmp_path / "agent.toml") == 2
    assert "--force" in capsys.readouterr().err
    assert register(portal.url, tmp_path / "agent.toml", "--force") == 0


def test_alternate_id_needs_a_service_account(tmp_path, capsys):
    assert register("http://127.0.0.1:9", tmp_path / "agent.toml", "--login-attribute", "mail") == 2
    assert "--service-account" in capsys.readouterr().err


def test_alternate_id_registration_keeps_only_the_password_file_path(fake_portal, tmp_path):
    portal = fake_portal()
    secret = tmp_path / "svc.pw"
    secret.write_text("Svc!Search-Acc0unt\n")
    assert register(portal.url, tmp_path / "agent.toml", "--login-attribute", "mail", "--service-account",
                    "pta-svc@corp.example.test", "--service-password-file", str(secret)) == 0
    text = (tmp_path / "agent.toml").read_text()
    assert "Svc!Search-Acc0unt" not in text and str(secret) in text


def test_a_non_http_portal_url_is_refused(tmp_path, capsys):
    assert register("file:///etc/passwd", tmp_path / "agent.toml") == 2
    assert "http://" in capsys.readouterr().err


def test_status_reports_identity_and_health(fake_portal, tmp_path, capsys):
    portal = fake_portal()
    config_path = tmp_path / "agent.toml"
    assert register(portal.url, config_path) == 0
    capsys.readouterr()
    # The portal answers (404 on / is an answer); nothing listens on the DC ports: unhealthy.
    assert main(["status", "--config", str(config_path)]) == 1
    out = capsys.readouterr().out
    assert "0b7f7c2a-agent" in out and DOMAIN in out and "days left" in out
    assert "answers (HTTP 404)" in out and "does NOT answer" in out and "UNHEALTHY" in out


def test_status_without_a_config_exits_2(tmp_path, capsys):
    assert main(["status", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "pta-agent register" in capsys.readouterr().err
