"""The sign-in's pages, served without Django's per-middleware thread hops.

Under ASGI every MiddlewareMixin middleware runs its process_request and process_response in a thread of
its own, and the handler sends its request signals from threads too: about sixteen hops for one request,
all through the one thread-sensitive executor. These consumers run the same middleware hooks, Django's own
(sessions, CSRF, authentication, security headers), and the same views (signin.views), in the sign-in's worker
threads: the username page (GET and POST /login/) and the password page's GET whole in one hop each, the password
POST in two, one before the agent is asked and one after. PAGES lists what is served here; everything else goes
to Django.

The Django internals this leans on, all here: ``django.core.handlers.asgi.ASGIRequest`` (built from the scope),
``django.core.handlers.exception.response_for_exception`` (400/403/404/413/500 as the handler maps them), the
``MiddlewareMixin`` hooks ``process_request``/``process_view``/``process_response`` of every entry of
``settings.MIDDLEWARE``, ``request.sensitive_post_parameters`` (what ``@sensitive_post_parameters`` sets), and
Channels' ``get_handler_name`` (``dispatch``, below, is Channels' own without its database hop).
signin/checks.py stops start-up when they no longer fit; tests/signin/test_password_parity.py compares every
answer with the plain view's.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
from collections.abc import Callable, Iterator
from typing import Any

from asgiref.typing import HTTPRequestEvent
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.exception import response_for_exception
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from django.utils.module_loading import import_string
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables

from agents.connections import local_agents
from signin import timing, views
from signin.workers import in_worker

logger = logging.getLogger(__name__)


class MiddlewareHooks:
    """settings.MIDDLEWARE's hooks, called in order in the current thread, as Django's handler would."""

    def __init__(self) -> None:
        self.middleware = [import_string(path)(self._no_inner_response) for path in settings.MIDDLEWARE]
        for instance in self.middleware:
            name = type(instance).__name__
            if not any(hasattr(instance, hook) for hook in ("process_request", "process_view", "process_response")):
                raise ImproperlyConfigured(f"{name} has no hooks the sign-in consumers can run.")
            # Django's handler would run these too; the consumers do not.
            if skipped := [hook for hook in ("process_exception", "process_template_response")
                           if hasattr(instance, hook)]:
                raise ImproperlyConfigured(f"{name} has {' and '.join(skipped)}, which the sign-in consumers skip.")

    @staticmethod
    def _no_inner_response(request):
        raise AssertionError("the consumer calls the hooks itself")

    def request_phase(self, request: HttpRequest, view) -> tuple[HttpResponse | None, list]:
        """process_request, then process_view; a response from either ends the request there. Returns it
        (or None) and the middleware whose process_response must see the answer."""
        ran: list = []
        try:
            for instance in self.middleware:
                ran.append(instance)
                if hasattr(instance, "process_request") and (response := instance.process_request(request)):
                    return response, ran
            for instance in self.middleware:
                if hasattr(instance, "process_view") and (response := instance.process_view(request, view, (), {})):
                    return response, ran
        except Exception as exc:  # noqa: BLE001 - Django's own mapping: 400, 403, 404, 413, or a logged 500
            return response_for_exception(request, exc), ran
        return None, ran

    @staticmethod
    def response_phase(request: HttpRequest, response: HttpResponse, ran: list) -> HttpResponse:
        for instance in reversed(ran):
            if hasattr(instance, "process_response"):
                response = instance.process_response(request, response)
        return response


@sensitive_variables("args")  # a password POST's submission rides here
def answered(step: Callable[..., Any], request: HttpRequest, *args: Any) -> Any:
    """What ``step(request, *args)`` returns, or the answer Django's handler gives to its exception (400, 403,
    404, 413, or a logged 500 page)."""
    try:
        return step(request, *args)
    except Exception as exc:  # noqa: BLE001 - as Django's handler would answer it
        return response_for_exception(request, exc)


class SignInPageConsumer(AsyncHttpConsumer):
    """A sign-in page answered by a synchronous view, whole: the middleware's hooks (which see ``view``) and
    ``answer`` in one thread hop, as Django's handler would call them (the view with its own decorators)."""

    view: Callable  # what the URLconf routes the page to: its middleware sees it (signin/checks.py compares)
    answer: Callable[[HttpRequest], HttpResponse]  # what answers: the view itself, or its synchronous step
    hooks: MiddlewareHooks | None = None
    # No channel of its own: Channels would subscribe one per request on the channel layer (a Redis round trip,
    # never unsubscribed by the pub/sub layer, and a 500 while Redis is away). An alias that is not configured
    # makes get_channel_layer() answer None.
    channel_layer_alias = "pta-no-channel"

    @staticmethod
    def middleware_hooks() -> MiddlewareHooks:
        if SignInPageConsumer.hooks is None:
            SignInPageConsumer.hooks = MiddlewareHooks()
        return SignInPageConsumer.hooks

    async def dispatch(self, message) -> None:
        """Channels' own, without the close_old_connections() it runs before every message in a hop to the one
        thread-sensitive thread, which every request of the process would queue for: each hop of these consumers
        runs in_worker, which closes old connections in its own thread."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    @sensitive_variables("message")  # a password POST's body is the form, password included
    async def http_request(self, message: HTTPRequestEvent) -> None:
        # AsyncHttpConsumer keeps the whole body in memory: stop reading an oversized one as it arrives.
        self.received = getattr(self, "received", 0) + len(message.get("body", b""))
        # Django's own bound on a form body; under it, the form itself answers an over-long field with a page.
        if self.received > (settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2_621_440):
            await self.refuse_oversized()
            await self.disconnect()
            raise StopConsumer()
        await super().http_request(message)

    async def refuse_oversized(self) -> None:
        """Django's own answer to a body over DATA_UPLOAD_MAX_MEMORY_SIZE (RequestDataTooBig: a 400 page, through
        the middleware), from the length alone: the body read so far is dropped."""
        request = ASGIRequest(self.scope, io.BytesIO(b""))
        request.META["CONTENT_LENGTH"] = str(max(self.received, int(request.META.get("CONTENT_LENGTH") or 0)))
        response = await in_worker(self.first_hop)(self.middleware_hooks(), request)
        await self.send_django_response(response)

    @sensitive_variables("body")
    async def handle(self, body: bytes) -> None:
        with serving():
            request = ASGIRequest(self.scope, io.BytesIO(body))
            await self.send_django_response(await in_worker(self.first_hop)(self.middleware_hooks(), request))

    @classmethod
    def first_hop(cls, hooks: MiddlewareHooks, request: HttpRequest):
        response, ran = hooks.request_phase(request, cls.view)
        if response is None:
            response = answered(cls.answer, request)
        return hooks.response_phase(request, response, ran)

    async def send_django_response(self, response: HttpResponse) -> None:
        if (timed := timing.current()) is not None:  # PTA_SERVER_TIMING: the benchmark's per-step timing
            response["Server-Timing"] = timed.header()
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.items()]
        headers += [(b"Set-Cookie", c.output(header="").strip().encode("latin-1")) for c in response.cookies.values()]
        await self.send_response(response.status_code, response.content, headers=headers)


class UsernamePageConsumer(SignInPageConsumer):
    view = answer = staticmethod(views.username_page)


class PasswordPageConsumer(SignInPageConsumer):
    """The password page's GET: the async view's own step, with its @never_cache."""

    view = staticmethod(views.password_page)
    answer = staticmethod(never_cache(views.password_form))


class PasswordPostConsumer(SignInPageConsumer):
    """The password POST: the agent is asked between two hops, on the event loop: the first runs the middleware's
    request side, the form and the sign-in's first step; the second the sign-in's last step and the answer (the
    middleware's response side)."""

    view = staticmethod(views.password_page)

    async def handle(self, body: bytes) -> None:
        with serving():
            await self.sign_in(body)

    @sensitive_variables("body", "submission")
    async def sign_in(self, body: bytes) -> None:
        timing.begin()
        request = ASGIRequest(self.scope, io.BytesIO(body))
        # What @sensitive_post_parameters sets, for error reports; an attribute the stubs' HttpRequest lacks.
        request.sensitive_post_parameters = ["password"]  # type: ignore[attr-defined]
        hooks = self.middleware_hooks()
        submission = await in_worker(self.first_hop)(hooks, request)
        if isinstance(submission, HttpResponse):
            response = submission
        else:
            answer: list = []  # the answer made in the sign-in's last hop, or what making it raised

            @sensitive_variables("result")
            def then(result) -> None:
                try:
                    answer.append(self.after_agent(hooks, request, submission, result))
                except Exception as exc:  # noqa: BLE001 - raised below, on the event loop, as before
                    answer.append(exc)

            try:
                result = await views.password_submit(request, submission, then=then)
            except Exception as exc:  # noqa: BLE001 - as Django's handler would: logged, a plain error page
                response = await in_worker(self.failed)(hooks, request, exc)
            else:
                if not answer:  # the outcome needed the event loop first (a password to change): a hop of its own
                    answer.append(await in_worker(self.after_agent)(hooks, request, submission, result))
                if isinstance(answer[0], Exception):
                    raise answer[0]
                response = answer[0]
        await self.send_django_response(response)

    @staticmethod
    def failed(hooks: MiddlewareHooks, request: HttpRequest, exc: Exception) -> HttpResponse:
        return hooks.response_phase(request, response_for_exception(request, exc), hooks.middleware)

    @classmethod
    @sensitive_variables("found")
    def first_hop(cls, hooks: MiddlewareHooks, request: HttpRequest):
        """The middleware's request side and the form. A response here (a redirect, a CSRF 403, a form error) is
        final; else the submission, for the agent."""
        response, ran = hooks.request_phase(request, cls.view)
        if response is None:
            found = answered(views.password_submission, request)
            if not isinstance(found, HttpResponse):
                # The sign-in's first step (routing, the account, its places, the lockout reservation) in this
                # same hop: none of its own before the agent.
                return views.password_submission_prepared(request, found)
            response = found
            add_never_cache_headers(response)  # the view's @never_cache: not on a middleware's own answer
        return hooks.response_phase(request, response, ran)

    @staticmethod
    @sensitive_variables("submission")
    def after_agent(hooks: MiddlewareHooks, request: HttpRequest, submission, result) -> HttpResponse:
        """Second hop: the answer page or redirect, then the middleware's response side (session, cookies,
        security headers)."""
        response = answered(views.password_answer, request, submission, result)
        add_never_cache_headers(response)
        return hooks.response_phase(request, response, hooks.middleware)


# After this many sign-in pages, what the first ones built for good (compiled templates, the routing, the
# connections' pools, the lazily imported modules) is moved out of the collector's sight, as config/asgi.py does
# with what start-up built: a full collection then walks the garbage of recent requests, not all of that again.
# Agents' connections last too, and a node holding thousands of them spent most of its slowest sign-ins in full
# collections walking them (docs/benchmarks.md, sixth pass: 200 ms of the slowest 5 % at 5,000 agents). So every
# WARM_AFTER pages, once at least REFREEZE_AGENTS agents (and a fifth of those connected) were welcomed since the
# last freeze, the heap is thawed, collected (the connections that went since are freed with it) and frozen again.
# Only at a moment no HTTP request is in flight (SignInRouter counts them all, the sign-in pages with serving()): a
# request frozen with the rest (its body: a password) would never be freed, Django's request and user being a
# reference cycle only the collector breaks.
WARM_AFTER = 1000
REFREEZE_AGENTS = 200
IDLE_CHECKS = (0.2, 600)  # every 0.2 s, at most 600 times (two minutes of a node never idle: then not at all)
_pages_served = 0
_pages_in_flight = 0
_requests_in_flight = 0
_agents_added_at_freeze = 0


@contextlib.contextmanager
def serving() -> Iterator[None]:
    """Around a sign-in page's handling: counts it in flight, and every WARM_AFTER-th schedules a freeze when due."""
    global _pages_served, _pages_in_flight
    _pages_served += 1
    _pages_in_flight += 1
    if _pages_served == WARM_AFTER:
        asyncio.get_running_loop().call_soon(freeze_when_idle, IDLE_CHECKS[1])
    elif _pages_served % WARM_AFTER == 0 and refreeze_due():
        asyncio.get_running_loop().call_soon(freeze_when_idle, IDLE_CHECKS[1], True)
    try:
        yield
    finally:
        _pages_in_flight -= 1


def refreeze_due() -> bool:
    welcomed = local_agents.added - _agents_added_at_freeze
    return welcomed >= max(REFREEZE_AGENTS, len(local_agents) // 5)


def freeze_when_idle(checks_left: int, thaw: bool = False) -> None:
    global _agents_added_at_freeze
    if _pages_in_flight or _requests_in_flight:
        if checks_left > 1:
            asyncio.get_running_loop().call_later(IDLE_CHECKS[0], freeze_when_idle, checks_left - 1, thaw)
        return
    if thaw:
        gc.unfreeze()  # what went since the last freeze (a connection that closed) is collected with the rest
    gc.collect()  # the finished requests' cycles go first: only what lasts is frozen
    gc.freeze()
    _agents_added_at_freeze = local_agents.added


# What the consumers serve, by method and path; signin/checks.py holds each path to its URL's view.
PAGES: dict[tuple[str, str], type[SignInPageConsumer]] = {
    ("GET", "/login/"): UsernamePageConsumer,
    ("POST", "/login/"): UsernamePageConsumer,
    ("GET", "/login/password/"): PasswordPageConsumer,
    ("POST", "/login/password/"): PasswordPostConsumer,
}


class SignInRouter:
    """Sends the sign-in's pages (PAGES) to their consumers and every other HTTP request to Django."""

    def __init__(self, django_app) -> None:
        self.django_app = django_app
        self.consumers = {route: consumer.as_asgi() for route, consumer in PAGES.items()}

    async def __call__(self, scope, receive, send):
        global _requests_in_flight
        _requests_in_flight += 1  # no freeze of the heap meanwhile (freeze_when_idle)
        try:
            if scope["type"] == "http" and (consumer := self.consumers.get((scope["method"], scope["path"]))):
                return await consumer(scope, receive, send)
            return await self.django_app(scope, receive, send)
        finally:
            _requests_in_flight -= 1
