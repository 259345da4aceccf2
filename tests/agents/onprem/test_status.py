"""`pta-agent status`: whether password change is available (a service account whose password file is readable)."""

from __future__ import annotations

import datetime

import msgspec
from pta_agent.status import AgentStatus, password_change_problem


def test_password_change_needs_a_service_account_and_its_readable_password_file(agent_config, tmp_path):
    assert "no service account" in password_change_problem(agent_config)
    secret = tmp_path / "svc.pw"
    with_account = msgspec.structs.replace(agent_config, directory=msgspec.structs.replace(
        agent_config.directory, service_account="pta-svc@corp.example.test", service_password_file=str(secret)))
    assert "cannot read" in password_change_problem(with_account)
    secret.write_text("Svc!Search-Acc0unt\n")
    assert password_change_problem(with_account) == ""
    now = datetime.datetime.now(datetime.UTC)
    lines = AgentStatus(config=with_account, not_after=now + datetime.timedelta(days=30), portal_answer="HTTP 200",
                        portal_problem="", dcs={"ldaps://dc1:636": True}, password_change="").lines()
    assert "password change  available (service account pta-svc@corp.example.test)" in lines
    assert not any("Svc!Search" in line for line in lines)  # the password is never printed
    lines = AgentStatus(config=agent_config, not_after=now, portal_answer="", portal_problem="x",
                        password_change=password_change_problem(agent_config)).lines()
    assert any(line.startswith("password change  not available: no service account") for line in lines)
