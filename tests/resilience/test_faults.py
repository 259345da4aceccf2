"""Faults under load: each scenario runs at least 500 sign-ins, 16 at once, through the pages of a production
portal with two pta-agents on the real DC, injects one fault, and measures what the sign-ins got.

Every scenario asserts the same promises (docs/architecture.md, "What never happens"): no 5xx, no hang, a
definite outcome within the deadline, nothing wrongly accepted; good sign-ins lost only as the fault explains
(each scenario's ``Allowance``s: which outcomes, for the sign-ins in flight during the fault or until it ended
plus its recovery bound), and a steady recovery within that bound. The figures go to docs/RELIABILITY.md.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from collections.abc import Callable, Collection

import pytest

from signin.outcomes import Outcome
from tests.fixtures.portal import RedisServer, node_metric, wait_for
from tests.resilience.dc import DomainController
from tests.resilience.load import (
    KINDS,
    SIGNIN_DEADLINE_SECONDS,
    Allowance,
    Figures,
    LoadRun,
    Rush,
    SignInMix,
    SignInRecord,
    Timeline,
    median,
)
from tests.resilience.report import ScenarioResult
from tests.resilience.site import Site, site_build

pytestmark = [pytest.mark.integration, pytest.mark.resilience]

WORKERS = 16
MIN_SIGNINS = 500
WARM_UP_SIGNINS = 120  # answered before the fault: the steady state it interrupts
RUSH_CAPACITY = 4  # [agent] capacity for the rush: 10× that (40 POSTs at once) is within this machine's means
RUSHES = 3
AGENT_GRACE_SECONDS = 10.0  # [agent] shutdown_grace_seconds, the agent's default
# Outcomes that are a definite "no" from the portal itself: what any fault of the portal's own stores may explain.
REFUSALS = frozenset(o.value for o in Outcome if o.value not in ("success", "mfa_required")) | {"too_many_signins"}


def drive(site: Site, mix: SignInMix, fault: Callable[[Timeline, LoadRun], list[SignInRecord] | None], *,
          tail_seconds: float = 12.0) -> tuple[list[SignInRecord], Timeline]:
    """Load, then the fault (in this thread, marking the timeline), then load until the tail has passed."""
    timeline = Timeline()
    load = LoadRun(site.urls, mix, timeline, workers=WORKERS, min_signins=MIN_SIGNINS,
                   tail_seconds=tail_seconds, verify=site.verify).start()
    extra: list[SignInRecord] = []
    try:
        load.wait_answered(WARM_UP_SIGNINS)
        extra = fault(timeline, load) or []
    finally:
        if timeline.fault_end is None:
            timeline.fault_ends("fault interrupted")
        records = load.join()
    return records + extra, timeline


def conclude(reliability, key: str, site: Site, setup: str, records: list[SignInRecord], timeline: Timeline,
             allowances: list[Allowance], *, recovery_bound: float, notes: str = "",
             problems: list[str] | None = None) -> ScenarioResult:
    figures = Figures.of(records, timeline, allowances, workers=WORKERS)
    if site.portal.directory.exists():  # PTA_TEST_KEEP=1 kept it: the sign-ins too, for a closer look
        (site.portal.directory / "signins.json").write_text(json.dumps(
            {"timeline": timeline.events, "signins": [dataclasses.asdict(r) for r in records]}, indent=1))
    found = figures.problems(recovery_bound=recovery_bound) + list(problems or [])
    if figures.signins < MIN_SIGNINS:
        found.append(f"only {figures.signins} sign-ins ran (at least {MIN_SIGNINS} wanted)")
    result = reliability.add(ScenarioResult(key, setup, figures, timeline, found, notes))
    assert not found, (f"{result.title}: " + "\n  ".join(found) + f"\n  outcomes: {result.outcomes()}"
                       f"\n  timeline: {timeline.describe()}\n  explained: {dict(figures.explained)}"
                       f"\n{site.logs()[-4000:]}")
    return result


def during(labels: Collection[str], start: float, end: float, why: str, *, limit: int | None = None,
           kinds=frozenset(KINDS)) -> Allowance:
    return Allowance(frozenset(labels), start, end, why, kinds=frozenset(kinds), limit=limit)


def agent_busy(site: Site, agent, *, within: float = 5.0) -> int:
    """Wait (a little) for a moment when ``agent`` has sign-ins in flight, so that the fault catches some
    acknowledged; how many it had then (0 if no such moment came)."""
    deadline = time.monotonic() + within
    name = f'pta_agent_in_flight{{agent="{agent.agent_id}"}}'
    while True:
        in_flight = int(node_metric(site.nodes[0], name))
        if in_flight or time.monotonic() > deadline:
            return in_flight
        time.sleep(0.01)


def describe(site: Site) -> str:
    return (f"{len(site.nodes)} node{'s' if len(site.nodes) > 1 else ''}, {len(site.agents)} agents "
            f"(capacity {site.capacity})")


# --- the agents ----------------------------------------------------------------------------------------------


def test_a_rush_of_ten_times_an_agents_capacity_waits_for_a_slot(ad_testbed, reliability):
    """The issue's rule: a sign-in finding every agent busy waits for a slot within its deadline; only a full
    line is refused, as too_many_signins. So no good sign-in of a rush is lost otherwise."""
    site = site_build(ad_testbed, capacity=RUSH_CAPACITY)
    mix = SignInMix(ad_testbed)
    size = 10 * RUSH_CAPACITY

    def rushes(timeline: Timeline, load: LoadRun) -> list[SignInRecord]:
        records = []
        for number in range(1, RUSHES + 1):
            rush = Rush(site.urls[0], mix, timeline, size=size, first_index=100_000 * number,
                        label=f"rush {number}: {size} password POSTs at once")
            records += rush.run()
            time.sleep(1.0)
        timeline.fault_ends("the last rush answered")
        return records

    try:
        records, timeline = drive(site, mix, rushes)
    finally:
        site.close()
    rushed = [r.password_seconds for r in records if r.phase == "rush" and r.password_seconds is not None]
    conclude(reliability, "rush", site, describe(site), records, timeline,
             [during({"too_many_signins"}, timeline.fault_began, timeline.fault_ended, "the line was full")],
             recovery_bound=5.0,
             notes=f"agents registered with `[agent] capacity = {RUSH_CAPACITY}` (edited in the TOML `pta-agent "
                   f"register` wrote, before `run`), so that a rush of 10× one agent's capacity ({size} password "
                   f"POSTs released together from pre-walked sessions, {RUSHES} times) stays within this 2-core "
                   f"machine's means, on top of the {WORKERS} workers' load. Expected: the rush waits for a slot; "
                   "only a full line may answer `too_many_signins`; never `no_agent_available` while agents are "
                   f"connected. The rushes' password POSTs were answered in {median(rushed):.2f} s (median), "
                   f"{max(rushed, default=0):.2f} s at most.")


def test_kill_9_of_one_agent_loses_only_what_it_acknowledged(ad_testbed, reliability):
    site = site_build(ad_testbed)
    mix = SignInMix(ad_testbed)

    def kill(timeline: Timeline, load: LoadRun) -> None:
        busy = agent_busy(site, site.agents[0])
        timeline.fault_begins(f"agent1 kill -9 ({busy} in flight on it)")
        site.agents[0].stop(kill=True)
        timeline.fault_ends("agent1 dead")

    try:
        records, timeline = drive(site, mix, kill)
    finally:
        site.close()
    at = timeline.fault_began
    conclude(reliability, "agent_kill", site, describe(site), records, timeline,
             [during({"agent_timeout"}, at, at + 1.0, "acknowledged by the killed agent", limit=site.capacity)],
             recovery_bound=5.0,
             notes="Sign-ins the killed agent had acknowledged end as `agent_timeout` (at most its capacity); "
                   "the others go to the second agent.")


def test_sigterm_of_one_agent_finishes_what_it_acknowledged(ad_testbed, reliability):
    site = site_build(ad_testbed)
    mix = SignInMix(ad_testbed)
    exit_codes = []

    def terminate(timeline: Timeline, load: LoadRun) -> None:
        agent = site.agents[0]
        busy = agent_busy(site, agent)
        timeline.fault_begins(f"agent1 SIGTERM ({busy} in flight on it)")
        agent.proc.send_signal(signal.SIGTERM)
        try:
            exit_codes.append(agent.wait(AGENT_GRACE_SECONDS + 10))
        finally:
            timeline.fault_ends(f"agent1 exited ({agent.proc.poll()})")

    try:
        records, timeline = drive(site, mix, terminate)
    finally:
        site.close()
    conclude(reliability, "agent_sigterm", site, describe(site), records, timeline, [], recovery_bound=5.0,
             problems=[] if exit_codes == [0] else [f"the agent exited {exit_codes or 'late'} after SIGTERM"],
             notes="Nothing may be lost: the stopping agent answers what it acknowledged, refuses new requests "
                   "as busy (the portal tries the other agent), then exits 0.")


def test_every_agent_stopped_then_started(ad_testbed, reliability):
    site = site_build(ad_testbed)
    mix = SignInMix(ad_testbed)

    def restart(timeline: Timeline, load: LoadRun) -> None:
        busy = agent_busy(site, site.agents[0])
        timeline.fault_begins(f"both agents SIGTERM ({busy} in flight on agent1)")
        for agent in site.agents:
            agent.proc.send_signal(signal.SIGTERM)
        for agent in site.agents:
            agent.wait(AGENT_GRACE_SECONDS + 10)
        timeline.mark("both agents exited")
        time.sleep(3.0)
        site.agents = [site.portal.agent_run(config) for config in site.configs]
        timeline.fault_ends("both agents started")

    try:
        records, timeline = drive(site, mix, restart)
    finally:
        site.close()
    conclude(reliability, "agents_restart", site, describe(site), records, timeline,
             [during({"no_agent_available"}, timeline.fault_began, timeline.fault_ended + 5.0, "no agent connected")],
             recovery_bound=5.0,
             notes="While no agent is connected, a sign-in waits for one (the tenant had agents moments ago) "
                   "at most `PTA_PRESENCE_WAIT_SECONDS` (5 s) within its deadline, then ends `no_agent_available`; "
                   "the restarted agents reconnect by themselves. A stopping agent answers every request it "
                   "acknowledged: one whose ack was being sent when SIGTERM came used to find the stop's wait "
                   "already over, its result lost with the closed connection (the occasional `agent_timeout` of "
                   "this scenario, about one run in eight; tests/agents/onprem/test_runner.py).")


# --- the portal's processes and stores -----------------------------------------------------------------------


def test_kill_9_of_one_of_two_nodes(ad_testbed, reliability):
    """Clients of the dead node move to the other (as behind a load balancer): count the connection errors;
    none may get a wrong answer."""
    site = site_build(ad_testbed, nodes=("a", "b"), agent_nodes=(0, 1))
    mix = SignInMix(ad_testbed)

    def kill(timeline: Timeline, load: LoadRun) -> None:
        timeline.fault_begins("node b kill -9 (agent2 was connected to it)")
        site.nodes[1].stop(kill=True)
        timeline.fault_ends("node b dead")

    try:
        records, timeline = drive(site, mix, kill)
    finally:
        site.close()
    at = timeline.fault_began
    retried = [r for r in records if r.connection_errors]
    conclude(reliability, "node_kill", site, describe(site) + ", one agent on each; workers spread over both",
             records, timeline,
             [during({"agent_timeout"}, at, at + 1.0, "acknowledged by the agent of the dead node, whose result "
                     "could only come back through it", limit=site.capacity)],
             recovery_bound=10.0,
             notes=f"{len(retried)} sign-ins met a connection error on the dead node and were walked again on the "
                   f"other one: {_labels(retried)}. No wrong answer among them (asserted with the rest).")


def test_redis_restarted_keeping_its_data(ad_testbed, reliability, tmp_path):
    """As docs/deploy.md has operators run Redis (an append-only file, fsynced every second) and restart it
    (``systemctl restart redis-server``: SIGTERM, Redis writes its file out and exits, then starts on the same
    directory and loads it): sessions, presence and lockout counters come back, so no good sign-in may be lost.
    What remains of the fault is the outage itself and the pub/sub subscriptions, which each node makes again."""
    server = RedisServer(tmp_path, persistent=True).start()
    try:
        site = site_build(ad_testbed, nodes=("a", "b"), agent_nodes=(0, 1), redis_url=server.url)
    except BaseException:
        server.stop(kill=True)
        raise
    mix = SignInMix(ad_testbed)
    kept = []

    def restart(timeline: Timeline, load: LoadRun) -> None:
        before = server.keys()
        timeline.fault_begins(f"redis-server SIGTERM ({before} keys)")
        server.stop()
        timeline.mark(f"redis-server exited ({server.proc.returncode if server.proc else '?'})")
        time.sleep(2.0)
        server.start()
        after = server.keys()
        kept.append((before, after))
        timeline.fault_ends(f"redis-server started again on its directory ({after} keys loaded)")

    try:
        records, timeline = drive(site, mix, restart)
    finally:
        site.close()
        server.stop(kill=True)
    # The witness that the data came back: the keys (sessions, presence, counters) were there after the restart.
    problems = [f"redis-server came back with {after} keys of the {before} it had"
                for before, after in kept if after < before // 2]
    conclude(reliability, "redis_restart_kept", site, describe(site) + ", one agent on each; private "
             "redis-server with an append-only file (`appendonly yes`, `appendfsync everysec`)",
             records, timeline, [], recovery_bound=10.0, problems=problems,
             notes="As docs/deploy.md configures Redis (deploy/redis/pta-redis.conf: `appendonly yes`, `appendfsync "
                   "everysec`) and restarts it (`systemctl restart redis-server`): SIGTERM, Redis writes out its "
                   "append-only file and exits; 2 s later it starts again on the same directory and port and loads "
                   "it (its keys before and after: the faults' column). Sessions, presence, lockout counters and "
                   "familiar addresses are kept, so nothing may be lost. While Redis is away the portal's Redis "
                   "commands are retried for about 5 s (config/redis.py): the sign-ins wait. Pub/sub subscriptions "
                   "do not survive a restart, data or not: each node subscribes again about a second after Redis "
                   "answers, and a message published meanwhile reaches no one, without an error. Both sides of the "
                   "hand-off between nodes send again what no one heard (agents/handoff/relay.py); before, an "
                   "agent's ack or result published in that second was lost, and a sign-in the agent had answered "
                   "ended `agent_timeout` (2 or 3 good sign-ins a run in the scenario below).")


def test_redis_restarted_losing_its_data(ad_testbed, reliability, tmp_path):
    server = RedisServer(tmp_path).start()
    try:
        site = site_build(ad_testbed, nodes=("a", "b"), agent_nodes=(0, 1), redis_url=server.url)
    except BaseException:
        server.stop(kill=True)
        raise
    mix = SignInMix(ad_testbed)

    def restart(timeline: Timeline, load: LoadRun) -> None:
        timeline.fault_begins("redis-server SIGTERM")
        server.stop()
        time.sleep(2.0)
        server.start()
        timeline.fault_ends("redis-server started again (empty)")

    try:
        records, timeline = drive(site, mix, restart)
    finally:
        site.close()
        server.stop(kill=True)
    start, end = timeline.fault_began, timeline.fault_ended
    conclude(reliability, "redis_restart", site, describe(site) + ", one agent on each; private redis-server "
             "without persistence (`--save \"\" --appendonly no`)",
             records, timeline,
             [during({"!session_lost", "session_expired"}, start, end + 10.0,
                     "the session (in Redis) was lost mid-walk: the portal says start again"),
              during({"no_agent_available", "agent_timeout", "agent_error", "cloud_locked"},
                     start, end + 10.0, "presence, the hand-off, lockout state and familiar addresses live in "
                     "Redis")],
             recovery_bound=10.0,
             notes="A restart that loses Redis's data, as a crash of a Redis without persistence does (the "
                   "deployment keeps it: the scenario above): sessions, presence, lockout counters and familiar "
                   "addresses are gone. Walks in progress may be sent back to the username page (`!session_lost`); "
                   "right after it, good users' addresses are unfamiliar again and share a lockout bucket with the "
                   "wrong guesses until a success marks them familiar. A sign-in that finds no presence waits for "
                   "the nodes to republish their agents (`PTA_PRESENCE_WAIT_SECONDS`) instead of answering "
                   "`no_agent_available`; one the channel layer could not relay is tried again on the same agent; "
                   "an ack or a result the serving node could not send back, or that no node heard, is sent again "
                   "until its request expires. `session_expired` stays: a walk whose session Redis lost starts "
                   "again. Keeping that state elsewhere (a signed cookie) would make it replayable and movable: the "
                   "sealing ticket a password post uses up, the lockout reservation and the MFA step's state are "
                   "kept on the server so that a copy can neither be posted again nor taken to another browser. "
                   "The deployment keeps Redis's data instead (the scenario above).")


def test_postgresql_restarted(ad_testbed, reliability, postgres_cluster):
    site = site_build(ad_testbed, pg_url=postgres_cluster.url())
    mix = SignInMix(ad_testbed)

    def restart(timeline: Timeline, load: LoadRun) -> None:
        timeline.fault_begins("PostgreSQL stopped (pg_ctl stop -m fast)")
        postgres_cluster.stop()
        time.sleep(2.0)
        postgres_cluster.start()
        timeline.fault_ends("PostgreSQL started")

    try:
        records, timeline = drive(site, mix, restart)
    finally:
        site.close()
    conclude(reliability, "postgres_restart", site, describe(site) + "; private PostgreSQL cluster", records,
             timeline, [during(REFUSALS, timeline.fault_began, timeline.fault_ended + 10.0,
                               "the portal's database was down")],
             recovery_bound=10.0,
             notes="A private cluster (`initdb`/`pg_ctl` on a free port; tests/fixtures/postgres.py), never the "
                   "machine's. While it is down, any definite refusal is accepted; a 5xx or a hang is not.")


# --- the directory -------------------------------------------------------------------------------------------


def test_dc_stopped_then_started(ad_testbed, reliability):
    dc = DomainController(ad_testbed)
    site = site_build(ad_testbed)
    mix = SignInMix(ad_testbed)

    def outage(timeline: Timeline, load: LoadRun) -> None:
        timeline.fault_begins("DC stopped (scripts/ad-testbed stop)")
        try:
            dc.stop()
            timeline.mark("DC down")
            time.sleep(3.0)
            dc.start()
        finally:
            dc.ensure_running()
            timeline.fault_ends("DC started, answering LDAPS")

    try:
        records, timeline = drive(site, mix, outage)
    finally:
        site.close()
        dc.ensure_running()
    conclude(reliability, "dc_restart", site, describe(site), records, timeline,
             [during({"directory_unavailable"}, timeline.fault_began, timeline.fault_ended + 5.0, "the DC was down")],
             recovery_bound=5.0,
             notes="Stopped with `scripts/ad-testbed stop`, started again with the command that script starts it "
                   "with (`samba -s DIR/etc/smb.conf -D`), on the same directory: the same DC comes back (its "
                   "`start` on a stopped DC would provision a new domain, with new objectGUIDs and a new CA).")


def test_dc_frozen_for_five_seconds(ad_testbed, reliability):
    dc = DomainController(ad_testbed)
    site = site_build(ad_testbed)
    mix = SignInMix(ad_testbed)

    def freeze(timeline: Timeline, load: LoadRun) -> None:
        try:
            frozen = dc.freeze()
            timeline.fault_begins(f"DC frozen (SIGSTOP to its {len(frozen)} processes)")
            time.sleep(5.0)
        finally:
            dc.thaw()
            timeline.fault_ends("DC thawed (SIGCONT)")

    try:
        records, timeline = drive(site, mix, freeze)
    finally:
        site.close()
        dc.ensure_running()
    conclude(reliability, "dc_freeze", site, describe(site), records, timeline,
             [during({"directory_unavailable"}, timeline.fault_began, timeline.fault_ended + 5.0,
                     "the DC did not answer")],
             recovery_bound=5.0,
             notes="A DC that accepts connections but answers nothing: the agent's LDAP timeouts (5 s) must turn "
                   "it into `directory_unavailable` within the sign-in deadline "
                   f"({SIGNIN_DEADLINE_SECONDS:.0f} s), never a hang or `agent_timeout`.")


def _labels(records: list[SignInRecord]) -> str:
    counts: dict[str, int] = {}
    for record in records:
        counts[record.label] = counts.get(record.label, 0) + 1
    return ", ".join(f"{label} {n}" for label, n in sorted(counts.items(), key=lambda item: -item[1])) or "none"


def test_the_dc_is_left_running(ad_testbed):
    """Whatever the scenarios above did, the shared DC answers again."""
    dc = DomainController(ad_testbed)
    dc.ensure_running()
    wait_for(dc.answers, timeout=30, message="the DC to answer LDAPS")
