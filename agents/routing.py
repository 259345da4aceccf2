from django.urls import path

from agents import protocol

websocket_urlpatterns: list = [
    # AgentConsumer is added by the connection work.
]
_ = (path, protocol)
