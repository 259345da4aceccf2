"""scripts/demo reads the test bed's facts (the service account's password among them) from its state file on
stdin, never as a process argument (every user of the machine reads those: ps, /proc/PID/cmdline). Its own
``jget`` and ``fact`` functions, run by bash with a Python that records its arguments."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo"
PASSWORD = "Svc-pa55-not-in-argv"


def test_the_facts_are_read_on_stdin_not_from_the_arguments(tmp_path):
    text = DEMO.read_text()
    functions = re.search(r"^jget\(\) \{.*?^fact\(\) \{[^\n]*\}$", text, re.S | re.M)
    assert functions, "scripts/demo defines jget and fact"
    (tmp_path / "ad-facts.json").write_text(json.dumps({"service_account": {"password": PASSWORD}}))
    recorder = tmp_path / "python"
    recorder.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> "{tmp_path}/argv"\nexec {sys.executable} "$@"\n')
    recorder.chmod(0o755)
    script = (f'python={recorder}\nstate={tmp_path}\n{functions.group(0)}\n'
              'fact service_account.password\njget tenant <<<\'{"tenant": "alpha"}\'\n')
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [PASSWORD, "alpha"]
    argv = (tmp_path / "argv").read_text()
    assert "service_account.password" in argv and PASSWORD not in argv
