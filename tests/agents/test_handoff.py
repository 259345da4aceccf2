"""The hand-off's policy (password_validate and password_change) against fake agents, in process.

Everything is real but the agent's connection: registered agents with their keys, the tenant's signing key, the
presence registry, the line for a slot, both paths of the hand-off (a local connection, and one on "another
node" reached over the channel layer with the typed messages). A FakeAgent stands where the consumer of a live
connection would be: it opens each request's envelope with the agent's own key and settles it as its script
says. No socket, no Daphne, no DC.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pta_protocol as protocol
import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connections

from agents.connections import in_background, local_agents, node_id
from agents.handoff import AgentBusy, AgentDisconnected, AgentRequestError, HandoffOutcome
from agents.handoff.pending import PendingRequest
from agents.handoff.relay import serve_relayed
from agents.presence import PresenceRecord, presence_close, presence_registry
from agents.queue import slot_queues
from agents.selectors import SAMPLE, agents_sampled
from agents.services.dispatch import password_change, password_validate
from agents.services.sealing import AgentsHint, sealing_ticket_issue, ticket_agents, ticket_for_page

pytestmark = pytest.mark.django_db(transaction=True)
DOMAIN = "alpha.example.test"
PASSWORD = "c0rrect h\u00f6rse"

Script = Callable[["FakeAgent", PendingRequest], Coroutine[Any, Any, None]]


class FakeAgent:
    """An agent's live connection as the hand-off sees it (agents.connections.LocalConnection)."""

    def __init__(self, agent, key, script: Script, *, capacity: int, last_beat: float) -> None:
        self.agent_id = str(agent.pk)
        self.tenant_id = str(agent.tenant_id)
        self.key_id = agent.key_fingerprint
        self.key = key
        self.script = script
        self.capacity = capacity
        self.last_beat = self.last_seen_written = last_beat
        self.presence_published = True
        self.closing = False
        self.node = node_id()
        self.channel_name = f"fake.{self.agent_id}"
        self.domains: tuple[str, ...] = (DOMAIN,)
        self.pending: dict[str, PendingRequest] = {}
        self.asked: list[str] = []  # the password of each request it was given, as it opened it

    @property
    def in_flight(self) -> int:
        return len(self.pending)

    def presence_record(self) -> PresenceRecord:
        return PresenceRecord(agent_id=self.agent_id, tenant_id=self.tenant_id, domains=self.domains,
                              node_id=self.node, channel_name=self.channel_name, key_id=self.key_id,
                              in_flight=self.in_flight, capacity=self.capacity, last_beat=self.last_beat,
                              capabilities=(protocol.CAPABILITY_PASSWORD_CHANGE,))

    async def send_request(self, request: protocol.Request) -> PendingRequest:
        if self.closing:
            raise AgentDisconnected("closed")
        if self.in_flight >= self.capacity:
            raise AgentBusy("full")
        if request.kind == protocol.REQUEST_PASSWORD_CHANGE:
            self.asked.append(protocol.open_password_change(private_key=self.key, request=request)[0])
        else:
            self.asked.append(protocol.open_envelope(private_key=self.key, request=request))
        pending = PendingRequest.start(request.request_id)
        self.pending[request.request_id] = pending
        pending.result.add_done_callback(lambda _: self._release(request.request_id))
        in_background(self.script(self, pending))
        return pending

    def _release(self, request_id: str) -> None:
        if self.pending.pop(request_id, None) is not None:
            slot_queues.slot_freed(self.tenant_id)  # as the consumer does: the head of the line may come

    async def close_for(self, code: protocol.CloseCode, reason: str, *, drain_seconds: float = 0.0) -> None:
        """The connection ends: gone from presence, and what it had not answered fails as a disconnect."""
        self.closing = True
        local_agents.discard(self)
        await presence_registry().withdraw(agent_id=self.agent_id, tenant_id=self.tenant_id,
                                           channel_name=self.channel_name)
        for pending in list(self.pending.values()):
            pending.fail(AgentDisconnected(reason))

    async def apply_current(self, current: protocol.CloseCode | tuple[str, ...]) -> None:
        if isinstance(current, protocol.CloseCode):
            await self.close_for(current, "refused")
        else:
            self.domains = current


def answers(outcome: str, **fields) -> Script:
    async def script(agent: FakeAgent, pending: PendingRequest) -> None:
        pending.resolve(protocol.Result(request_id=pending.request_id, outcome=outcome, **fields))
    return script


def refuses(code: str) -> Script:
    async def script(agent: FakeAgent, pending: PendingRequest) -> None:
        pending.fail(AgentRequestError(code, "refused before the ack"))
    return script


def refuses_after_the_ack(code: str) -> Script:
    async def script(agent: FakeAgent, pending: PendingRequest) -> None:
        pending.ack()
        pending.fail(AgentRequestError(code, "refused after the ack"))
    return script


async def never_acks(agent: FakeAgent, pending: PendingRequest) -> None:
    """Took the request and said nothing."""


async def acks_only(agent: FakeAgent, pending: PendingRequest) -> None:
    pending.ack()


async def disconnects_before_the_ack(agent: FakeAgent, pending: PendingRequest) -> None:
    await agent.close_for(protocol.CloseCode.PROTOCOL_ERROR, "gone before the ack")


async def disconnects_after_the_ack(agent: FakeAgent, pending: PendingRequest) -> None:
    pending.ack()
    await agent.close_for(protocol.CloseCode.PROTOCOL_ERROR, "gone after the ack")


def held(until: asyncio.Event) -> Script:
    """Acks, keeps the slot until ``until`` is set, then answers success."""
    async def script(agent: FakeAgent, pending: PendingRequest) -> None:
        pending.ack()
        await until.wait()
        pending.resolve(protocol.Result(request_id=pending.request_id, outcome="success"))
    return script


def in_turn(*scripts: Script) -> Script:
    """Each request gets the next script."""
    remaining = list(scripts)

    async def script(agent: FakeAgent, pending: PendingRequest) -> None:
        await remaining.pop(0)(agent, pending)
    return script


@pytest.fixture(autouse=True)
def short_deadlines(settings):
    settings.PTA_SIGNIN_DEADLINE_SECONDS = 3
    settings.PTA_AGENT_ACK_SECONDS = 0.5  # an ack that comes, comes at once; this bounds the ones that never do


@pytest.fixture
def registered(tenant_a, agent_factory):
    """Two agents of tenant A (real keys and certificates from its CA) serving alpha.example.test."""
    return [agent_factory(tenant_a, name=f"agent-{n}") for n in (1, 2)]


@pytest.fixture
async def connect(registered):
    """connect(n, script, relayed=False, capacity=4): agent n's fake connection, here or on another node (the
    hand-off reaches it over the channel layer). Agents are asked in the order they were connected, all else
    equal (most recent heartbeat first)."""
    fakes: list[FakeAgent] = []
    listeners: list[asyncio.Task] = []

    async def make(n: int, script: Script, *, relayed: bool = False, capacity: int = 4) -> FakeAgent:
        agent, key = registered[n]
        fake = FakeAgent(agent, key, script, capacity=capacity, last_beat=time.time() - len(fakes))
        if relayed:
            layer = get_channel_layer()
            assert layer is not None
            fake.node, fake.channel_name = "another-node", await layer.new_channel()

            async def serve() -> None:
                while True:
                    await serve_relayed(fake, await layer.receive(fake.channel_name))

            listeners.append(asyncio.create_task(serve()))
        else:
            local_agents.add(fake)
        await presence_registry().publish([fake.presence_record()])
        fakes.append(fake)
        return fake

    yield make
    for fake in fakes:
        await fake.close_for(protocol.CloseCode.PROTOCOL_ERROR, "test over")
    for listener in listeners:
        listener.cancel()
    await database_sync_to_async(connections.close_all)()
    await presence_close()


def validate(tenant, password: str = PASSWORD):
    return password_validate(tenant_id=str(tenant.pk), domain=DOMAIN, username=f"alice@{DOMAIN}", password=password)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


PLACES = pytest.mark.parametrize("relayed", [False, True], ids=["local", "relayed"])


@PLACES
async def test_the_agents_answer_is_the_validation(connect, tenant_a, registered, relayed):
    user = {"upn": f"alice@{DOMAIN}", "object_guid": "g-1"}
    agent = await connect(0, answers("success", user=user), relayed=relayed)
    validation = await validate(tenant_a)
    assert validation.outcome is protocol.Outcome.SUCCESS and validation.user == user
    assert validation.agent_id == agent.agent_id and validation.domains == (DOMAIN,)
    assert agent.asked == [PASSWORD]  # sealed for this agent's key, opened by it only
    assert agent.in_flight == 0


async def test_no_agent_connected_is_no_agent_available(connect, tenant_a):
    assert (await validate(tenant_a)).outcome is HandoffOutcome.NO_AGENT_AVAILABLE


@PLACES
@pytest.mark.parametrize("script", [never_acks, disconnects_before_the_ack], ids=["no-ack", "disconnect"])
async def test_before_the_ack_the_next_agent_is_asked(connect, tenant_a, relayed, script):
    first = await connect(0, script, relayed=relayed)
    second = await connect(1, answers("success"), relayed=relayed)
    validation = await validate(tenant_a)
    assert validation.outcome is protocol.Outcome.SUCCESS and validation.agent_id == second.agent_id
    assert first.asked == second.asked == [PASSWORD]


@PLACES
async def test_after_the_ack_a_disconnect_is_agent_timeout_and_no_second_agent(connect, tenant_a, relayed):
    first = await connect(0, disconnects_after_the_ack, relayed=relayed)
    second = await connect(1, answers("success"), relayed=relayed)
    validation = await validate(tenant_a)
    assert validation.outcome is HandoffOutcome.AGENT_TIMEOUT and validation.agent_id == first.agent_id
    assert first.asked == [PASSWORD] and second.asked == []  # a second bind would count twice in AD


@PLACES
@pytest.mark.parametrize("script", [acks_only, never_acks], ids=["acked", "never-acked"])
async def test_a_request_without_a_result_ends_at_the_deadline_with_agent_timeout(connect, tenant_a, settings,
                                                                                 relayed, script):
    settings.PTA_SIGNIN_DEADLINE_SECONDS = 0.5
    agent = await connect(0, script, relayed=relayed)
    validation = await validate(tenant_a)
    assert validation.outcome is HandoffOutcome.AGENT_TIMEOUT
    assert agent.asked == [PASSWORD]
    await until(lambda: agent.in_flight == 0)  # given up: the agent's slot is free again


@PLACES
@pytest.mark.parametrize("code", ["unavailable", "shutting_down", "unsupported"])
async def test_a_retryable_error_goes_to_the_next_agent(connect, tenant_a, relayed, code):
    first = await connect(0, refuses(code), relayed=relayed)
    second = await connect(1, answers("invalid_credentials", ad_subcode="52e"), relayed=relayed)
    validation = await validate(tenant_a)
    assert validation.outcome is protocol.Outcome.INVALID_CREDENTIALS and validation.ad_subcode == "52e"
    assert validation.agent_id == second.agent_id and first.asked == [PASSWORD]


@PLACES
@pytest.mark.parametrize("code", ["bad_signature", "cannot_decrypt", "expired"])
async def test_an_error_that_is_not_retryable_is_agent_error_and_no_second_agent(connect, tenant_a, relayed, code):
    first = await connect(0, refuses(code), relayed=relayed)
    second = await connect(1, answers("success"), relayed=relayed)
    validation = await validate(tenant_a)
    assert validation.outcome is HandoffOutcome.AGENT_ERROR and validation.detail == code
    assert validation.agent_id == first.agent_id and second.asked == []


@PLACES
@pytest.mark.parametrize("code", ["unavailable", "busy", "bad_signature"])
async def test_after_the_ack_any_error_is_agent_error_and_no_second_agent(connect, tenant_a, relayed, code):
    first = await connect(0, refuses_after_the_ack(code), relayed=relayed)
    second = await connect(1, answers("success"), relayed=relayed)
    validation = await validate(tenant_a)
    assert validation.outcome is HandoffOutcome.AGENT_ERROR and validation.detail == code
    assert first.asked == [PASSWORD] and second.asked == []  # a second bind would count twice in AD


async def test_directory_unavailable_goes_to_the_next_agent_but_a_change_is_never_sent_twice(connect, tenant_a):
    first = await connect(0, answers("directory_unavailable"))
    second = await connect(1, answers("success"))
    assert (await validate(tenant_a)).agent_id == second.agent_id

    first.script, second.script = answers("directory_unavailable"), answers("password_changed")
    changed = await password_change(tenant_id=str(tenant_a.pk), domain=DOMAIN, username=f"alice@{DOMAIN}",
                                    current_password=PASSWORD, new_password="n3w pa55")
    assert changed.outcome is protocol.Outcome.DIRECTORY_UNAVAILABLE and changed.agent_id == first.agent_id
    assert first.asked == [PASSWORD, PASSWORD] and second.asked == [PASSWORD]


async def test_an_answer_that_does_not_answer_the_request_is_agent_error(connect, tenant_a):
    await connect(0, in_turn(answers("password_changed"), answers("agent_timeout"), answers("mfa_required")))
    for _ in range(3):  # a change outcome to a sign-in, the agent's own failure, a portal outcome
        assert (await validate(tenant_a)).outcome is HandoffOutcome.AGENT_ERROR


async def test_a_full_agent_is_passed_over_for_a_free_one(connect, tenant_a):
    release = asyncio.Event()
    busy = await connect(0, held(release), capacity=1)
    free = await connect(1, answers("success"))
    first = asyncio.create_task(validate(tenant_a))
    await until(lambda: busy.in_flight == 1)
    validation = await validate(tenant_a)
    assert validation.agent_id == free.agent_id and validation.queued_ms == 0
    release.set()
    assert (await first).agent_id == busy.agent_id and busy.asked == [PASSWORD]


async def test_an_agent_that_answers_busy_is_asked_again_in_turn(connect, tenant_a):
    agent = await connect(0, in_turn(refuses("busy"), answers("success")))
    validation = await validate(tenant_a)
    assert validation.outcome is protocol.Outcome.SUCCESS and agent.asked == [PASSWORD, PASSWORD]


async def test_an_agent_that_answers_busy_is_passed_over_for_a_free_one(connect, tenant_a):
    # Its own count (or its shutdown, for an older agent) disagrees with its presence: ask the other one.
    busy = await connect(0, refuses("busy"))
    free = await connect(1, answers("success"))
    validation = await validate(tenant_a)
    assert validation.outcome is protocol.Outcome.SUCCESS and validation.agent_id == free.agent_id
    assert busy.asked == free.asked == [PASSWORD]


async def test_a_presence_registry_that_stops_answering_ends_the_sign_in_by_its_deadline(redis_server, connect,
                                                                                       tenant_a, settings):
    # redis_server comes first: it outlives the fake agents, which leave the registry at teardown.
    settings.PTA_REDIS_URL, settings.PTA_REDIS_PREFIX = redis_server.url, "pta-test"
    settings.PTA_SIGNIN_DEADLINE_SECONDS = 0.5  # well within Redis' own socket timeout and retries
    await connect(0, answers("success"))
    redis_server.proc.send_signal(signal.SIGSTOP)  # connected, but nothing answers
    try:
        validation = await asyncio.wait_for(validate(tenant_a), 30)  # only a hang lasts that long
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert validation.outcome is HandoffOutcome.NO_AGENT_AVAILABLE  # an answer, not an exception from Redis


async def test_when_every_slot_is_taken_sign_ins_wait_in_line_and_a_full_line_is_too_many_signins(
        connect, tenant_a, settings):
    settings.PTA_SIGNIN_QUEUE_LENGTH = 1
    release = asyncio.Event()
    agent = await connect(0, held(release), capacity=1)
    first = asyncio.create_task(validate(tenant_a))
    await until(lambda: agent.in_flight == 1)
    second = asyncio.create_task(validate(tenant_a, "an0ther"))
    await until(lambda: slot_queues.length(str(tenant_a.pk)) == 1)
    assert (await validate(tenant_a)).outcome is HandoffOutcome.TOO_MANY_SIGNINS  # the line is full
    release.set()
    done = await asyncio.gather(first, second)
    assert [v.outcome for v in done] == [protocol.Outcome.SUCCESS] * 2
    assert done[0].queued_ms == 0 and done[1].queued_ms > 0
    assert agent.asked == [PASSWORD, "an0ther"] and slot_queues.length(str(tenant_a.pk)) == 0


# --- a node that leaves, agents that come back ---------------------------------------------------------------


async def test_a_request_relayed_to_a_node_that_left_follows_the_agent_to_its_new_node(connect, tenant_a):
    """The only agent was on a node that left: nothing there will ever ack. Its presence names its new connection
    (it reconnected elsewhere) a moment later, and the sign-in goes there, long before the deadline; it used to
    wait for an ack until the deadline (the only agent gets it all) and end agent_timeout."""
    gone = await connect(0, never_acks, relayed=True)

    async def reconnects_elsewhere() -> None:
        await asyncio.sleep(0.3)
        await connect(0, answers("success"))  # the same agent, on this node now: a newer presence record

    moving = asyncio.create_task(reconnects_elsewhere())
    started = time.monotonic()
    validation = await validate(tenant_a)
    await moving
    assert validation.outcome is protocol.Outcome.SUCCESS and validation.agent_id == gone.agent_id
    assert time.monotonic() - started < 1.5  # the deadline is 3 s
    assert gone.asked == [PASSWORD]  # once: its node never acked, so no bind happened there


async def test_a_sign_in_that_finds_its_agents_just_gone_waits_for_them_to_be_back(connect, tenant_a, settings):
    """As after a Redis restart (every record gone until the nodes republish) or while agents restart: the
    tenant's agents were present moments ago, so the sign-in waits for them within PTA_PRESENCE_WAIT_SECONDS
    instead of answering no_agent_available at once."""
    first = await connect(0, answers("success"))
    assert (await validate(tenant_a)).outcome is protocol.Outcome.SUCCESS
    await presence_registry().withdraw(agent_id=first.agent_id, tenant_id=first.tenant_id)  # Redis emptied

    async def republished() -> None:
        await asyncio.sleep(0.4)
        await presence_registry().publish([first.presence_record()])

    back = asyncio.create_task(republished())
    validation = await validate(tenant_a)
    await back
    assert validation.outcome is protocol.Outcome.SUCCESS and first.asked == [PASSWORD, PASSWORD]
    settings.PTA_PRESENCE_WAIT_SECONDS = 0.3
    await presence_registry().withdraw(agent_id=first.agent_id, tenant_id=first.tenant_id)
    started = time.monotonic()
    assert (await validate(tenant_a)).outcome is HandoffOutcome.NO_AGENT_AVAILABLE  # none came back in time
    assert 0.3 <= time.monotonic() - started < 1.0


def phantoms(tenant, count: int, *, domain: str = DOMAIN, full: bool = True) -> list[PresenceRecord]:
    """Presence records of agents that are never asked (full, or serving another domain): more of them than a
    sign-in's sample (agents.selectors.SAMPLE), so a sample is likely to hold none that could take it."""
    return [PresenceRecord(agent_id=f"phantom-{n}", tenant_id=str(tenant.pk), domains=(domain,), node_id="elsewhere",
                           channel_name=f"phantom-{n}", key_id="none", in_flight=1 if full else 0, capacity=1,
                           last_beat=time.time()) for n in range(count)]


@pytest.mark.parametrize("crowd", ["full", "another-domain"])
async def test_a_tenant_with_many_agents_still_finds_its_one_free_agent_for_the_domain(connect, tenant_a, crowd):
    """A sign-in reads a bounded sample of its tenant's agents (not every record per sign-in); when the sample holds
    none it may ask (all full, or serving another domain), it reads them all: the one that can take it is found."""
    crowd_records = phantoms(tenant_a, 6 * SAMPLE, domain=DOMAIN if crowd == "full" else "other.example.test",
                             full=crowd == "full")
    await presence_registry().publish(crowd_records)
    free = await connect(0, answers("success"))
    for _ in range(3):  # each draw differs; each must find it
        validation = await validate(tenant_a)
        assert validation.outcome is protocol.Outcome.SUCCESS and validation.agent_id == free.agent_id
    sampled, complete = await agents_sampled(tenant_id=str(tenant_a.pk), domain=DOMAIN)
    assert not complete and len(sampled) <= SAMPLE  # bounded, however many the tenant has


@PLACES
async def test_a_password_posted_as_typed_goes_first_to_the_agents_its_ticket_named(connect, tenant_a, relayed):
    """A sign-in whose page had a ticket but posted the password (no JavaScript) reads the ticket's agents by id
    (one read, not a new draw of the tenant's): the one it named is asked, though another is as free; with a
    ticket naming every agent, the only one keeps the whole deadline (no ack timeout), as with a whole sample."""
    first = await connect(0, answers("success"), relayed=relayed)
    second = await connect(1, answers("success"), relayed=relayed)
    for named in (second, first, second):
        validation = await password_validate(tenant_id=str(tenant_a.pk), domain=DOMAIN, username=f"alice@{DOMAIN}",
                                             password=PASSWORD, hint=AgentsHint(agent_ids=(named.agent_id,)))
        assert validation.outcome is protocol.Outcome.SUCCESS and validation.agent_id == named.agent_id
    await first.close_for(protocol.CloseCode.PROTOCOL_ERROR, "gone since the ticket")
    validation = await password_validate(tenant_id=str(tenant_a.pk), domain=DOMAIN, username=f"alice@{DOMAIN}",
                                         password=PASSWORD, hint=AgentsHint(agent_ids=(first.agent_id,)))
    assert validation.agent_id == second.agent_id  # the ticket's agent left: the tenant's are read as before


async def test_a_ticket_names_whether_its_agents_were_every_agent_of_the_domain(connect, tenant_a):
    only = await connect(0, answers("success"))
    ticket = await sealing_ticket_issue(tenant_id=str(tenant_a.pk), domain=DOMAIN)
    assert ticket is not None
    hint = ticket_agents(ticket, tenant_id=str(tenant_a.pk))
    assert hint == AgentsHint(agent_ids=(only.agent_id,), every_one=True)
    assert ticket_for_page(ticket).keys() == {"request_id", "kind", "expires_in", "candidates"}
    assert ticket_agents(ticket, tenant_id="another-tenant") is None
    assert ticket_agents(ticket, tenant_id=str(tenant_a.pk), kind=protocol.REQUEST_PASSWORD_CHANGE) is None
