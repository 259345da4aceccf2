from pathlib import Path

import pytest
from pta_agent.config import (
    AgentConfig,
    ConfigError,
    DirectorySettings,
    base_dn_for_domain,
    config_load,
    config_save,
    config_to_toml,
    file_paths_for,
)


def test_config_round_trips_through_toml(agent_config: AgentConfig, tmp_path: Path):
    path = tmp_path / "agent.toml"
    config_save(agent_config, path)
    assert config_load(path) == agent_config
    assert (path.stat().st_mode & 0o777) == 0o640


def test_config_keys_are_grouped_by_concern(agent_config):
    text = config_to_toml(agent_config)
    for section in ("[portal]", "[agent]", "[files]", "[directory]"):
        assert section in text


@pytest.mark.parametrize(("domain", "base_dn"), [
    ("corp.example.test", "DC=corp,DC=example,DC=test"),
    ("Example.COM.", "DC=Example,DC=COM"),
    ("single", "DC=single"),
])
def test_base_dn_is_derived_from_the_domain(domain, base_dn):
    assert base_dn_for_domain(domain) == base_dn


def test_key_material_lives_next_to_the_config(tmp_path):
    files = file_paths_for(tmp_path / "etc" / "site-a.toml")
    assert files.private_key == str(tmp_path / "etc" / "site-a-key.pem")
    assert {Path(p).parent for p in (files.certificate, files.tenant_ca, files.portal_signing_key)} == {
        tmp_path / "etc"}


def test_a_missing_config_says_to_register(tmp_path):
    with pytest.raises(ConfigError, match="pta-agent register"):
        config_load(tmp_path / "absent.toml")


def test_unknown_keys_and_missing_sections_are_refused(tmp_path, agent_config):
    path = tmp_path / "agent.toml"
    config_save(agent_config, path)
    path.write_text(path.read_text().replace("[agent]", "[agent]\nsurprise = 1"))
    with pytest.raises(ConfigError, match="unknown keys"):
        config_load(path)
    path.write_text("[portal]\nurl = 'https://portal.example'\n")
    with pytest.raises(ConfigError, match=r"\[agent\]"):
        config_load(path)


def test_alternate_id_needs_a_service_account(tmp_path, agent_config):
    import dataclasses

    config = dataclasses.replace(agent_config, directory=DirectorySettings(
        ldap_urls=["ldaps://dc:636"], login_attribute="mail", base_dn="DC=x"))
    path = tmp_path / "agent.toml"
    config_save(config, path)
    with pytest.raises(ConfigError, match="service_account"):
        config_load(path)


def test_plain_ldap_urls_and_other_schemes(tmp_path, agent_config):
    import dataclasses

    config = dataclasses.replace(agent_config, directory=DirectorySettings(ldap_urls=["http://dc"]))
    path = tmp_path / "agent.toml"
    config_save(config, path)
    with pytest.raises(ConfigError, match="ldaps://"):
        config_load(path)
