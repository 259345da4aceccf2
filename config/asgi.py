import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

# Static files are served here, not by a middleware: a sync middleware (WhiteNoise's) would move every
# request, the password POST included, into a thread and back.
django_http = ASGIStaticFilesHandler(get_asgi_application())  # sets Django up before consumers are imported

from django.conf import settings  # noqa: E402

from agents.routing import agent_websocket_application  # noqa: E402
from config.drain import DrainAware, drain_install  # noqa: E402
from config.proxy import TrustedProxyHeaders, scope_client_address  # noqa: E402
from health.timer import embedded_timer_start  # noqa: E402
from signin.consumers import SignInRouter  # noqa: E402
from signin.timing import install as timing_install  # noqa: E402
from tenant.routing import routes_start  # noqa: E402

routes_start()  # this process remembers domain → tenant, and forgets on any change (tenant/routing.py)

# No AllowedHostsOriginValidator on the agent route: agents send no Origin; they prove their key instead.
# X-Forwarded-* reach the portal from PTA_TRUSTED_PROXIES only: stripped from every other peer, first.
# SIGTERM lets the requests in flight finish and sends new agents on: DrainAware counts them (config/drain.py).
application = DrainAware(TrustedProxyHeaders(ProtocolTypeRouter({
    # The sign-in's pages, the hot path, go to their consumers (signin.consumers.PAGES); everything else to Django.
    "http": SignInRouter(django_http),
    # The agent socket: at most PTA_AGENT_OPENINGS_MAX connections opening at once (agents/routing.py).
    "websocket": agent_websocket_application(address=scope_client_address),
}), trusted=settings.PTA_TRUSTED_PROXIES))

drain_install()  # SIGTERM: stop taking connections, let the agents move and the requests finish, then exit

# The embedded profile has no Celery worker nor beat: its periodic work (alerts included) runs in this process.
embedded_timer_start()

# What start-up built (Django, the models, the apps, Twisted: most of the heap) lives as long as the process: once
# its garbage is collected, it is moved out of the collector's sight, so full collections no longer walk it on
# every sign-in's garbage (templates and URL patterns, compiled on first use, stay in sight). bench/ measured
# 10-25 % less portal CPU per whole sign-in (docs/benchmarks.md).
gc.collect()
gc.freeze()
timing_install()  # PTA_SERVER_TIMING (the benchmark's): count the collector's pauses
