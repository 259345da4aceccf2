"""The on-premises Authentication Agent (`pta-agent`). No Django here: it imports only agents.protocol."""

AGENT_VERSION = "0.1.0"
