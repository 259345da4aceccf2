"""The hand-off's policy: which agent gets a password, when another one may be asked, and for how long.

The agents asked are the tenant's connected ones that serve the domain, least in flight first; the hand-off
itself (agents/handoff/: the local and the relayed path, the wait for ack then result) reports how each one
ended. Failover is only where it is safe, that is where no bind can have happened or another agent may reach a
DC this one cannot: no ack in time, a disconnect or an error frame that says the agent could not take it
(RETRYABLE_AGENT_ERRORS) before the ack, or directory_unavailable. After an ack nothing else is retried, a
disconnect included (agent_timeout): a second bind would count twice against AD's lockout. Every sign-in ends
by its deadline (PTA_SIGNIN_DEADLINE_SECONDS), with agent_timeout when an agent had it and never answered.

When every agent that could take the sign-in is busy, it waits for a slot (agents/queue.py: first come, first
served per tenant, bounded) within its deadline: a rush is queued, never refused while an agent is connected.

Restarts (docs/deploy.md, "Upgrades"): a connection that went away before its ack (its node left, the agent is
stopping) excludes that connection, not the agent, which is asked again once its presence names a new one; a
relayed request whose ack is late is given up as soon as the agent's presence no longer names the connection it
was sent to; and when none of the tenant's agents is present though one was moments ago, the sign-in waits for
one (PTA_PRESENCE_WAIT_SECONDS) rather than answer no_agent_available at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass, field

import pta_protocol as protocol
from channels.db import database_sync_to_async
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from agents.handoff import (
    AgentBusy,
    AgentDisconnected,
    AgentRequestError,
    AgentTimeout,
    AgentUnavailable,
    HandoffOutcome,
    LayerUnavailable,
)
from agents.handoff.relay import hand_over
from agents.queue import QueueFull, Ticket, slot_queues
from agents.selectors import ConnectedAgent, agents_connected, agents_named, agents_sampled
from agents.services.authority import signing_key_for_tenant
from agents.services.sealing import AgentsHint, BrowserSealed, agent_public_key

logger = logging.getLogger(__name__)

# Agent errors that mean "this agent could not take it, no bind happened": try the next agent.
RETRYABLE_AGENT_ERRORS = {"unavailable", "shutting_down", "unsupported"}
SHUTTING_DOWN = "shutting_down"
BUSY = "busy"  # no bind happened either: back in line, and another free agent is asked first


@dataclass(frozen=True)
class Validation:
    """What the hand-off learned about one password: the directory's answer, or how the hand-off ended."""

    outcome: protocol.Outcome | HandoffOutcome
    request_id: str
    ad_subcode: str = ""
    agent_id: str | None = None
    agent_ms: float | None = None
    user: dict = field(default_factory=dict)
    detail: str = ""
    # The domains the answering agent serves (the portal's record, not the agent's word): the only ones in
    # which its report of the user is believed.
    domains: tuple[str, ...] = ()
    # How long the sign-in waited for an agent slot (every agent busy), in milliseconds.
    queued_ms: float = 0.0
    # The user's transitive groups (the agent's entries: id, name, dn) with a signed-in answer: None when the agent
    # was not asked (it did not announce CAPABILITY_GROUPS: groups_asked False) or did not send them.
    groups: list[dict] | None = None
    groups_truncated: bool = False
    groups_asked: bool = False
    # The agent's own time (its result's latency_ms: from taking the request to its answer, the directory's work
    # included); agent_ms less this is the way there and back (the WebSocket, the relay between nodes, queues).
    agent_own_ms: float | None = None


# --- keys, loaded once per process --------------------------------------------------------------------

_signing_keys: dict[str, ed25519.Ed25519PrivateKey] = {}


async def _signing_key(tenant_id: str) -> ed25519.Ed25519PrivateKey:
    if tenant_id not in _signing_keys:
        _signing_keys[tenant_id] = await database_sync_to_async(signing_key_for_tenant)(uuid.UUID(tenant_id))
    return _signing_keys[tenant_id]


# --- the hand-off ---------------------------------------------------------------------------------------


async def password_validate(*, tenant_id: str, domain: str, username: str, password: str | None = None,
                            sealed: BrowserSealed | None = None, hint: AgentsHint | None = None) -> Validation:
    """Validate a password through the tenant's agents; every call ends within the sign-in deadline. The
    password comes as it was typed (sealed here for each agent asked), or ``sealed`` in the browser: then only
    the agents it holds an envelope for are asked, each with its own. ``hint``: agents to read first, by id (the
    sign-in's ticket named them moments ago), before a sample of the tenant's."""
    return await _through_agents(tenant_id=tenant_id, domain=domain, username=username, password=password,
                                 sealed=sealed, hint=hint)


async def account_state_check(*, tenant_id: str, domain: str, username: str) -> Validation:
    """Is the account still enabled in AD? No password: an agent reads its state with its service account
    (SUCCESS, with the objectGUID it found, or the state's outcome). Also within the sign-in deadline."""
    return await _through_agents(tenant_id=tenant_id, domain=domain, username=username, password=None)


@sensitive_variables("current_password", "new_password")
async def password_change(*, tenant_id: str, domain: str, username: str, current_password: str | None = None,
                          new_password: str | None = None, sealed: BrowserSealed | None = None) -> Validation:
    """Change an expired or must-change password through an agent that announced it can (its service account
    makes the change): PASSWORD_CHANGED with the user, INVALID_CREDENTIALS, PASSWORD_REJECTED (AD's reason in
    ``detail``), … Only agents that could not take it (no ack) are passed over: once one has acked, its
    answer is final, a directory_unavailable included (the change may have reached AD)."""
    return await _through_agents(tenant_id=tenant_id, domain=domain, username=username, password=current_password,
                                 new_password=new_password, sealed=sealed)


@sensitive_variables("password", "new_password")
async def _through_agents(*, tenant_id: str, domain: str, username: str, password: str | None,
                          new_password: str | None = None, sealed: BrowserSealed | None = None,
                          hint: AgentsHint | None = None) -> Validation:
    deadline = time.monotonic() + settings.PTA_SIGNIN_DEADLINE_SECONDS
    tenant_id = str(tenant_id)
    tried: set[str] = set()  # agents that answered, or failed this sign-in: not asked again
    # Connections that could not take it (gone, no ack): the agent may be asked again once it is elsewhere.
    tried_connections: set[tuple[str, str]] = set()
    waiting_since = 0.0  # when it began waiting for its tenant's agents to be present again
    answered_busy: set[str] = set()  # agents whose own count said busy: asked again only when no other is free
    ticket: Ticket | None = None
    last = Validation(outcome=HandoffOutcome.NO_AGENT_AVAILABLE, request_id="")
    changing = new_password is not None or (sealed is not None and sealed.kind == protocol.REQUEST_PASSWORD_CHANGE)
    state_check = password is None and sealed is None
    capability = protocol.CAPABILITY_PASSWORD_CHANGE if changing else ""
    # Another agent may reach a DC this one cannot; a state check binds nothing, so any refusal may move on.
    # A change is never sent twice.
    move_on: set[protocol.Outcome | HandoffOutcome] = (set() if changing else
               {protocol.Outcome.DIRECTORY_UNAVAILABLE} | ({HandoffOutcome.AGENT_ERROR} if state_check else set()))
    try:
        while (remaining := deadline - time.monotonic()) > 0.05:
            async with asyncio.timeout(remaining):  # the presence registry may stall (Redis away); not past this
                connected, every_one = await _candidates(tenant_id=tenant_id, domain=domain, capability=capability,
                                              sealed=sealed, skip=tried | answered_busy,
                                              skip_connections=tried_connections, hint=hint)
            serving = [a for a in connected if domain in a.record.domains and a.record.tenant_id == tenant_id]
            if serving:
                _presence_seen[tenant_id] = time.monotonic()
            eligible = [a for a in serving
                        if a.agent_id not in tried and (a.agent_id, a.channel_name) not in tried_connections
                        and (sealed is None or a.record.key_id in sealed.envelopes)]  # an envelope it can open
            if not eligible:
                if any(a.agent_id in tried for a in serving) or not _presence_expected(tenant_id):
                    break
                if sealed is not None and serving and not any(a.record.key_id in sealed.envelopes for a in serving):
                    break  # present, but none of them is one the browser sealed for: the page seals again
                # Agents of the tenant were here moments ago: a node left (they are reconnecting elsewhere) or
                # Redis restarted (each node republishes its agents within PTA_PRESENCE_FLUSH_SECONDS). Wait for
                # them, PTA_PRESENCE_WAIT_SECONDS at most and within the deadline, rather than answer
                # no_agent_available at once.
                waiting_since = waiting_since or time.monotonic()
                wait_ends = min(deadline - 0.05, waiting_since + settings.PTA_PRESENCE_WAIT_SECONDS)
                if time.monotonic() >= wait_ends:
                    break
                await asyncio.sleep(min(PRESENCE_POLL_SECONDS, max(0.0, wait_ends - time.monotonic())))
                continue
            free = [a for a in eligible if not a.full]
            if not free or (ticket is None and slot_queues.length(tenant_id)):  # nobody jumps the line
                if ticket is None:
                    ticket = slot_queues.join(tenant_id, limit=settings.PTA_SIGNIN_QUEUE_LENGTH)
                if not free or not slot_queues.at_head(ticket):
                    await slot_queues.wait(ticket, timeout=remaining)
                    continue
            agent = next((a for a in free if a.agent_id not in answered_busy), free[0])
            queued_ms = _leave(ticket)
            ticket = None
            # Waiting for an ack only makes sense with another agent to turn to: the only one gets the deadline.
            ack_seconds = settings.PTA_AGENT_ACK_SECONDS if len(eligible) > 1 or not every_one else None
            validation = await _ask(agent, tenant_id=tenant_id, domain=domain, username=username, password=password,
                                    new_password=new_password, deadline=deadline, ack_seconds=ack_seconds,
                                    sealed=sealed)
            if validation is None:  # busy after all (its presence was behind): back in line, to wait there
                answered_busy.add(agent.agent_id)
                ticket = slot_queues.join(tenant_id, limit=settings.PTA_SIGNIN_QUEUE_LENGTH)
                await slot_queues.wait(ticket, timeout=deadline - time.monotonic())
                continue
            if validation.outcome is HandoffOutcome.NO_AGENT_AVAILABLE:  # gone, or no ack: no bind happened
                if validation.detail == MOVED:
                    tried_connections.add((agent.agent_id, agent.channel_name))
                elif validation.detail == LAYER_AWAY:  # Redis, not the agent: the same agent, a moment later
                    await asyncio.sleep(min(PRESENCE_POLL_SECONDS, max(0.0, deadline - time.monotonic() - 0.05)))
                else:
                    tried.add(agent.agent_id)
                continue
            validation = dataclasses.replace(validation, queued_ms=queued_ms)
            if validation.outcome not in move_on:
                return validation
            tried.add(agent.agent_id)
            last = validation
    except QueueFull:
        logger.warning("sign-in refused for tenant %s: the line for its agents is full", tenant_id)
        return Validation(outcome=HandoffOutcome.TOO_MANY_SIGNINS, request_id="")
    except TimeoutError:  # from the bounds above: no agent had the request then
        logger.warning("sign-in for tenant %s: the presence registry or the database overran the deadline", tenant_id)
    finally:
        _leave(ticket)
    # A connection that went away before its ack took no bind: that alone is no agent_timeout.
    if time.monotonic() >= deadline - 0.05 and (tried or ticket is not None or last.request_id):
        return dataclasses.replace(last, outcome=HandoffOutcome.AGENT_TIMEOUT)
    return last


async def _candidates(*, tenant_id: str, domain: str, capability: str, sealed: BrowserSealed | None,
                      skip: set[str], skip_connections: set[tuple[str, str]],
                      hint: AgentsHint | None = None) -> tuple[list[ConnectedAgent], bool]:
    """The agents to choose from: a bounded read first (the agents the browser sealed for, or those ``hint``
    names, or a sample of the tenant's), enough when it holds a free agent this sign-in may ask; else every agent
    of the tenant, so what follows (waiting for a slot, for presence, giving up) decides on all of them as before.
    And whether they are every agent this sign-in could ask (False: a sample, others may take it should this one
    not ack)."""

    def usable(found: list[ConnectedAgent]) -> bool:
        return any(not a.full and a.agent_id not in skip and (a.agent_id, a.channel_name) not in skip_connections
                   and (sealed is None or a.record.key_id in sealed.envelopes) for a in found)

    if sealed is not None and sealed.agent_ids:
        # Only the agents it was sealed for can open it: they are every one it could ask.
        found = await agents_named(agent_ids=sealed.agent_ids, tenant_id=tenant_id, domain=domain,
                                   capability=capability)
        complete, every_one = False, True
    else:
        if sealed is None and hint is not None and hint.agent_ids:
            # Named moments ago (the sign-in's ticket): one read by id instead of a draw and a read.
            found = await agents_named(agent_ids=hint.agent_ids, tenant_id=tenant_id, domain=domain,
                                       capability=capability)
            if usable(found):
                return found, hint.every_one
        found, complete = await agents_sampled(tenant_id=tenant_id, domain=domain, capability=capability)
        every_one = complete
    if complete or usable(found):
        return found, every_one
    return await agents_connected(tenant_id=tenant_id, domain=domain, capability=capability), True


# Tenant → when this process last saw one of its agents present (monotonic). A sign-in that finds none waits for
# them while that was less than a presence record's life ago; otherwise (no agent for a while, a node just
# started) it answers no_agent_available at once.
_presence_seen: dict[str, float] = {}
PRESENCE_POLL_SECONDS = 0.2
MOVED = "moved"  # Validation.detail of a NO_AGENT_AVAILABLE whose connection went away: the agent may come back
LAYER_AWAY = "layer_away"  # … of one that could not be relayed (Redis away): the agent is not to blame


def _presence_expected(tenant_id: str) -> bool:
    seen = _presence_seen.get(tenant_id)
    return seen is not None and time.monotonic() - seen < protocol.PRESENCE_TTL_SECONDS


def _leave(ticket: Ticket | None) -> float:
    """Out of the line (a slot was found, or the sign-in ends); how long it waited, in milliseconds."""
    if ticket is None:
        return 0.0
    slot_queues.leave(ticket)
    return round(ticket.waited * 1000, 2)


@sensitive_variables("password", "new_password", "sealed_for")
async def _ask(agent: ConnectedAgent, *, tenant_id: str, domain: str, username: str, password: str | None,
               deadline: float, ack_seconds: float | None, new_password: str | None = None,
               sealed: BrowserSealed | None = None) -> Validation | None:
    """One agent, once. None: it was busy. NO_AGENT_AVAILABLE: it could not take it (no bind happened).
    TimeoutError: the database did not give the keys by the deadline."""
    async with asyncio.timeout(deadline - time.monotonic()):  # read from the database on their first use
        public_key = await agent_public_key(agent.record.key_id) if sealed is None else None
        signing_key = await _signing_key(tenant_id)
    key_id = agent.record.key_id
    if sealed is not None:
        # Sealed in the browser for this agent's key, bound to the request id and expiry the portal issued (the
        # sign-in's ticket): the request carries them as they are, failover included (each agent its envelope).
        request_id, expires_at, kind = sealed.request_id, sealed.expires_at, sealed.kind
        sealed_for = sealed.envelopes[key_id]
    elif public_key is None:
        return Validation(outcome=HandoffOutcome.NO_AGENT_AVAILABLE, request_id="")
    else:
        request_id = uuid.uuid4().hex
        remaining = deadline - time.monotonic()
        expires_at = time.time() + min(remaining, protocol.MAX_REQUEST_AGE_SECONDS)
        kind, sealed_for = _sealed_here(public_key, key_id=key_id, tenant_id=tenant_id, request_id=request_id,
                                        expires_at=expires_at, password=password, new_password=new_password)
    groups = protocol.CAPABILITY_GROUPS in agent.record.capabilities  # an older agent would refuse the field
    request = protocol.sign_request(protocol.Request(
        request_id=request_id, tenant=tenant_id, domain=domain, username=username, key_id=key_id,
        expires_at=expires_at, sealed=sealed_for, kind=kind, groups=groups,
    ), signing_key)
    return await _hand_over(agent, request, deadline=deadline, ack_seconds=ack_seconds, groups=groups)


@sensitive_variables("password", "new_password")
def _sealed_here(public_key: rsa.RSAPublicKey, *, key_id: str, tenant_id: str, request_id: str, expires_at: float,
                 password: str | None, new_password: str | None) -> tuple[str, dict]:
    """The request kind and its envelope, sealed by the portal (the password reached it: no JavaScript, or the
    password grant)."""
    if password is None:
        kind, sealed = protocol.REQUEST_ACCOUNT_STATE, {}
    elif new_password is None:
        kind = protocol.REQUEST_PASSWORD
        sealed = protocol.seal_password(public_key=public_key, password=password, request_id=request_id,
                                        tenant=tenant_id, key_id=key_id, expires_at=expires_at)
    else:
        kind = protocol.REQUEST_PASSWORD_CHANGE
        sealed = protocol.seal_password_change(public_key=public_key, current=password, new=new_password,
                                               request_id=request_id, tenant=tenant_id, key_id=key_id,
                                               expires_at=expires_at)
    return kind, sealed


async def _hand_over(agent: ConnectedAgent, request: protocol.Request, *, deadline: float,
                     ack_seconds: float | None, groups: bool) -> Validation | None:
    request_id, kind = request.request_id, request.kind
    started = time.monotonic()
    remaining = deadline - started  # sealing and signing took some of it
    try:
        result = await hand_over(request, agent_id=agent.agent_id, channel_name=agent.channel_name,
                                 local=agent.local, ack_timeout=min(ack_seconds or remaining, remaining),
                                 result_timeout=remaining, node_protocol=agent.record.node_protocol)
    except AgentTimeout as exc:
        logger.warning("request %s to agent %s (%s): %s", request_id, agent.agent_id,
                       "here" if agent.local else f"on node {agent.node_id}", exc)
        return Validation(outcome=HandoffOutcome.AGENT_TIMEOUT, request_id=request_id, agent_id=agent.agent_id,
                          agent_ms=_ms_since(started))
    except AgentBusy:
        return None
    except AgentRequestError as exc:
        if exc.code == BUSY and not exc.acked:
            return None
        if exc.code in RETRYABLE_AGENT_ERRORS and not exc.acked:
            # A stopping agent comes back on a new connection (a restart, an upgrade): it may be asked there.
            return Validation(outcome=HandoffOutcome.NO_AGENT_AVAILABLE, request_id="",
                              detail=MOVED if exc.code == SHUTTING_DOWN else "")
        logger.warning("agent %s refused request %s: %s", agent.agent_id, request_id, exc.code)
        return Validation(outcome=HandoffOutcome.AGENT_ERROR, request_id=request_id, agent_id=agent.agent_id,
                          agent_ms=_ms_since(started), detail=exc.code)
    except AgentUnavailable as exc:
        logger.info("agent %s unavailable for %s (%s); trying the next one", agent.agent_id, request_id, exc)
        # Gone before its ack (its node left, or the connection closed): the agent itself may take it once back.
        return Validation(outcome=HandoffOutcome.NO_AGENT_AVAILABLE, request_id="",
                          detail=MOVED if isinstance(exc, AgentDisconnected)
                          else LAYER_AWAY if isinstance(exc, LayerUnavailable) else "")
    return _validation_from(result, request_id=request_id, agent=agent, agent_ms=_ms_since(started), kind=kind,
                            groups_asked=groups)


def _validation_from(result: protocol.Result, *, request_id: str, agent: ConnectedAgent, agent_ms: float,
                     kind: str = protocol.REQUEST_PASSWORD, groups_asked: bool = False) -> Validation:
    # Only directory answers may come from an agent, and only those that answer this kind of request (a
    # change is PASSWORD_CHANGED, never SUCCESS): anything else it says (its own agent_error or agent_timeout
    # included) is an agent error.
    try:
        answer: protocol.Outcome | None = protocol.Outcome(result.outcome)
    except ValueError:
        answer = None
    outcome = answer if answer is not None and answer.answers(kind) else HandoffOutcome.AGENT_ERROR
    signed_in = outcome in (protocol.Outcome.SUCCESS, protocol.Outcome.PASSWORD_CHANGED)
    return Validation(outcome=outcome, request_id=request_id, ad_subcode=result.ad_subcode[:16],
                      agent_id=agent.agent_id, agent_ms=agent_ms,
                      user=result.user if signed_in else {}, detail=result.detail[:200],
                      domains=tuple(agent.record.domains), groups_asked=groups_asked,
                      groups=([dict(g) for g in result.groups]
                              if signed_in and groups_asked and result.groups is not None else None),
                      groups_truncated=signed_in and groups_asked and result.groups_truncated,
                      agent_own_ms=result.latency_ms or None)


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)
