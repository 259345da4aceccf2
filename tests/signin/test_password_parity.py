"""The sign-in pages' fast path (signin/consumers.py re-runs Django's middleware hooks by hand: the username page and
the password page, GET and POST) answers exactly as Django's own handler and the plain views do: the same requests
through both, compared on status, outcome, the security headers, the cookies set and their attributes, and what
the session then holds. A Django upgrade or a new middleware that changes the plain path's answers fails here, not
in production."""

from collections.abc import Mapping
from http.cookies import SimpleCookie
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator
from django.contrib.sessions.backends.cache import SessionStore
from django.core.asgi import get_asgi_application
from django.test import Client
from django.utils.deprecation import MiddlewareMixin

from signin.consumers import SignInRouter
from signin.views import SESSION_KEY
from tests.fixtures.http import found
from tests.signin.test_password_consumer import PASSWORD, cloud_admin, username_step  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)
COMPARED_HEADERS = ("location", "pta-outcome", "content-type", "cache-control", "expires", "x-frame-options",
                    "x-content-type-options", "referrer-policy", "cross-origin-opener-policy", "vary")


def answer(response: Mapping[str, Any]) -> dict:
    """What a browser acts on, without what differs by nature (session keys, tokens, dates, body bytes)."""
    headers: dict[str, list[str]] = {}
    cookies = SimpleCookie()
    for name, value in response["headers"]:
        name, value = name.decode().lower(), value.decode()
        if name == "set-cookie":
            cookies.load(value)
        elif name in COMPARED_HEADERS:
            headers.setdefault(name, []).append(value if name != "expires" else "<date>")
    body = response["body"]
    outcome = body.split(b'data-outcome="', 1)[1].split(b'"', 1)[0].decode() if b'data-outcome="' in body else ""
    return {"status": response["status"], "headers": {k: sorted(v) for k, v in headers.items()}, "outcome": outcome,
            "cookies": {name: {k: str(v) for k, v in morsel.items() if v and k != "expires"} | {"set": True}
                        for name, morsel in cookies.items()}}


async def through(app, body: bytes, cookies: dict, *, method: str = "POST", path: str = "/login/password/",
                  headers: list | None = None) -> dict:
    headers = headers or [(b"content-type", b"application/x-www-form-urlencoded"), (b"host", b"127.0.0.1")]
    headers = [*headers, (b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode())]
    response = await HttpCommunicator(app, method, path, body=body, headers=headers).get_response(timeout=20)
    return answer(response)


def first_page() -> tuple[dict, str]:
    """GET /login/ with Django's test client: a CSRF cookie and its token, no session yet."""
    client = Client()
    token = found(r'name="csrfmiddlewaretoken" value="([^"]+)"', client.get("/login/").content.decode())
    return {name: morsel.value for name, morsel in client.cookies.items()}, token


def signin_state(response: Mapping[str, Any]) -> dict | None:
    """What the username step left in the session the answer names (None: no session cookie set)."""
    for name, value in response["headers"]:
        if name.decode().lower() == "set-cookie" and value.decode().startswith("sessionid="):
            return SessionStore(session_key=value.decode().split("=", 1)[1].split(";", 1)[0]).get(SESSION_KEY)
    return None


USERNAME_CASES = {
    "tenant-user": lambda token: f"csrfmiddlewaretoken={token}&username=someone@alpha.example.test&next=/x".encode(),
    "cloud-admin": lambda token: f"csrfmiddlewaretoken={token}&username=admin@alpha.example.test".encode(),
    "unknown-domain": lambda token: f"csrfmiddlewaretoken={token}&username=someone@nowhere.example.test".encode(),
    "offsite-next": lambda token: (f"csrfmiddlewaretoken={token}&username=someone@alpha.example.test"
                                   "&next=https://evil.example/").encode(),
    "empty-username": lambda token: f"csrfmiddlewaretoken={token}&username=".encode(),
    "no-csrf-token": lambda token: b"username=someone@alpha.example.test",
    "oversized-body": lambda token: f"csrfmiddlewaretoken={token}&username=".encode() + b"a" * 3_000_000,
}


@pytest.mark.parametrize("case", sorted(USERNAME_CASES))
async def test_the_username_step_is_answered_as_by_the_plain_view(cloud_admin, case):  # noqa: F811
    django_app = get_asgi_application()
    answers, states = [], []
    for app in (SignInRouter(django_app), django_app):
        cookies, token = await sync_to_async(first_page)()
        headers = [(b"content-type", b"application/x-www-form-urlencoded"), (b"host", b"127.0.0.1"),
                   (b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode())]
        response = await HttpCommunicator(app, "POST", "/login/", body=USERNAME_CASES[case](token),
                                          headers=headers).get_response(timeout=20)
        answers.append(answer(response))
        states.append(await sync_to_async(signin_state)(response))
    assert answers[0] == answers[1]
    assert states[0] == states[1]


@pytest.mark.parametrize("query", ["", "next=/authorize/%3Fclient_id%3Dx", "next=//evil.example/"])
async def test_the_first_page_is_answered_as_by_the_plain_view(cloud_admin, query):  # noqa: F811
    django_app = get_asgi_application()
    bodies, answers = [], []
    for app in (SignInRouter(django_app), django_app):
        communicator = HttpCommunicator(app, "GET", "/login/" + (f"?{query}" if query else ""),
                                        headers=[(b"host", b"127.0.0.1")])
        response = await communicator.get_response(timeout=20)
        answers.append(answer(response))
        bodies.append(response["body"].decode())
    assert answers[0] == answers[1] and answers[0]["status"] == 200 and "csrftoken" in answers[0]["cookies"]
    next_field = r'name="next" value="([^"]*)"'
    assert found(next_field, bodies[0]) == found(next_field, bodies[1])  # the same destination, kept or refused


CASES = {
    "success": lambda token: f"csrfmiddlewaretoken={token}&password={PASSWORD}".encode(),
    "wrong-password": lambda token: f"csrfmiddlewaretoken={token}&password=not-it".encode(),
    "no-csrf-token": lambda token: f"password={PASSWORD}".encode(),
    "empty-password": lambda token: f"csrfmiddlewaretoken={token}&password=".encode(),
    "oversized-body": lambda token: f"csrfmiddlewaretoken={token}&password=".encode() + b"a" * 3_000_000,
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_the_consumer_answers_as_the_plain_view(cloud_admin, case):  # noqa: F811
    django_app = get_asgi_application()
    answers = []
    for app in (SignInRouter(django_app), django_app):
        cookies, token = await sync_to_async(username_step)(cloud_admin.upn)
        answers.append(await through(app, CASES[case](token), cookies))
    fast, plain = answers
    assert fast == plain


@pytest.mark.parametrize("walked", [True, False], ids=["after-the-username-step", "no-sign-in-under-way"])
async def test_the_password_page_is_answered_as_by_the_plain_view(cloud_admin, walked):  # noqa: F811
    django_app = get_asgi_application()
    answers = []
    for app in (SignInRouter(django_app), django_app):
        cookies, _ = await (sync_to_async(username_step)(cloud_admin.upn) if walked else sync_to_async(first_page)())
        answers.append(await through(app, b"", cookies, method="GET"))
    assert answers[0] == answers[1]
    assert answers[0]["status"] == (200 if walked else 302)


async def test_an_exception_in_the_view_is_answered_alike(cloud_admin, monkeypatch):  # noqa: F811
    from signin import views

    async def broken(request, submission, then=None):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(views, "password_submit", broken)
    django_app = get_asgi_application()
    answers = []
    for app in (SignInRouter(django_app), django_app):
        cookies, token = await sync_to_async(username_step)(cloud_admin.upn)
        answers.append(await through(app, f"csrfmiddlewaretoken={token}&password={PASSWORD}".encode(), cookies))
    assert answers[0] == answers[1] and answers[0]["status"] == 500


def test_start_up_stops_when_the_consumer_no_longer_fits(settings, monkeypatch):
    from signin import checks as signin_checks
    from signin import consumers

    assert signin_checks.signin_consumers_fit(None) == []
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.signin.test_password_parity.NewStyleMiddleware"]
    assert [e.id for e in signin_checks.signin_consumers_fit(None)] == ["signin.E002"]
    settings.MIDDLEWARE = settings.MIDDLEWARE[:-1]
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.signin.test_password_parity.ExceptionMiddleware"]
    assert [e.id for e in signin_checks.signin_consumers_fit(None)] == ["signin.E002"]
    settings.MIDDLEWARE = settings.MIDDLEWARE[:-1]
    monkeypatch.setitem(consumers.PAGES, ("POST", "/login/pass/"), consumers.PasswordPostConsumer)
    assert [e.id for e in signin_checks.signin_consumers_fit(None)] == ["signin.E003"]
    monkeypatch.delitem(consumers.PAGES, ("POST", "/login/pass/"))
    monkeypatch.setitem(consumers.PAGES, ("POST", "/login/"), consumers.PasswordPostConsumer)
    assert [e.id for e in signin_checks.signin_consumers_fit(None)] == ["signin.E003"]


class ExceptionMiddleware(MiddlewareMixin):
    """A middleware that answers exceptions: Django's handler would call it, the consumers would not."""

    def process_exception(self, request, exception):
        return None


class NewStyleMiddleware:
    """A middleware written as a plain callable: nothing the consumer can run by hand."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)
