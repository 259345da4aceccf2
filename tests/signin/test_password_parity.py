"""The password POST's fast path (signin/consumers.py re-runs Django's middleware hooks by hand) answers exactly as
Django's own handler and the plain view do: the same requests through both, compared on status, outcome, the
security headers, the cookies set and their attributes. A Django upgrade or a new middleware that changes the
plain path's answers fails here, not in production."""

from collections.abc import Mapping
from http.cookies import SimpleCookie
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator
from django.core.asgi import get_asgi_application

from signin.consumers import PasswordPostRouter
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


async def through(app, body: bytes, cookies: dict, *, headers: list | None = None) -> dict:
    headers = headers or [(b"content-type", b"application/x-www-form-urlencoded"), (b"host", b"127.0.0.1")]
    headers = [*headers, (b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode())]
    response = await HttpCommunicator(app, "POST", "/login/password/", body=body, headers=headers).get_response(
        timeout=20)
    return answer(response)


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
    for app in (PasswordPostRouter(django_app), django_app):
        cookies, token = await sync_to_async(username_step)(cloud_admin.upn)
        answers.append(await through(app, CASES[case](token), cookies))
    fast, plain = answers
    assert fast == plain


async def test_an_exception_in_the_view_is_answered_alike(cloud_admin, monkeypatch):  # noqa: F811
    from signin import views

    async def broken(request, submission):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(views, "password_submit", broken)
    django_app = get_asgi_application()
    answers = []
    for app in (PasswordPostRouter(django_app), django_app):
        cookies, token = await sync_to_async(username_step)(cloud_admin.upn)
        answers.append(await through(app, f"csrfmiddlewaretoken={token}&password={PASSWORD}".encode(), cookies))
    assert answers[0] == answers[1] and answers[0]["status"] == 500


def test_start_up_stops_when_the_consumer_no_longer_fits(settings, monkeypatch):
    from signin import checks as signin_checks
    from signin import consumers

    assert signin_checks.password_consumer_fits(None) == []
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.signin.test_password_parity.NewStyleMiddleware"]
    assert [e.id for e in signin_checks.password_consumer_fits(None)] == ["signin.E002"]
    settings.MIDDLEWARE = settings.MIDDLEWARE[:-1]
    monkeypatch.setattr(consumers, "PATH", "/login/pass/")
    assert [e.id for e in signin_checks.password_consumer_fits(None)] == ["signin.E003"]


class NewStyleMiddleware:
    """A middleware written as a plain callable: nothing the consumer can run by hand."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)
