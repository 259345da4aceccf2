"""The resilience suite: faults under load (test_faults.py) and secrets under load (test_secrets.py).

Long (several minutes): not part of ``scripts/test``; run it with ``scripts/resilience``. Every scenario records
its figures in the session's ``reliability`` collector; when every scenario ran, docs/RELIABILITY.md is
rewritten from them at the end of the session (a partial run leaves it alone and says so)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TypedDict

import pytest

from tests.resilience.report import SCENARIOS, Reliability


class _Session(TypedDict, total=False):
    current: Reliability  # the session's collector
    written: Path | None  # what it wrote at the end (None: a partial run)


_collector: _Session = {}
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request: thousands per scenario


@pytest.fixture(scope="session")
def reliability():
    collector = Reliability()
    _collector["current"] = collector
    yield collector
    _collector["written"] = collector.write()


def pytest_terminal_summary(terminalreporter):
    collector = _collector.get("current")
    if collector is None:
        return
    written = _collector.get("written")
    if written:
        terminalreporter.write_line(f"resilience: wrote {written}")
    else:
        missing = ", ".join(SCENARIOS[key] for key in collector.missing())
        terminalreporter.write_line(f"resilience: partial run, docs/RELIABILITY.md left as it was (not run: "
                                    f"{missing}); its rows in var/RELIABILITY.partial.md")
    for result in collector.results.values():
        terminalreporter.write_line(f"  {result.title}: {result.load()}; good lost {result.good_lost()}; "
                                    f"{result.recovery()}; {result.verdict()}")
    if collector.secrets:
        terminalreporter.write_line(f"  Secrets under load: {collector.secrets}")
