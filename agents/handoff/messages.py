"""The messages nodes send each other over the channel layer about an agent's live connection.

Each kind is a msgspec Struct tagged by the channel layer's ``type``; ``to_message()`` gives the dict the layer
carries and ``from_message()`` reads one back, refusing an unknown type, a missing field and a field of the wrong
type with NodeMessageError, and ignoring a field it does not know (a newer node's). A frame for the agent (or from
it) travels as its encoded wire text, so the node that holds the connection checks it with the protocol's own
decoder.

Versions: a message carries ``version``, the sender's NODE_PROTOCOL, but only to a node that reads it (version 2
on): version 1 refused unknown fields, so ``version`` 1 is left off the wire. The asking node learns what the
agent's node reads from its presence record (``node_protocol``); the serving node answers in the asker's version.
A connection answers a kind it does not know, when it names a ``reply_to``, with RelayedFailure ``unsupported``
(AgentConsumer.dispatch): the asker turns to another agent, and the agent's connection stays.

    to the agent's connection (its channel, or its group on every node):
        agent.request   a request from another node's hand-off, and where to answer   RelayedRequest
        agent.close     close with this code (revoked, deleted, expired)              CloseConnection
        agent.refresh   the agent's rights changed: read them again                   RefreshRights
    back to the asking node's reply channel:
        agent.ack       the agent acked                                                RelayedAck
        agent.result    the agent's result frame                                       RelayedResult
        agent.failure   the request failed (an error frame, busy, gone, disconnected)  RelayedFailure

A connection's handler for a kind is named after its type (``agent.request`` → ``AgentConsumer.agent_request``).
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, Self

import msgspec
import pta_protocol as protocol

from agents.handoff import AgentBusy, AgentDisconnected, AgentRequestError, AgentUnavailable


class NodeMessageError(ValueError):
    """A channel-layer message that is not the kind expected, or not well formed."""


def agent_group(agent_id: str | uuid.UUID) -> str:
    """The group an agent's live connection joins, on whichever node: orders for the agent reach it there."""
    return f"agent.{uuid.UUID(str(agent_id)).hex}"


# 1: the first (unknown fields refused, no version). 2: unknown fields ignored, version carried, unknown kinds
# answered.
NODE_PROTOCOL = 2


def version_for(peer: int) -> int:
    """The version to speak to a node that reads ``peer``."""
    return max(1, min(NODE_PROTOCOL, peer))


class NodeMessage(msgspec.Struct, frozen=True, tag_field="type", omit_defaults=True, kw_only=True):
    # Omitted at 1 (and every other field at its default): a version-1 node gets the message it knows.
    version: int = 1

    def to_message(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)

    @classmethod
    def from_message(cls, message: object) -> Self:
        return _convert(message, cls)


def _convert(message: object, kind: Any) -> Any:
    try:
        return msgspec.convert(message, kind, strict=True)
    except msgspec.ValidationError as exc:
        name = getattr(kind, "__name__", None) or " or ".join(k.__name__ for k in kind.__args__)
        raise NodeMessageError(f"not a {name} message: {exc}") from None


class RelayedRequest(NodeMessage, frozen=True, tag="agent.request"):
    request_id: str  # also outside the frame: a frame that cannot be read is still answered
    request: str  # the Request frame, encoded
    reply_to: str

    @classmethod
    def of(cls, request: protocol.Request, *, reply_to: str, version: int = NODE_PROTOCOL) -> RelayedRequest:
        return cls(request_id=request.request_id, request=protocol.encode(request), reply_to=reply_to,
                   version=version_for(version))

    def frame(self) -> protocol.Request:
        frame = protocol.decode(self.request)
        if not isinstance(frame, protocol.Request) or frame.request_id != self.request_id:
            raise protocol.ProtocolError("malformed", "The relayed frame is not this request.", self.request_id)
        return frame


class CloseConnection(NodeMessage, frozen=True, tag="agent.close"):
    code: int  # protocol.CloseCode


class RefreshRights(NodeMessage, frozen=True, tag="agent.refresh"):
    pass


class RelayedAck(NodeMessage, frozen=True, tag="agent.ack"):
    request_id: str


class RelayedResult(NodeMessage, frozen=True, tag="agent.result"):
    request_id: str
    result: str  # the Result frame, encoded

    @classmethod
    def of(cls, result: protocol.Result, *, version: int = NODE_PROTOCOL) -> RelayedResult:
        return cls(request_id=result.request_id, result=protocol.encode(result), version=version_for(version))

    def frame(self) -> protocol.Result:
        frame = protocol.decode(self.result)
        if not isinstance(frame, protocol.Result) or frame.request_id != self.request_id:
            raise protocol.ProtocolError("malformed", "The relayed frame is not this request's result.",
                                         self.request_id)
        return frame


class RelayedFailure(NodeMessage, frozen=True, tag="agent.failure"):
    request_id: str
    # error: the agent's error frame (code, message). busy, disconnected, unavailable: the connection's refusal.
    # A reason this version does not know (a newer node's) reads as unavailable: no bind happened.
    reason: str
    code: str = ""
    message: str = ""

    @classmethod
    def of(cls, request_id: str, exc: Exception, *, version: int = NODE_PROTOCOL) -> RelayedFailure:
        if isinstance(exc, AgentRequestError):
            return cls(request_id=request_id, reason="error", code=exc.code, message=exc.message[:500],
                       version=version_for(version))
        reason: Literal["busy", "disconnected", "unavailable"] = (
            "busy" if isinstance(exc, AgentBusy) else "disconnected" if isinstance(exc, AgentDisconnected)
            else "unavailable")
        return cls(request_id=request_id, reason=reason, message=str(exc)[:200], version=version_for(version))

    def exception(self) -> Exception:
        """The same exception the local path raises for this failure."""
        if self.reason == "error":
            return AgentRequestError(self.code, self.message)
        kind = {"busy": AgentBusy, "disconnected": AgentDisconnected}.get(self.reason, AgentUnavailable)
        return kind(self.message)


Reply = RelayedAck | RelayedResult | RelayedFailure


def reply_from_message(message: object) -> Reply:
    """What a node heard back about a request it relayed."""
    return _convert(message, Reply)
