"""The typed messages nodes send each other about an agent's connection (agents/handoff/messages.py)."""

import time

import pta_protocol as protocol
import pytest
from channels.consumer import get_handler_name

from agents.consumers import AgentConsumer
from agents.handoff import AgentBusy, AgentDisconnected, AgentRequestError, AgentUnavailable
from agents.handoff.messages import (
    CloseConnection,
    NodeMessageError,
    RefreshRights,
    RelayedAck,
    RelayedFailure,
    RelayedRequest,
    RelayedResult,
    reply_from_message,
)

REQUEST = protocol.Request(request_id="r-1", tenant="t", domain="alpha.example.test", username="a@alpha.example.test",
                           key_id="k", expires_at=time.time() + 30, sealed={"key": "x"}, signature="s")
RESULT = protocol.Result(request_id="r-1", outcome="success", user={"upn": "a@alpha.example.test"})
TO_A_CONNECTION = [RelayedRequest.of(REQUEST, reply_to="replies!1"), CloseConnection(code=4003), RefreshRights()]
REPLIES = [RelayedAck(request_id="r-1"), RelayedResult.of(RESULT),
           RelayedFailure(request_id="r-1", reason="error", code="expired", message="late")]


@pytest.mark.parametrize("message", TO_A_CONNECTION + REPLIES, ids=lambda m: type(m).__name__)
def test_every_kind_survives_the_channel_layer(message):
    as_sent = message.to_message()
    assert isinstance(as_sent, dict) and as_sent["type"].startswith("agent.")
    assert type(message).from_message(as_sent) == message


def test_the_frames_inside_are_the_wire_frames():
    assert RelayedRequest.of(REQUEST, reply_to="x").frame() == REQUEST
    assert RelayedResult.from_message(RelayedResult.of(RESULT).to_message()).frame() == RESULT
    with pytest.raises(protocol.ProtocolError):  # the frame is checked as the agent's would be
        RelayedRequest(request_id="r-1", request='{"type": "ack", "request_id": "r-1"}', reply_to="x").frame()
    with pytest.raises(protocol.ProtocolError):  # and it must be the request the message names
        RelayedRequest(request_id="r-2", request=protocol.encode(REQUEST), reply_to="x").frame()


@pytest.mark.parametrize("message, named", [
    ({"type": "agent.teleport", "request_id": "r-1"}, "$.type"),
    ({"type": "agent.ack", "request_id": "r-1", "agent_id": "a"}, "agent_id"),
    ({"type": "agent.ack"}, "request_id"),
    ({"type": "agent.ack", "request_id": 1}, "$.request_id"),
    ({"type": "agent.failure", "request_id": "r-1", "reason": "bored"}, "$.reason"),
    ({"request_id": "r-1"}, "type"),
    ("agent.ack", "object"),
], ids=["unknown-type", "unknown-field", "missing-field", "wrong-type", "unknown-reason", "no-type", "not-a-dict"])
def test_a_reply_that_is_not_one_is_refused_naming_the_problem(message, named):
    with pytest.raises(NodeMessageError) as refused:
        reply_from_message(message)
    assert named in str(refused.value)


def test_a_message_of_another_kind_is_refused():
    with pytest.raises(NodeMessageError):
        CloseConnection.from_message(RefreshRights().to_message())
    with pytest.raises(NodeMessageError):
        reply_from_message(RelayedRequest.of(REQUEST, reply_to="x").to_message())


def test_every_kind_sent_to_a_connection_has_its_handler():
    for message in TO_A_CONNECTION:
        assert callable(getattr(AgentConsumer, get_handler_name(message.to_message()), None)), message


@pytest.mark.parametrize("exc", [AgentRequestError("cannot_decrypt", "no"), AgentBusy("full"),
                                 AgentDisconnected("gone"), AgentUnavailable("closing")],
                         ids=lambda e: type(e).__name__)
def test_a_failure_relayed_raises_what_the_local_path_raises(exc):
    again = RelayedFailure.from_message(RelayedFailure.of("r-1", exc).to_message()).exception()
    assert type(again) is type(exc) and str(again) == str(exc)
