"""The agent and the wire protocol import nothing of the portal: in this test environment, where Django and
the portal are installed, importing them must not load either (test_install.py proves the agent also runs
where neither is installed)."""

import subprocess
import sys

PORTAL_PACKAGES = {"django", "channels", "daphne", "agents", "signin", "tenant", "applications", "config"}


def test_the_agent_and_the_protocol_import_nothing_of_the_portal():
    code = ("import sys, pta_protocol, pta_agent.cli, pta_agent.runner, pta_agent.status; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert PORTAL_PACKAGES.isdisjoint(result.stdout.split())
