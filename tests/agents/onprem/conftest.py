"""Test material for the on-premises agent: keys, a tenant CA, a portal signing key, configs. No Django."""

from __future__ import annotations

import datetime
import time
import uuid
from pathlib import Path

import pta_protocol as protocol
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from pta_agent.config import AgentConfig, AgentSettings, DirectorySettings, PortalSettings, file_paths_for
from pta_agent.identity import AgentIdentity, private_key_write, public_file_write

TENANT = "7d1c2d2e-0000-4000-8000-000000000001"
DOMAIN = "corp.example.test"


class TenantCA:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test tenant CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                            .not_valid_before(now - datetime.timedelta(minutes=5))
                            .not_valid_after(now + datetime.timedelta(days=365))
                            .sign(self.key, hashes.SHA256()))

    def issue(self, public_key, *, days: int = 180) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")]))
                .issuer_name(self.certificate.subject).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=days))
                .sign(self.key, hashes.SHA256()))


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="session")
def tenant_ca() -> TenantCA:
    return TenantCA()


@pytest.fixture(scope="session")
def agent_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def portal_signing_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def identity(agent_key, tenant_ca, portal_signing_key) -> AgentIdentity:
    return AgentIdentity(private_key=agent_key, certificate=tenant_ca.issue(agent_key.public_key()),
                         portal_signing_key=portal_signing_key.public_key())


@pytest.fixture
def agent_config(tmp_path: Path, identity: AgentIdentity, tenant_ca, portal_signing_key) -> AgentConfig:
    """A registered agent's config, its key files in tmp_path named for tmp_path/agent.toml (portal URL to be
    replaced by the test)."""
    path = tmp_path / "agent.toml"
    files = file_paths_for(path)
    private_key_write(Path(files.private_key), identity.private_key)
    public_file_write(Path(files.certificate), identity.certificate_pem)
    public_file_write(Path(files.tenant_ca), pem(tenant_ca.certificate))
    public_file_write(Path(files.portal_signing_key), portal_signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())
    return AgentConfig(
        portal=PortalSettings(url="http://127.0.0.1:9"),
        agent=AgentSettings(id=str(uuid.uuid4()), tenant=TENANT, domains=[DOMAIN], name="test-agent", capacity=4,
                            request_deadline_seconds=5, shutdown_grace_seconds=5),
        files=files,
        directory=DirectorySettings(ldap_urls=["ldaps://127.0.0.1:1"], base_dn="DC=corp,DC=example,DC=test"),
    )


@pytest.fixture
def make_request(identity, portal_signing_key):
    """A request as the portal would send it: sealed for the agent's key and signed."""

    def make(password: str = "Pa55!word", *, signing_key=None, public_key=None,  # noqa: S107
             **fields) -> protocol.Request:
        values = {"request_id": uuid.uuid4().hex, "tenant": TENANT, "domain": DOMAIN,
                  "username": f"alice@{DOMAIN}", "key_id": identity.key_id, "expires_at": time.time() + 20,
                  "sealed": {}} | fields
        sealed = protocol.seal_password(
            public_key=public_key or identity.private_key.public_key(), password=password,
            request_id=values["request_id"], tenant=values["tenant"], key_id=values["key_id"],
            expires_at=values["expires_at"])
        request = protocol.Request(**(values | {"sealed": sealed}))
        return protocol.sign_request(request, signing_key or portal_signing_key)

    return make
