"""One portal under test for a scenario: production profile, N Daphne nodes, two pta-agents on the test bed's DC,
warmed up (every good user signed in once from GOOD_ADDRESS, through every node)."""

from __future__ import annotations

import collections
import contextlib
import functools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import tomli_w

from tests.fixtures.http import sign_in
from tests.fixtures.portal import AgentProcess, DaphneNode, Portal, local_agents, make_portal, wait_for
from tests.resilience.load import GOOD_ADDRESS, SignInMix


@dataclass
class Site:
    portal: Portal
    nodes: list[DaphneNode]
    tenant: str
    agents: list[AgentProcess]
    capacity: int
    configs: list[Path] = field(default_factory=list)
    closed_logs: str | None = None

    def __repr__(self) -> str:  # the nodes' and portal's env hold the portal's secrets: never in a failure's output
        return f"Site({', '.join(node.url for node in self.nodes)}; {len(self.agents)} agents; tenant {self.tenant})"

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def connected(self) -> int:
        total = 0
        for node in self.nodes:
            if node.running:
                with contextlib.suppress(Exception):
                    total += local_agents(node)
        return total

    def logs(self) -> str:
        """The tails of the nodes' and agents' logs (as they were at close(), once closed), and every error line
        of the nodes' logs."""
        if self.closed_logs is not None:
            return self.closed_logs
        parts = []
        for node in self.nodes:
            text = _read(node.log_path)
            errors = [line for line in text.splitlines() if " ERROR " in line or line.startswith(_RAISED)]
            summary = collections.Counter(errors).most_common(8)
            parts.append(f"--- {node.name}: error lines {sum(n for _, n in summary)}, most common:\n"
                         + "\n".join(f"{n}× {line[:300]}" for line, n in summary) + f"\n--- tail\n{text[-2000:]}")
        parts += [f"--- agent {agent.agent_id}\n{_read(agent.log_path)[-1500:]}" for agent in self.agents]
        return "\n".join(parts)

    def records(self) -> str:
        """The portal's own sign-in records of the outcomes no fault-free run gives (agent, timings), for the
        failure message; "" when the database cannot be read."""
        usual = ("success", "invalid_credentials", "cloud_locked")
        try:
            rows = self.portal.sql(
                "SELECT to_char(created_at, 'HH24:MI:SS.MS'), outcome, username, agent_id, agent_ms, total_ms "
                "FROM signin_signinevent WHERE outcome <> ALL(%s) ORDER BY created_at LIMIT 12", (list(usual),))
        except Exception as exc:  # noqa: BLE001 - the database may be the fault
            return f"(sign-in records unreadable: {type(exc).__name__})"
        return "\n".join(" ".join(str(value) for value in row) for row in rows)

    def close(self) -> None:
        # The portal's directory (its logs) and its database go with it: what a failure message needs, first.
        self.closed_logs = self.logs() + "\n--- sign-in records, unusual outcomes\n" + self.records()
        self.portal.close()


# The last line of a traceback: "SomeError: message".
_RAISED = tuple(f"{name}" for name in ("django.", "psycopg", "redis.", "OSError", "ConnectionError", "TimeoutError",
                                       "RuntimeError", "ValueError", "KeyError", "AttributeError", "TypeError"))


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return "(no log)"


def agent_capacity_set(config: Path, capacity: int) -> None:
    """Edit [agent] capacity in the TOML that `pta-agent register` wrote (before `run`)."""
    data = tomllib.loads(config.read_text())
    data["agent"]["capacity"] = capacity
    config.write_text(tomli_w.dumps(data))


def site_build(ad, *, nodes: tuple[str, ...] = ("web",), agent_nodes: tuple[int, ...] = (0, 0),
               capacity: int | None = None, redis_url: str = "", pg_url: str = "",
               env: dict[str, str] | None = None) -> Site:
    """``agent_nodes``: for each agent, the index of the node it registers with and connects to."""
    portal = make_portal("production", redis_url=redis_url, pg_url=pg_url)
    try:
        portal.env.update(env or {})
        started = [portal.start_node(name) for name in nodes]
        tenant = portal.tenant_create("Contoso", ad.upn_suffix)
        agents, configs = [], []
        for number, node_index in enumerate(agent_nodes, start=1):
            token = portal.agent_token(tenant)
            config, result = portal.agent_register(started[node_index], token, name=f"agent{number}",
                                                   ldap_urls=(ad.ldaps_url,), extra=("--ca-file", ad.ca_file))
            assert result.returncode == 0, result.stderr
            if capacity is not None:
                agent_capacity_set(config, capacity)
            configs.append(config)
            agents.append(portal.agent_run(config))
        site = Site(portal, started, tenant, agents, capacity or 32, configs)
        wait_for(lambda: site.connected() == len(agents), timeout=30,
                 message=lambda: f"{len(agents)} agents to connect:\n{site.logs()}")
        site_warm_up(site, ad)
        return site
    except BaseException:
        portal.close()
        raise


def site_warm_up(site: Site, ad) -> None:
    """Every good user signs in once through every node from GOOD_ADDRESS: the address becomes familiar, the
    agents' DC connections open, and every node sees both agents' presence."""
    for node in site.nodes:
        transport = httpx.HTTPTransport(local_address=GOOD_ADDRESS)
        with httpx.Client(base_url=node.url, timeout=20, transport=transport) as client:
            for upn, password in SignInMix(ad).good.items():
                wait_for(functools.partial(_signed_in, client, upn, password), timeout=30, interval=0.5,
                         message=functools.partial(_warm_up_failure, site, upn, node.name))


def _warm_up_failure(site: Site, upn: str, node_name: str) -> str:
    return f"{upn} to sign in through {node_name}:\n{site.logs()}"


def _signed_in(client: httpx.Client, upn: str, password: str) -> bool:
    client.cookies.clear()
    return sign_in(str(client.base_url), upn, password, client=client).outcome == "success"
