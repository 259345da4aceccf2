import subprocess
import sys


def test_the_agent_program_imports_no_django():
    code = ("import sys, pta_agent.cli, pta_agent.runner, pta_agent.status; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
