import pta_protocol as protocol
from django.urls import path

from agents.consumers import AgentConsumer

websocket_urlpatterns: list = [
    # protocol.WEBSOCKET_PATH is "/agent/ws/"; URLRouter matches without the leading slash. Channels routes ASGI
    # applications with Django's path(), as its documentation does; django-stubs' path() declares views only.
    path(protocol.WEBSOCKET_PATH.lstrip("/"), AgentConsumer.as_asgi()),  # type: ignore[arg-type]
]
