from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pta_protocol as protocol
from channels.routing import URLRouter
from django.urls import path

from agents.connections import OPENING_SCOPE_KEY, close_at_opening, openings
from agents.consumers import AgentConsumer

logger = logging.getLogger(__name__)

websocket_urlpatterns: list = [
    # protocol.WEBSOCKET_PATH is "/agent/ws/"; URLRouter matches without the leading slash. Channels routes ASGI
    # applications with Django's path(), as its documentation does; django-stubs' path() declares views only.
    path(protocol.WEBSOCKET_PATH.lstrip("/"), AgentConsumer.as_asgi()),  # type: ignore[arg-type]
]


class AgentOpenings:
    """The agent socket's door (agents.connections.OpeningAdmission): a connection beyond the openings this node
    takes at once, in all or from its address, is closed with TRY_LATER before Channels makes anything for it.
    ``address`` reads the client's address from the scope (config/proxy.py: the forwarded one from a trusted
    proxy)."""

    def __init__(self, app: Any, *, address: Callable[[dict], str]) -> None:
        self.app = app
        self.address = address

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        opening = openings.begin(self.address(scope))
        if opening is None:
            if openings.refused % 100 == 1:
                logger.warning("agent openings: %d at once, the most this node takes; %d told to try later so far",
                               openings.in_progress, openings.refused)
            await close_at_opening(receive, send, protocol.CloseCode.TRY_LATER)
            return
        try:
            await self.app({**scope, OPENING_SCOPE_KEY: opening}, receive, send)
        finally:
            opening.end()


def agent_websocket_application(*, address: Callable[[dict], str]) -> AgentOpenings:
    """The ASGI application of the agent socket (config/asgi.py)."""
    return AgentOpenings(URLRouter(websocket_urlpatterns), address=address)
