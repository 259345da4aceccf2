"""The agent is its own distribution: `pip install ./agents/onprem` into a bare virtual environment (no portal,
no Django, not the system's packages) gives a `pta-agent` that registers with a real portal and connects.

pip takes the dependencies from the machine's configured package index (its cache makes a repeat quick)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import portal as portal_fixtures
from tests.fixtures.portal import local_agents, wait_for

pytestmark = pytest.mark.integration
AGENT_SOURCE = Path(__file__).resolve().parents[3] / "agents" / "onprem"


def bare_env() -> dict[str, str]:
    """This environment without what would let the venv's Python see another's packages."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def agent_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("agent-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=bare_env())
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                             "--disable-pip-version-check", str(AGENT_SOURCE)],
                            capture_output=True, text=True, timeout=900, env=bare_env(), check=False)
    if result.returncode != 0:
        pytest.fail(f"pip install {AGENT_SOURCE} failed (it needs the package index pip is configured with):\n"
                    f"{result.stderr[-3000:]}", pytrace=False)
    return venv


def venv_run(venv: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], capture_output=True, text=True, timeout=60,
                          env=bare_env(), cwd=venv, check=False)


def test_the_installed_agent_has_its_files_and_no_django(agent_venv):
    assert "No module named 'django'" in venv_run(agent_venv, "python", "-c", "import django").stderr
    help_text = venv_run(agent_venv, "pta-agent", "--help")
    assert help_text.returncode == 0 and "register" in help_text.stdout
    where = venv_run(agent_venv, "python", "-c", "import pathlib, pta_agent, pta_protocol; "
                     "print(pathlib.Path(pta_protocol.__file__).resolve()); "
                     "print((pathlib.Path(pta_agent.__file__).parent / 'pta-agent.service').is_file())")
    protocol_file, has_unit = where.stdout.split()
    assert Path(protocol_file).is_relative_to(agent_venv.resolve()), "pta_protocol must come with the agent"
    assert has_unit == "True", "the systemd unit ships as package data"


def test_the_installed_agent_registers_and_connects_to_a_real_portal(agent_venv, embedded_portal, monkeypatch):
    monkeypatch.setattr(portal_fixtures, "pta_agent", lambda: [str(agent_venv / "bin" / "pta-agent")])
    monkeypatch.delenv("PYTHONPATH", raising=False)
    portal = embedded_portal
    node = portal.start_node("solo")
    tenant = portal.tenant_create("Corp", "corp.example.test")
    config, result = portal.agent_register(node, portal.agent_token(tenant), name="installed")
    assert result.returncode == 0, result.stderr
    agent = portal.agent_run(config)
    wait_for(lambda: local_agents(node) == 1, timeout=10, message=lambda: f"the agent to connect\n{agent.log()}")
    assert agent.stop() == 0  # SIGTERM: a clean exit
