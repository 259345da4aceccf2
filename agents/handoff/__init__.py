"""The hand-off: a sealed, signed request given to one agent, and the wait for its ack, then its result.

The agent may be connected to this process (the local path: its consumer sends the frame) or to another node
(the relayed path: the request goes over the channel layer to that node, which sends it and forwards the ack and
the result back to this process's reply channel). Both paths end in the same ``PendingRequest`` and the same wait
(``pending.py``), so they fail in the same ways:

- before the ack (AgentUnavailable and its kinds: busy, disconnected, no ack in time): the agent never bound,
  so the caller may give the sign-in to another agent;
- after the ack: a disconnect or a missing result is AgentTimeout (the bind may have happened: a second agent
  would count the guess twice against AD's lockout);
- an error frame from the agent is AgentRequestError with the agent's code (the caller knows which codes mean
  "no bind happened, try the next one").

``relay.py`` holds both paths, ``messages.py`` the typed messages nodes send each other about an agent's
connection. Which agent to ask, the deadline, failover and the line for a slot are the caller's policy
(``agents.services.dispatch``). This module holds what the hand-off itself decides: its outcomes and errors.
"""

from __future__ import annotations

import enum

import pta_protocol as protocol


class HandoffOutcome(enum.StrEnum):
    """How a sign-in ends when no directory answer came back through the hand-off."""

    NO_AGENT_AVAILABLE = "no_agent_available"  # none connected, or none could take it before the deadline
    # Acked, then no result by the deadline. An agent also answers it when no DC answered within its own deadline.
    AGENT_TIMEOUT = protocol.Outcome.AGENT_TIMEOUT.value
    # The agent refused the request, or answered something that is not a directory answer to that request.
    AGENT_ERROR = protocol.Outcome.AGENT_ERROR.value
    TOO_MANY_SIGNINS = "too_many_signins"  # the tenant's line for an agent slot is full


class AgentUnavailable(Exception):
    """The agent did not take the request (no bind happened): another agent may be tried."""


class AgentBusy(AgentUnavailable):
    """The agent has as many requests in flight as its capacity: wait for a slot, or try another agent."""


class AgentDisconnected(AgentUnavailable):
    """The connection closed while the request was pending. Before the ack it is safe to try another agent."""


class LayerUnavailable(AgentUnavailable):
    """The request could not be relayed: the channel layer (Redis) failed, not the agent. Nothing was sent."""


class AgentAckTimeout(AgentUnavailable):
    """No ack within the ack deadline: no bind happened, so another agent may be tried."""


class AgentTimeout(Exception):
    """Acked, but no result by the deadline, or a disconnect after the ack (agent_timeout; never retried)."""


class AgentRequestError(Exception):
    """The agent answered the request with an error frame (e.g. busy, cannot_decrypt, expired, bad_signature)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        # Set when the error came after the agent's ack: the bind may have happened, so whatever the code says,
        # no other agent may be asked.
        self.acked = False
