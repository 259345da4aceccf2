"""The previous release, for the mixed-version scenario: a node and an agent of version N-1 beside the working tree's.

Its source is exported from git (``git archive``: nothing in the repository, its branches or worktrees changes)
and its virtual environment is built from its own uv.lock with the uv of scripts/venv, both under
``var/releases/<commit>/`` (ignored by git), so they are built once and reused by later runs.

PTA_PREVIOUS_RELEASE names it (a tag or a commit); by default the last commit before versions were negotiated
between nodes and with agents (protocol version 1: unknown fields refused), the oldest release a deployment of
this one may share nodes or agents with (docs/agent.md, "Versions").
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.portal import REPO_ROOT

PREVIOUS_RELEASE = os.environ.get("PTA_PREVIOUS_RELEASE", "d17879f")
RELEASES = REPO_ROOT / "var" / "releases"


@dataclass(frozen=True)
class Release:
    commit: str
    source: Path  # the exported checkout: a node runs with it as its working directory

    @property
    def short(self) -> str:
        return self.commit[:9]

    def program(self, name: str) -> str:
        """One of its console scripts (daphne, pta-agent)."""
        return str(self.source / ".venv" / "bin" / name)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()


def previous_release(ref: str = PREVIOUS_RELEASE) -> Release:
    """The release ``ref``, exported and with its environment built (once: later calls find it ready)."""
    try:
        commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError:
        pytest.fail(f"PTA_PREVIOUS_RELEASE={ref} is not a commit of this repository (a tag or a commit).",
                    pytrace=False)
    root = RELEASES / commit[:12]
    source = root / "src"
    ready = root / "ready"
    if not ready.exists():
        shutil.rmtree(root, ignore_errors=True)
        source.mkdir(parents=True)
        archive = subprocess.Popen(["git", "archive", "--format=tar", commit], cwd=REPO_ROOT, stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(source)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            pytest.fail(f"git archive {commit} failed", pytrace=False)
        uv = REPO_ROOT / ".venv-tools" / "bin" / "uv"
        if not uv.exists():
            pytest.fail("uv is missing: run scripts/venv first (scripts/resilience does).", pytrace=False)
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        env.pop("VIRTUAL_ENV", None)
        built = subprocess.run([str(uv), "sync", "--quiet", "--locked", "--python", "python3"], cwd=source, env=env,
                               capture_output=True, text=True, timeout=900, check=False)
        if built.returncode != 0:
            pytest.fail(f"could not build the environment of release {commit[:9]} from its uv.lock:\n"
                        f"{built.stderr[-3000:]}", pytrace=False)
        ready.write_text(commit + "\n")
    return Release(commit, source)
