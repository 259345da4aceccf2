"""The typed messages nodes send each other about an agent's connection (agents/handoff/messages.py)."""

import json
import time

import pta_protocol as protocol
import pytest
from channels.consumer import get_handler_name

from agents.consumers import AgentConsumer
from agents.handoff import AgentBusy, AgentDisconnected, AgentRequestError, AgentUnavailable
from agents.handoff.messages import (
    NODE_PROTOCOL,
    CloseConnection,
    NodeMessageError,
    RefreshRights,
    RelayedAck,
    RelayedFailure,
    RelayedRequest,
    RelayedResult,
    reply_from_message,
    version_for,
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
    ({"type": "agent.ack"}, "request_id"),
    ({"type": "agent.ack", "request_id": 1}, "$.request_id"),
    ({"request_id": "r-1"}, "type"),
    ("agent.ack", "object"),
], ids=["unknown-type", "missing-field", "wrong-type", "no-type", "not-a-dict"])
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


# --- versions: nodes N and N+1 in one deployment ------------------------------------------------------------


def test_a_version_1_node_gets_messages_without_a_version_field():
    """Version 1 refused unknown fields: a message to a node whose presence says nothing of its version (1) carries
    only the fields version 1 knows, and the defaults are left off as before."""
    for message in (RelayedRequest.of(REQUEST, reply_to="x", version=1), RelayedResult.of(RESULT, version=1),
                    RelayedFailure.of("r-1", AgentBusy("full"), version=1), RelayedAck(request_id="r-1")):
        assert "version" not in message.to_message(), message
    assert RelayedFailure(request_id="r-1", reason="error").to_message() == {
        "type": "agent.failure", "request_id": "r-1", "reason": "error"}


def test_a_version_2_node_is_told_the_senders_version_and_a_newer_one_is_spoken_to_in_ours():
    assert RelayedRequest.of(REQUEST, reply_to="x", version=2).to_message()["version"] == NODE_PROTOCOL
    assert RelayedRequest.of(REQUEST, reply_to="x", version=NODE_PROTOCOL + 5).version == NODE_PROTOCOL
    assert version_for(0) == 1


def test_fields_and_reasons_of_a_newer_node_are_ignored_not_refused():
    reply = reply_from_message({"type": "agent.ack", "request_id": "r-1", "version": 3, "agent_id": "a",
                                "hint": {"nested": [1]}})
    assert reply == RelayedAck(request_id="r-1", version=3)
    failure = reply_from_message({"type": "agent.failure", "request_id": "r-1", "reason": "migrating", "version": 3})
    assert isinstance(failure, RelayedFailure)
    refusal = failure.exception()
    assert type(refusal) is AgentUnavailable  # no bind happened: the asker turns to another agent
    order = CloseConnection.from_message({"type": "agent.close", "code": 4003, "grace": 5})
    assert order.code == 4003


def test_a_request_relayed_by_a_newer_node_keeps_the_fields_this_one_does_not_know():
    """The frame inside passes through this node unchanged: the agent checks the portal's signature over every
    field it got, so a field dropped on the way would make a valid request look forged."""
    text = protocol.encode(REQUEST)[:-1] + ',"priority":"high"}'
    relayed = RelayedRequest(request_id="r-1", request=text, reply_to="x", version=3)
    frame = relayed.frame()
    assert frame.extensions == {"priority": "high"}
    assert json.loads(protocol.encode(frame)) == json.loads(text)
