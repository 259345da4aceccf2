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
from tests.fixtures.nginx import Nginx, TestCA
from tests.fixtures.portal import AgentProcess, DaphneNode, Portal, local_agents, make_portal, wait_for
from tests.resilience.load import GOOD_ADDRESS, SignInMix
from tests.resilience.releases import Release


@dataclass
class Site:
    portal: Portal
    nodes: list[DaphneNode]
    tenant: str
    agents: list[AgentProcess]
    capacity: int
    configs: list[Path] = field(default_factory=list)
    closed_logs: str | None = None
    proxy: Nginx | None = None  # in front of the nodes: then the sign-ins go through it
    verify: str | bool = True  # the proxy's CA

    def __repr__(self) -> str:  # the nodes' and portal's env hold the portal's secrets: never in a failure's output
        return f"Site({', '.join(node.url for node in self.nodes)}; {len(self.agents)} agents; tenant {self.tenant})"

    @property
    def urls(self) -> list[str]:
        """Where the sign-ins go: the proxy, or each node (the load spreads its workers over them)."""
        return [self.proxy.url] if self.proxy is not None else [node.url for node in self.nodes]

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
        if self.proxy is not None:
            errors = [line for line in _read(self.proxy.log_path).splitlines() if "[error]" in line]
            parts.append(f"--- nginx: {len(errors)} error lines, the last:\n" + "\n".join(errors[-8:]))
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
        if self.proxy is not None:
            self.proxy.stop()
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


def site_behind_nginx(ad, directory: Path, *, previous: Release | None = None, old_nodes: tuple[int, ...] = (),
                      old_agents: tuple[int, ...] = (), old_nginx: bool = False) -> Site:
    """What an operator runs (docs/deploy.md): nginx with deploy/nginx/pta-portal.conf in front of two production
    nodes, and two agents registered and connected through it (https, wss, the proxy's CA given to them). With
    ``previous``, the nodes and agents of the indexes given run that release (tests/resilience/releases.py), and
    with ``old_nginx`` nginx runs its file, as its docs wrote the servers (nginx's default failure marking)."""
    portal = make_portal("production")
    proxy = None
    try:
        portal.env.update(PTA_TRUSTED_PROXIES="127.0.0.1")  # nginx connects to the nodes from there
        tls = TestCA.make(directory / "tls", ["127.0.0.1"])
        nodes = []
        for index, name in enumerate(("a", "b")):
            old = previous is not None and index in old_nodes
            nodes.append(portal.start_node(name, program=previous.program("daphne") if previous and old else "",
                                           cwd=previous.source if previous and old else None))
        proxy = Nginx(directory / "nginx", "127.0.0.1", [f"127.0.0.1:{node.port}" for node in nodes],
                      static_root=Path(portal.env["PTA_STATE_DIR"]) / "static", tls=tls)
        if previous is not None and old_nginx:
            proxy.template, proxy.server_options = previous.source / "deploy/nginx/pta-portal.conf", ""
        proxy.start()
        tenant = portal.tenant_create("Contoso", ad.upn_suffix)
        agents, configs = [], []
        for index in range(2):
            config, result = portal.agent_register(
                proxy, portal.agent_token(tenant), name=f"agent{index + 1}", ldap_urls=(ad.ldaps_url,),
                extra=("--ca-file", ad.ca_file, "--portal-ca-file", str(tls.ca_path)))
            assert result.returncode == 0, result.stderr
            configs.append(config)
            old = previous is not None and index in old_agents
            agents.append(portal.agent_run(config, program=previous.program("pta-agent") if previous and old else ""))
        site = Site(portal, nodes, tenant, agents, 32, configs, proxy=proxy, verify=str(tls.ca_path))
        wait_for(lambda: site.connected() == len(agents), timeout=30,
                 message=lambda: f"{len(agents)} agents to connect through nginx:\n{site.logs()}")
        site_warm_up(site, ad)
        return site
    except BaseException:
        if proxy is not None:
            proxy.stop()
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
