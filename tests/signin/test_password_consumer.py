"""The sign-in pages' consumers run Django's own session, CSRF and security machinery: the username page in one
thread hop, the password POST in two."""

from collections.abc import Mapping
from http.cookies import SimpleCookie
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator
from django.contrib.sessions.backends.cache import SessionStore
from django.test import Client

from signin.consumers import SignInRouter
from signin.models import SignInEvent
from tests.fixtures.http import found

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "Cl0ud-only-Pa55!"


def django_app(scope, receive, send):
    raise AssertionError("the sign-in pages must not reach Django's handler")


@pytest.fixture
def cloud_admin(tenant_factory, tenant_admin_factory):
    tenant = tenant_factory("Alpha Corp", ["alpha.example.test"])
    user = tenant_admin_factory(tenant)
    user.set_password(PASSWORD)
    user.save()
    return user


def username_step(upn: str) -> tuple[dict, str]:
    """Walk the username page with Django's test client: a session in the cache and a CSRF cookie."""
    client = Client()
    page = client.get("/login/")
    token = found(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    client.post("/login/", {"username": upn, "csrfmiddlewaretoken": token})
    return {name: morsel.value for name, morsel in client.cookies.items()}, token


async def post(cookies: dict, body: bytes) -> Mapping[str, Any]:
    headers = [(b"content-type", b"application/x-www-form-urlencoded"), (b"host", b"127.0.0.1"),
               (b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode())]
    communicator = HttpCommunicator(SignInRouter(django_app), "POST", "/login/password/", body=body,
                                    headers=headers)
    return await communicator.get_response(timeout=10)


def header(response: Mapping[str, Any], name: str) -> list[str]:
    return [v.decode() for k, v in response["headers"] if k.decode().lower() == name.lower()]


def set_cookies(response: Mapping[str, Any]) -> dict:
    cookies = SimpleCookie()
    for value in header(response, "set-cookie"):
        cookies.load(value)
    return {name: morsel.value for name, morsel in cookies.items()}


async def test_the_username_and_password_pages_are_served_by_their_consumers(cloud_admin):
    router = SignInRouter(django_app)
    page = await HttpCommunicator(router, "GET", "/login/", headers=[(b"host", b"127.0.0.1")]).get_response(timeout=10)
    assert page["status"] == 200 and header(page, "x-frame-options") == ["DENY"]
    token = found(r'name="csrfmiddlewaretoken" value="([^"]+)"', page["body"].decode())
    cookies = set_cookies(page)
    headers = [(b"content-type", b"application/x-www-form-urlencoded"), (b"host", b"127.0.0.1"),
               (b"cookie", f"csrftoken={cookies['csrftoken']}".encode())]
    response = await HttpCommunicator(router, "POST", "/login/", headers=headers,
                                      body=f"csrfmiddlewaretoken={token}&username={cloud_admin.upn}".encode()
                                      ).get_response(timeout=10)
    assert response["status"] == 302 and header(response, "location") == ["/login/password/"]
    session_key = set_cookies(response)["sessionid"]
    session = SessionStore(session_key=session_key)
    state = await sync_to_async(session.get)("pta_signin")
    assert state is not None and state["organisation"] == "Alpha Corp"
    page = await HttpCommunicator(router, "GET", "/login/password/", headers=[
        (b"host", b"127.0.0.1"), (b"cookie", f"sessionid={session_key}".encode())]).get_response(timeout=10)
    assert page["status"] == 200 and b"Alpha Corp" in page["body"] and cloud_admin.upn.encode() in page["body"]


async def test_success_logs_in_rotates_the_session_and_sets_security_headers(cloud_admin):
    cookies, token = await sync_to_async(username_step)(cloud_admin.upn)
    response = await post(cookies, f"csrfmiddlewaretoken={token}&password={PASSWORD}".encode())
    assert response["status"] == 302
    assert header(response, "location") == ["/login/done/"] and header(response, "pta-outcome") == ["success"]
    assert header(response, "x-frame-options") == ["DENY"]
    assert header(response, "x-content-type-options") == ["nosniff"]
    assert "no-cache" in header(response, "cache-control")[0]
    new = set_cookies(response)
    assert new["sessionid"] != cookies["sessionid"]  # rotated at login: no session fixation
    assert new["csrftoken"] != cookies["csrftoken"]  # and so is the CSRF secret
    session = SessionStore(session_key=new["sessionid"])
    assert await sync_to_async(session.get)("_auth_user_id") == str(cloud_admin.pk)


async def test_wrong_password_renders_the_page_with_its_outcome(cloud_admin):
    cookies, token = await sync_to_async(username_step)(cloud_admin.upn)
    response = await post(cookies, f"csrfmiddlewaretoken={token}&password=wrong".encode())
    assert response["status"] == 200
    assert b'data-outcome="invalid_credentials"' in response["body"]
    assert b"wrong" not in response["body"].split(b"<footer>")[0].split(b"</h1>")[-1]  # never echoed
    assert header(response, "x-frame-options") == ["DENY"]


async def test_missing_csrf_token_is_refused_before_any_attempt(cloud_admin):
    cookies, _ = await sync_to_async(username_step)(cloud_admin.upn)
    response = await post(cookies, f"password={PASSWORD}".encode())
    assert response["status"] == 403
    assert not await SignInEvent.objects.aexists()


async def test_no_username_step_goes_back_to_the_first_page(cloud_admin):
    cookies, token = await sync_to_async(username_step)(cloud_admin.upn)
    cookies["sessionid"] = "not-a-session"
    response = await post(cookies, f"csrfmiddlewaretoken={token}&password={PASSWORD}".encode())
    assert response["status"] == 302 and header(response, "location") == ["/login/"]
    assert not await SignInEvent.objects.aexists()


async def test_an_oversized_body_is_refused(cloud_admin):
    cookies, token = await sync_to_async(username_step)(cloud_admin.upn)
    response = await post(cookies, f"csrfmiddlewaretoken={token}&password=".encode() + b"a" * 3_000_000)
    assert response["status"] == 400  # Django's own answer (RequestDataTooBig), as the plain view gives it
    assert not await SignInEvent.objects.aexists()


async def test_a_disallowed_host_is_a_400_not_a_crash(cloud_admin):
    communicator = HttpCommunicator(SignInRouter(django_app), "POST", "/login/password/", body=b"password=x",
                                    headers=[(b"host", b"evil.example"),
                                             (b"content-type", b"application/x-www-form-urlencoded")])
    response = await communicator.get_response(timeout=10)
    assert response["status"] == 400


async def test_an_unexpected_failure_is_a_plain_error_page_without_a_traceback(cloud_admin, monkeypatch):
    from signin import views

    async def broken(request, submission, then=None):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(views, "password_submit", broken)
    cookies, token = await sync_to_async(username_step)(cloud_admin.upn)
    response = await post(cookies, f"csrfmiddlewaretoken={token}&password={PASSWORD}".encode())
    assert response["status"] == 500
    assert b"database went away" not in response["body"] and PASSWORD.encode() not in response["body"]
    assert header(response, "x-frame-options") == ["DENY"]


def test_the_pages_write_their_inputs_with_every_attribute_and_tie_errors_to_their_message(cloud_admin):
    """The username and password inputs are written by the templates, not Django's widget templates: the same
    attributes, the typed username escaped, and an error's aria-describedby naming the element that says it."""
    client = Client()
    html = client.get("/login/").content.decode()
    field = found(r'(<input type="text" name="username"[^>]*>)', html)
    for attribute in ('autocomplete="username"', " autofocus", 'autocapitalize="none"', 'spellcheck="false"',
                      'maxlength="320"', " required", 'id="id_username"'):
        assert attribute in field
    assert "value=" not in field and "aria-invalid" not in field and 'aria-describedby="username-hint"' in field
    assert 'id="username-hint"' in html  # what the field takes: name@organisation
    token = found(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)

    page = client.post("/login/", {"username": 'no-at-sign"><script>x</script>', "csrfmiddlewaretoken": token})
    field = found(r'(<input type="text" name="username"[^>]*>)', page.content.decode())
    assert page.status_code == 400 and "<script>" not in page.content.decode()
    assert 'value="no-at-sign&quot;&gt;&lt;script&gt;x&lt;/script&gt;"' in field
    assert 'aria-describedby="username-hint username-error"' in field and 'aria-invalid="true"' in field
    assert 'id="username-error"' in page.content.decode()

    client.post("/login/", {"username": cloud_admin.upn, "csrfmiddlewaretoken": token})
    field = found(r'(<input type="password" name="password"[^>]*>)', client.get("/login/password/").content.decode())
    assert 'autocomplete="current-password"' in field and 'maxlength="512"' in field and "aria-invalid" not in field
    page = client.post("/login/password/", {"password": "wrong-" + PASSWORD, "csrfmiddlewaretoken": token})
    field = found(r'(<input type="password" name="password"[^>]*>)', page.content.decode())
    assert "value=" not in field and 'aria-invalid="true" aria-describedby="password-error"' in field
    assert 'id="password-error"' in page.content.decode()


async def test_what_the_first_pages_built_is_frozen_once_and_never_a_request_in_flight(monkeypatch):
    # After WARM_AFTER sign-in pages, once per process: a full collection no longer walks what they built for good.
    # Not while a page is served: a request frozen with the rest (its body: a password) would never be freed.
    import asyncio
    import gc
    import weakref

    from signin import consumers

    monkeypatch.setattr(consumers, "WARM_AFTER", 3)
    monkeypatch.setattr(consumers, "IDLE_CHECKS", (0.01, 500))
    monkeypatch.setattr(consumers, "_pages_served", 0)
    frozen = gc.get_freeze_count()
    kept = [object() for _ in range(10)] + [[n] for n in range(100)]  # lives on: tracked by the collector
    for _ in range(2):
        with consumers.serving():
            pass
    await asyncio.sleep(0)
    assert gc.get_freeze_count() == frozen  # not yet

    class Request:  # a request in flight, a cycle as Django's request and its lazy user are
        def __init__(self) -> None:
            self.body, self.me = b"password=Hunter2-SECRET", self

    with consumers.serving():  # the third page: the freeze is due, but this one is in flight
        in_flight = Request()
        gone = weakref.ref(in_flight)
        await asyncio.sleep(0.05)
        assert gc.get_freeze_count() == frozen  # waits for no page in flight
        del in_flight
    await asyncio.sleep(0.1)
    assert gc.get_freeze_count() >= frozen + len(kept) - 10
    assert gone() is None  # collected before the freeze, not frozen alive
    after = gc.get_freeze_count()
    with consumers.serving():
        pass
    await asyncio.sleep(0.05)  # and not again
    assert consumers._pages_served == 4 and gc.get_freeze_count() <= after  # (frozen objects may still die)
    gc.unfreeze()  # the rest of the test process is collected as usual


async def test_the_heap_is_frozen_again_once_many_agents_were_welcomed_and_never_with_a_request_in_flight(
        monkeypatch):
    """A node that holds thousands of agents' connections spent its slowest sign-ins in full collections walking
    them. Once REFREEZE_AGENTS were welcomed since the last freeze, at a WARM_AFTER-th page the heap is thawed,
    collected and frozen again; not while any HTTP request is in flight (a Django view's too: the password grant,
    the console's sign-in), and not again before as many more are welcomed."""
    import asyncio

    from agents.connections import local_agents
    from signin import consumers

    calls: list[str] = []

    class Collector:
        def unfreeze(self) -> None:
            calls.append("unfreeze")

        def collect(self) -> None:
            calls.append("collect")

        def freeze(self) -> None:
            calls.append("freeze")

    monkeypatch.setattr(consumers, "gc", Collector())
    monkeypatch.setattr(consumers, "WARM_AFTER", 3)
    monkeypatch.setattr(consumers, "REFREEZE_AGENTS", 2)
    monkeypatch.setattr(consumers, "IDLE_CHECKS", (0.01, 500))
    monkeypatch.setattr(consumers, "_pages_served", 3)  # the first freeze is behind
    monkeypatch.setattr(consumers, "_agents_added_at_freeze", local_agents.added)
    monkeypatch.setattr(local_agents, "added", local_agents.added + 5)  # five agents welcomed since

    released = asyncio.Event()

    async def django_view(scope, receive, send) -> None:  # a request in flight (its body: a password)
        await released.wait()

    router = consumers.SignInRouter(django_view)
    view = asyncio.ensure_future(router({"type": "http", "method": "POST", "path": "/token/"}, None, None))
    await asyncio.sleep(0)
    for _ in range(3):
        with consumers.serving():
            pass
    await asyncio.sleep(0.05)
    assert calls == []  # due, but a request is in flight
    released.set()
    await view
    await asyncio.sleep(0.05)
    assert calls == ["unfreeze", "collect", "freeze"]
    for _ in range(3):
        with consumers.serving():
            pass
    await asyncio.sleep(0.05)
    assert calls == ["unfreeze", "collect", "freeze"]  # no agent welcomed since
