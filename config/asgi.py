import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_http = get_asgi_application()  # sets Django up before the consumers are imported

from agents.routing import websocket_urlpatterns  # noqa: E402

# No AllowedHostsOriginValidator on the agent route: agents send no Origin; they prove their key instead.
application = ProtocolTypeRouter({
    "http": django_http,
    "websocket": URLRouter(websocket_urlpatterns),
})
