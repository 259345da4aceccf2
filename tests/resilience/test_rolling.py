"""Upgrades under load, as an operator runs them with deploy/ and docs/deploy.md: nginx in front of two production
nodes and two agents (registered and connected through it), 16 browsers signing in through nginx.

- the nodes restarted one after the other (SIGTERM: each drains, config/drain.py; started again; the next one
  once the first answers /healthz);
- the agents restarted one after the other (SIGTERM: each finishes what it acknowledged; started again; the next
  one once the first is connected);
- two releases in one deployment: a node and an agent of the previous release (tests/resilience/releases.py)
  beside a node and an agent of this one, then that agent upgraded.

None of them may lose a good sign-in: no allowance at all (the other promises of test_faults.py hold as well).
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.fixtures.portal import DaphneNode, wait_for
from tests.resilience.load import LoadRun, SignInMix, Timeline
from tests.resilience.releases import Release, previous_release
from tests.resilience.site import Site, site_behind_nginx
from tests.resilience.test_faults import AGENT_GRACE_SECONDS, conclude, drive

pytestmark = [pytest.mark.integration, pytest.mark.resilience]

DRAIN_SECONDS = 20.0 + 3.0  # PTA_DRAIN_SECONDS and PTA_DRAIN_LINGER_SECONDS, the defaults
# A release to run the two rolling restarts on instead, entirely (its nodes, agents and nginx file): the figures
# before a change, e.g. PTA_RESILIENCE_BASELINE=d17879f scripts/resilience -k rolling. Such a run is reported
# under its own names and never written to docs/RELIABILITY.md.
BASELINE = os.environ.get("PTA_RESILIENCE_BASELINE", "")


def rolling_site(ad, directory) -> tuple[Site, str, str]:
    """The site, the key suffix of its figures, and the pta-agent to restart agents with."""
    if not BASELINE:
        return site_behind_nginx(ad, directory), "", ""
    release = previous_release(BASELINE)
    site = site_behind_nginx(ad, directory, previous=release, old_nodes=(0, 1), old_agents=(0, 1), old_nginx=True)
    return site, f" (baseline: release {release.short})", release.program("pta-agent")


def describe(site: Site, versions: str = "") -> str:
    return (f"nginx (deploy/nginx/pta-portal.conf) in front of {len(site.nodes)} nodes, {len(site.agents)} agents "
            f"(capacity {site.capacity}) connected through it" + (f"; {versions}" if versions else ""))


def healthy(node: DaphneNode) -> bool:
    try:
        return httpx.get(f"{node.url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def node_restart(site: Site, node: DaphneNode, timeline: Timeline, *, first: bool) -> None:
    """As systemctl restart does (KillSignal=SIGTERM), then what docs/deploy.md waits for before the next one."""
    assert node.proc is not None
    (timeline.fault_begins if first else timeline.mark)(f"node {node.name} SIGTERM")
    started = time.monotonic()
    node.proc.send_signal(signal.SIGTERM)
    code = node.proc.wait(DRAIN_SECONDS + 10)
    timeline.mark(f"node {node.name} exited ({code}) after {time.monotonic() - started:.1f} s")
    assert code == 0, f"node {node.name} exited {code} after SIGTERM"
    node.start()
    wait_for(lambda: healthy(node), timeout=30, message=f"node {node.name} to answer /healthz")
    timeline.mark(f"node {node.name} started, /healthz answers")


def agent_restart(site: Site, index: int, timeline: Timeline, *, first: bool, program: str = "",
                  label: str = "") -> None:
    agent = site.agents[index]
    name = f"agent{index + 1}"
    (timeline.fault_begins if first else timeline.mark)(f"{name} SIGTERM")
    agent.proc.send_signal(signal.SIGTERM)
    code = agent.wait(AGENT_GRACE_SECONDS + 10)
    timeline.mark(f"{name} exited ({code})")
    assert code == 0, f"{name} exited {code} after SIGTERM"
    site.agents[index] = site.portal.agent_run(site.configs[index], program=program)
    wait_for(lambda: site.connected() == len(site.agents), timeout=30,
             message=lambda: f"{name} to connect again:\n{site.logs()}")
    timeline.mark(f"{name} {label or 'started'}, connected")


def test_rolling_restart_of_the_nodes_loses_no_sign_in(ad_testbed, reliability, tmp_path):
    site, baseline, _ = rolling_site(ad_testbed, tmp_path)
    mix = SignInMix(ad_testbed)

    def rolling(timeline: Timeline, load: LoadRun) -> None:
        for number, node in enumerate(site.nodes):
            node_restart(site, node, timeline, first=number == 0)
        timeline.fault_ends("both nodes restarted")

    try:
        records, timeline = drive(site, mix, rolling)
    finally:
        site.close()
    conclude(reliability, "rolling_nodes" + baseline, site, describe(site), records, timeline, [], recovery_bound=5.0,
             notes="As `systemctl restart pta-portal@…` one node after the other, the next once the first answers "
                   "/healthz (docs/deploy.md). SIGTERM drains a node: it stops listening (nginx takes new "
                   "connections to the other node, `max_fails=0` keeps both in its list), answers what it is "
                   "serving with `Connection: close`, then tells its agents to move (`NODE_LEAVING`: they "
                   "reconnect at once through nginx) and exits 0. Nothing may be lost.")


def test_rolling_restart_of_the_agents_loses_no_sign_in(ad_testbed, reliability, tmp_path):
    site, baseline, program = rolling_site(ad_testbed, tmp_path)
    mix = SignInMix(ad_testbed)

    def rolling(timeline: Timeline, load: LoadRun) -> None:
        for index in range(len(site.agents)):
            agent_restart(site, index, timeline, first=index == 0, program=program)
        timeline.fault_ends("both agents restarted")

    try:
        records, timeline = drive(site, mix, rolling)
    finally:
        site.close()
    conclude(reliability, "rolling_agents" + baseline, site, describe(site), records, timeline, [], recovery_bound=5.0,
             notes="As `systemctl restart pta-agent` on one agent's machine, then the other's once the first is "
                   "connected again. A stopping agent answers what it acknowledged and refuses new requests as "
                   "`shutting_down`: the portal asks the other agent. Nothing may be lost.")


def test_nodes_and_agents_of_two_releases_lose_no_sign_in(ad_testbed, reliability, tmp_path):
    """Nodes N and N+1 during an upgrade, agents N-1 and N with a portal N: the previous release's node and agent
    beside this tree's, requests relayed both ways between them; then the old agent upgraded."""
    release: Release = previous_release()
    site = site_behind_nginx(ad_testbed, tmp_path, previous=release, old_nodes=(0,), old_agents=(0,))
    mix = SignInMix(ad_testbed)

    def upgrade(timeline: Timeline, load: LoadRun) -> None:
        agent_restart(site, 0, timeline, first=True, label=f"upgraded ({release.short} → this tree)")
        timeline.fault_ends("agent1 upgraded")

    try:
        records, timeline = drive(site, mix, upgrade)
    finally:
        site.close()
    versions = (f"node a and agent1 run release {release.short} (protocol version 1), node b and agent2 this "
                "tree (version 2)")
    conclude(reliability, "mixed_versions", site, describe(site, versions), records, timeline, [],
             recovery_bound=5.0,
             notes=f"The previous release ({release.short}, exported with `git archive`, its environment built from "
                   "its own uv.lock: tests/resilience/releases.py) refuses unknown fields in frames and in messages "
                   "between nodes: this tree speaks version 1 to it (no `version` field, no new frame or close "
                   "code it would refuse), learning each node's version from its agents' presence records and "
                   "each agent's from its hello. Sign-ins reach either node through nginx and are relayed to the "
                   "agent on the other, both ways. Then agent1 is upgraded (SIGTERM, the new `pta-agent` started "
                   "with the same configuration). Nothing may be lost.")
