import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import tomli_w
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


def saved_with(agent_config, path: Path, section: str, key: str, value) -> Path:
    """The config saved to ``path`` with ``[section] key = value`` set, as TOML types it ("32" is a string)."""
    data = msgspec.to_builtins(agent_config)
    data.setdefault(section, {})[key] = value
    path.write_text(tomli_w.dumps(data))
    return path


@pytest.mark.parametrize(("section", "key", "value", "named"), [
    ("agent", "capacity", "32", "`$.agent.capacity`"),  # the string is not coerced to the number
    ("agent", "capacity", 0, "`$.agent.capacity`"),
    ("directory", "ldap_urls", "ldaps://dc:636", "`$.directory.ldap_urls`"),
    ("agent", "surprise", 1, "unknown field `surprise`"),
    ("surprise", "key", 1, "unknown field `surprise`"),
])
def test_a_wrong_type_or_an_unknown_key_is_refused_by_name(tmp_path, agent_config, section, key, value, named):
    path = saved_with(agent_config, tmp_path / "agent.toml", section, key, value)
    with pytest.raises(ConfigError) as raised:
        config_load(path)
    assert named in str(raised.value)


def test_a_missing_section_is_refused_by_name(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text("[portal]\nurl = 'https://portal.example'\n")
    with pytest.raises(ConfigError, match="missing required field `agent`"):
        config_load(path)


def test_run_with_a_bad_config_exits_with_the_usage_code_and_one_line(tmp_path, agent_config):
    path = saved_with(agent_config, tmp_path / "agent.toml", "agent", "capacity", "32")
    result = subprocess.run([sys.executable, "-m", "pta_agent.cli", "run", "--config", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("pta-agent: ") and "`$.agent.capacity`" in result.stderr


def test_alternate_id_needs_a_service_account(tmp_path, agent_config):
    config = msgspec.structs.replace(agent_config, directory=DirectorySettings(
        ldap_urls=["ldaps://dc:636"], login_attribute="mail", base_dn="DC=x"))
    path = tmp_path / "agent.toml"
    config_save(config, path)
    with pytest.raises(ConfigError, match="service_account"):
        config_load(path)


def test_plain_ldap_urls_and_other_schemes(tmp_path, agent_config):
    config = msgspec.structs.replace(agent_config, directory=DirectorySettings(ldap_urls=["http://dc"]))
    path = tmp_path / "agent.toml"
    config_save(config, path)
    with pytest.raises(ConfigError, match="ldaps://"):
        config_load(path)
