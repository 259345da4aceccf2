import configparser
from pathlib import Path

import pta_agent

UNIT = Path(pta_agent.__file__).parent / "pta-agent.service"


def service_section() -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    # systemd keys are case-sensitive; configparser's documented switch, which typeshed types as a method.
    parser.optionxform = str  # type: ignore[method-assign,assignment]
    parser.read_string(UNIT.read_text())
    return dict(parser["Service"])


def test_the_unit_runs_unprivileged_and_hardened():
    service = service_section()
    assert service["User"] == "pta-agent"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert "/etc/pta-agent" in service["ReadWritePaths"]
    assert "run --config" in service["ExecStart"]


def test_the_unit_restarts_on_failure_but_never_after_a_revocation():
    service = service_section()
    assert service["Restart"] == "on-failure"
    assert "3" in service["RestartPreventExitStatus"].split()
