"""docs/RELIABILITY.md, written by the resilience suite from each scenario's figures (see conftest.py)."""

from __future__ import annotations

import datetime
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from tests.resilience.load import (
    CLIENT_TIMEOUT_SECONDS,
    GOOD,
    ROUND_TRIP_MARGIN_SECONDS,
    SIGNIN_DEADLINE_SECONDS,
    STEADY_MIN_GOOD,
    UNKNOWN,
    WRONG,
    Figures,
    Timeline,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
REPORT_PATH = REPO_ROOT / "docs" / "RELIABILITY.md"
PARTIAL_PATH = REPO_ROOT / "var" / "RELIABILITY.partial.md"  # a partial run's rows (var/ is not versioned)

# Every scenario of the suite, in the table's order: the report is written only when all of them ran.
SCENARIOS = {
    "rush": "A rush of 10× one agent's capacity at once",
    "agent_kill": "`kill -9` of one of two agents",
    "agent_sigterm": "SIGTERM of one of two agents",
    "node_kill": "`kill -9` of one of two Daphne nodes",
    "redis_restart_kept": "Redis restarted as systemctl does (its data kept)",
    "redis_restart": "Redis restarted, its data lost (a crash without persistence)",
    "postgres_restart": "PostgreSQL restarted",
    "dc_restart": "The DC stopped, then started",
    "dc_freeze": "The DC frozen (SIGSTOP) for 5 s",
    "agents_restart": "Every agent stopped, then started",
    "rolling_nodes": "Rolling restart of the nodes behind nginx",
    "rolling_agents": "Rolling restart of the agents",
    "mixed_versions": "Nodes and agents of two releases",
}


@dataclass
class ScenarioResult:
    key: str
    setup: str  # nodes, agents, capacity
    figures: Figures
    timeline: Timeline
    problems: list[str]
    notes: str = ""

    @property
    def title(self) -> str:
        return SCENARIOS.get(self.key, self.key)

    def load(self) -> str:
        f = self.figures
        kinds = ", ".join(f"{sum(f.by_kind[k].values())} {k}" for k in (GOOD, WRONG, UNKNOWN))
        return f"{f.signins} sign-ins ({kinds}), {f.workers} at once, {f.seconds:.0f} s; {self.setup}"

    def faults(self) -> str:
        return "; ".join(f"{what} at {at:.1f} s" for at, what in self.timeline.events
                         if not what.startswith("load "))

    def outcomes(self) -> str:
        parts = []
        for kind in (GOOD, WRONG, UNKNOWN):
            counts = self.figures.by_kind[kind]
            parts.append(f"{kind}: " + ", ".join(f"{label} {n}" for label, n in counts.most_common()))
        f = self.figures
        parts.append(f"answered in: p95 {f.p95:.1f} s, slowest {f.slowest:.1f} s"
                     + (f"; connection errors {f.connection_errors}" if f.connection_errors else ""))
        return "<br>".join(parts)

    def good_lost(self) -> str:
        lost = self.figures.good_lost
        total = sum(lost.values())
        if not total:
            return "0"
        return f"{total} of {self.figures.good_count()} (" + ", ".join(f"{k} {n}" for k, n in lost.most_common()) + ")"

    def recovery(self) -> str:
        f = self.figures
        if f.first_good is None and f.steady is None:
            return "not seen"
        first = f"first +{f.first_good:.1f} s" if f.first_good is not None else "no good success after"
        steady = (f"steady +{f.steady:.1f} s ({f.good_after_steady} good after)" if f.steady is not None
                  else "never steady")
        return f"{first}, {steady}"

    def verdict(self) -> str:
        return "held" if not self.problems else f"**failed** ({len(self.problems)}, below)"


@dataclass
class Reliability:
    """Collects each scenario's result; writes the report when the session ends."""

    started: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))
    results: dict[str, ScenarioResult] = field(default_factory=dict)
    secrets: str = ""

    def add(self, result: ScenarioResult) -> ScenarioResult:
        self.results[result.key] = result
        return result

    def missing(self) -> list[str]:
        return [key for key in SCENARIOS if key not in self.results]

    def write(self, path: Path = REPORT_PATH) -> Path | None:
        """The whole report when every scenario ran; otherwise nothing (a partial run never replaces it), but the
        rows and notes of the scenarios that ran go to var/RELIABILITY.partial.md, to be read or compared."""
        if self.missing():
            if self.results:
                PARTIAL_PATH.parent.mkdir(exist_ok=True)
                PARTIAL_PATH.write_text(self.render_partial())
            return None
        path.write_text(self.render())
        return path

    def render_partial(self) -> str:
        ran = [key for key in SCENARIOS if key in self.results]
        finished = datetime.datetime.now(datetime.UTC)
        return "\n".join([
            f"# A partial run of the resilience suite, {finished:%Y-%m-%d %H:%M} UTC on {_machine()}", "",
            *self._rows(ran), "",
            *[f"- **{self.results[key].title}**: {self.results[key].notes}" for key in ran if self.results[key].notes],
            *[f"- **{self.results[key].title}** failed: " + "; ".join(self.results[key].problems)
              for key in ran if self.results[key].problems], ""])

    def _rows(self, keys: list[str]) -> list[str]:
        rows = ["| scenario | load | faults (seconds from the load's start) | outcomes | good sign-ins lost | "
                "time to recover (from the fault's end) | verdict |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for key in keys:
            result = self.results[key]
            rows.append(f"| {result.title} | {result.load()} | {result.faults()} | {result.outcomes()} | "
                        f"{result.good_lost()} | {result.recovery()} | {result.verdict()} |")
        return rows

    def render(self) -> str:
        finished = datetime.datetime.now(datetime.UTC)
        minutes = (finished - self.started).total_seconds() / 60
        rows = self._rows(list(SCENARIOS))
        notes = [f"- **{self.results[key].title}**: {self.results[key].notes}" for key in SCENARIOS
                 if self.results[key].notes]
        failed = [key for key in SCENARIOS if self.results[key].problems]
        failures = [f"- **{self.results[key].title}**:\n" + "\n".join(f"  - {problem}"
                                                                       for problem in self.results[key].problems)
                    for key in failed]
        return "\n".join([
            "# Reliability: faults under load",
            "",
            "Written by the resilience suite (`scripts/resilience`, i.e. `python3 -m pytest -m resilience "
            "tests/resilience`); do not edit by hand.",
            "",
            f"Run {finished:%Y-%m-%d %H:%M} UTC on {_machine()}; the suite took {minutes:.1f} min. "
            f"{len(SCENARIOS) - len(failed)} of {len(SCENARIOS)} scenarios held"
            + (f"; failed: {', '.join(SCENARIOS[key] for key in failed)}." if failed else "."),
            "",
            "## How it is measured",
            "",
            "Real processes only: the Samba AD DC of the test bed, Daphne nodes (production profile: PostgreSQL, "
            "Redis), two `pta-agent` processes, sign-ins walked through the pages by a pool of worker threads "
            "(`tests/resilience/load.py`: GET /login/, POST username, GET and POST /login/password/; its own "
            "`httpx` client per worker, cookies cleared for each sign-in). Half the sign-ins are good users (the "
            "test bed's users in state good, except mallory), a quarter wrong passwords for them (from another "
            "address, 127.0.0.2, so that cloud lockout locks that address's bucket, not the users), a quarter "
            "users AD does not know (a new name each time). A person has at most 4 sign-ins in flight: the "
            "cloud lockout counts guesses in flight (threshold 5) and would refuse a fifth, by design.",
            "",
            f"- **Deadline**: every sign-in must be answered with a definite outcome (`PTA-Outcome` / "
            f"`data-outcome`) within `PTA_SIGNIN_DEADLINE_SECONDS` ({SIGNIN_DEADLINE_SECONDS:.0f} s) plus "
            f"{ROUND_TRIP_MARGIN_SECONDS:.0f} s for the walk's other requests; no 5xx; a request unanswered after "
            f"{CLIENT_TIMEOUT_SECONDS:.0f} s is a hang.",
            "- **Nothing wrongly accepted**: a wrong password or an unknown user never ends in `success`.",
            "- **Good sign-ins lost**: good sign-ins that did not end in `success`, by outcome. Each scenario says "
            "which outcomes its fault explains, and for which sign-ins (those in flight during the fault, or "
            "until it ended plus the recovery bound); any other loss fails it.",
            f"- **Time to recover**, from the fault's end: *first*, the first good sign-in started after it that "
            f"succeeded (when its answer came); *steady*, the moment after which every good sign-in that started "
            f"succeeded (the start of the last one that failed; at least {STEADY_MIN_GOOD} good sign-ins after it, "
            "to the end of the run). Faults that are an instant (kill -9) end when they begin.",
            "",
            "## Figures",
            "",
            *rows,
            "",
            *(["## What failed", "", "Labels: `!http-500` a page with no outcome and that status, `!session_lost` "
               "sent back to the username page mid-walk, `!hang` no answer within the client timeout.", "",
               *failures, ""] if failures else []),
            *(["## Notes", "", *notes, ""] if notes else []),
            *(["## Secrets under load", "", self.secrets, ""] if self.secrets else []),
        ])


def _machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return f"{os.cpu_count()} cores ({model or platform.machine()}{memory}), {platform.system()} {platform.release()}"
