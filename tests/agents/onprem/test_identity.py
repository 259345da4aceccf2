import os
import stat
from pathlib import Path

import pytest
from pta_agent.identity import (
    IdentityError,
    csr_build,
    identity_load,
    private_key_generate,
    private_key_write,
    public_file_write,
)


def test_private_key_file_is_0600_even_under_a_permissive_umask(tmp_path, agent_key):
    old = os.umask(0)
    try:
        private_key_write(tmp_path / "key.pem", agent_key)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "key.pem").stat().st_mode) == 0o600


def test_private_key_is_never_world_readable_while_written(tmp_path, agent_key, monkeypatch):
    modes = []
    real_open = os.open

    def watching_open(path, flags, mode=0o777, *args, **kwargs):
        modes.append(mode)
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", watching_open)
    private_key_write(tmp_path / "key.pem", agent_key)
    assert modes == [0o600]  # created with its final mode: no chmod after the fact


def test_rewriting_a_key_is_atomic_and_leaves_no_temporary_file(tmp_path, agent_key):
    path = tmp_path / "key.pem"
    private_key_write(path, agent_key)
    private_key_write(path, private_key_generate())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.pem"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_csr_proves_possession_of_the_key(agent_key):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa

    csr = x509.load_pem_x509_csr(csr_build(agent_key, name="agent-1").encode())
    assert csr.is_signature_valid
    public_key = csr.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert public_key.public_numbers() == agent_key.public_key().public_numbers()


def test_identity_loads_and_refuses_a_certificate_of_another_key(agent_config, identity):
    files = agent_config.files
    loaded = identity_load(private_key_file=files.private_key, certificate_file=files.certificate,
                           portal_signing_key_file=files.portal_signing_key)
    assert loaded.key_id == identity.key_id
    private_key_write(Path(files.private_key), private_key_generate())
    with pytest.raises(IdentityError, match="does not belong"):
        identity_load(private_key_file=files.private_key, certificate_file=files.certificate,
                      portal_signing_key_file=files.portal_signing_key)


def test_missing_files_say_to_register_again(tmp_path):
    with pytest.raises(IdentityError, match="register"):
        identity_load(private_key_file=str(tmp_path / "k"), certificate_file=str(tmp_path / "c"),
                      portal_signing_key_file=str(tmp_path / "s"))


def test_public_files_are_readable(tmp_path):
    public_file_write(tmp_path / "cert.pem", "-----BEGIN CERTIFICATE-----\n")
    assert stat.S_IMODE((tmp_path / "cert.pem").stat().st_mode) == 0o644
