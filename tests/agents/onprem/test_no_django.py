import subprocess
import sys


def test_the_agent_program_imports_no_django():
    code = ("import sys, agents.onprem.cli, agents.onprem.runner, agents.onprem.status; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
