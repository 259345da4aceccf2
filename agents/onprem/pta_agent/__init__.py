"""The on-premises Authentication Agent (`pta-agent`). No Django here: it imports only pta_protocol."""

AGENT_VERSION = "0.1.0"
