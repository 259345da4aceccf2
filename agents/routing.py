import pta_protocol as protocol
from django.urls import path

from agents.consumers import AgentConsumer

websocket_urlpatterns: list = [
    # protocol.WEBSOCKET_PATH is "/agent/ws/"; URLRouter matches without the leading slash.
    path(protocol.WEBSOCKET_PATH.lstrip("/"), AgentConsumer.as_asgi()),
]
