"""Reads about connected agents, for the sign-in path, the health view and the admin console."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import pta_protocol as protocol
from django.utils import timezone

from agents.connections import local_agents, node_id
from agents.models import Agent
from agents.presence import PresenceRecord, presence_registry


@dataclass(frozen=True)
class ConnectedAgent:
    """A connected agent serving a domain: where its connection is, and whether it is in THIS process."""

    record: PresenceRecord
    local: bool

    @property
    def agent_id(self) -> str:
        return self.record.agent_id

    @property
    def in_flight(self) -> int:
        return self.record.in_flight

    @property
    def full(self) -> bool:
        return self.record.in_flight >= self.record.capacity

    @property
    def node_id(self) -> str:
        return self.record.node_id

    @property
    def channel_name(self) -> str:
        return self.record.channel_name


async def agents_connected(*, tenant_id: str, domain: str, capability: str = "") -> list[ConnectedAgent]:
    """The connected agents of the tenant that serve ``domain`` (and announced ``capability``, when given):
    least in flight first, full ones last, a local one before a remote one at equal load. For a local agent
    the live in-flight count is used. Reads every agent of the tenant: the sign-in's path reads
    agents_sampled or agents_named first."""
    records = await presence_registry().for_tenant(tenant_id=str(tenant_id))
    return _serving(records, tenant_id=str(tenant_id), domain=domain, capability=capability)


# How many of a tenant's agents a sign-in reads before it chooses (the least busy of them): bounded work per
# sign-in however many agents the tenant has, and enough to find a free one while most are free.
SAMPLE = 8


async def agents_sampled(*, tenant_id: str, domain: str, capability: str = "",
                         count: int = SAMPLE) -> tuple[list[ConnectedAgent], bool]:
    """As agents_connected, over at most ``count`` of the tenant's agents drawn at random (all of them when it has
    no more); and whether they were all of them. A caller that finds none it can use there reads
    agents_connected: a tenant whose agents mostly serve another domain, or are mostly busy, costs that read."""
    records, complete = await presence_registry().sample_tenant(tenant_id=str(tenant_id), count=count)
    return _serving(records, tenant_id=str(tenant_id), domain=domain, capability=capability), complete


async def agents_named(*, agent_ids: Iterable[str], tenant_id: str, domain: str,
                       capability: str = "") -> list[ConnectedAgent]:
    """As agents_connected, over the named agents only (a browser-sealed sign-in's candidates): one read of their
    records."""
    found = await presence_registry().for_agents(agent_ids=[str(a) for a in agent_ids])
    records = [r for r in found.values() if r is not None]
    return _serving(records, tenant_id=str(tenant_id), domain=domain, capability=capability)


def _serving(records: Iterable[PresenceRecord], *, tenant_id: str, domain: str,
             capability: str) -> list[ConnectedAgent]:
    here = node_id()
    domain = domain.strip().lower()
    found: list[ConnectedAgent] = []
    for record in records:
        if record.tenant_id != tenant_id or domain not in record.domains:
            continue
        if capability and capability not in record.capabilities:
            continue
        consumer = local_agents.get(record.agent_id)
        if (consumer is not None and record.node_id == here and consumer.channel_name == record.channel_name
                and not consumer.closing):
            record = dataclasses.replace(record, in_flight=consumer.in_flight, capacity=consumer.capacity)
            found.append(ConnectedAgent(record=record, local=True))
        else:
            found.append(ConnectedAgent(record=record, local=False))
    found.sort(key=lambda a: (a.full, a.in_flight, not a.local, -a.record.last_beat))
    return found


async def password_change_available(*, tenant_id: str, domain: str) -> bool:
    """Whether an agent that can change passwords (it has a service account) serves this domain right now."""
    return bool(await agents_connected(tenant_id=tenant_id, domain=domain,
                                       capability=protocol.CAPABILITY_PASSWORD_CHANGE))


async def agent_presence(*, agent_id: str) -> PresenceRecord | None:
    """The presence of one agent, or None when it is not connected anywhere."""
    return await presence_registry().for_agent(agent_id=str(agent_id))


def agent_status(*, revoked: bool, expired: bool, connected: bool) -> Agent.Status:
    """An agent's status, the one notion of it for the health view, its alerts and the admin console: active while
    it is connected (its presence is refreshed by its node and expires within seconds of its loss), whatever
    ``last_seen`` says (written at most every PTA_LAST_SEEN_SECONDS, so it lags behind)."""
    if revoked:
        return Agent.Status.REVOKED
    if expired:
        return Agent.Status.EXPIRED
    return Agent.Status.ACTIVE if connected else Agent.Status.INACTIVE


async def agent_statuses(*, agents: Iterable[Agent]) -> dict[str, Agent.Status]:
    """agent_status of each agent (by id), its presence read as the health view reads it: all of them in one read
    (a Redis MGET in production, not a round trip per agent of the console's page)."""
    now = timezone.now()
    agents = list(agents)
    present = await presence_registry().for_agents(
        agent_ids=[str(agent.pk) for agent in agents if agent.revoked_at is None])
    statuses = {}
    for agent in agents:
        revoked = agent.revoked_at is not None
        statuses[str(agent.pk)] = agent_status(revoked=revoked, expired=agent.certificate_not_after <= now,
                                               connected=not revoked and present.get(str(agent.pk)) is not None)
    return statuses
