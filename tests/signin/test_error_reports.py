"""A failure in the middle of a sign-in is reported (AdminEmailHandler, Sentry, DEBUG pages) with each frame's
local variables: the password in scope must show as stars in Django's technical error report.

Every test breaks the sign-in service while the password is in scope and renders the report exactly as
django.utils.log.AdminEmailHandler does. The service itself is stood in for by a fake that is decorated as the
real one is (signin/services/attempt.py), so what is tested is the edges: the backend, the OIDC validator, the
password page and its consumer."""

from __future__ import annotations

import logging
import re
import secrets

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator
from django.contrib.auth import authenticate
from django.test import Client, RequestFactory
from django.views.debug import ExceptionReporter
from django.views.decorators.debug import sensitive_variables

from applications.services import application_register
from signin import backends, oidc, views
from signin.consumers import SignInRouter
from signin.forms import PasswordForm
from tenant.services import tenant_policy_set
from tests.fixtures.http import found

# Made at run time, never a literal: the report also shows source lines around each frame.
PASSWORD = "Pw-" + secrets.token_urlsafe(18)
UPN = "alice@alpha.example.test"


class DirectoryWentAway(Exception):
    """The failure the fake sign-in service raises."""


@sensitive_variables("password")
async def failing_sign_in(*, username: str, password: str, **attempt):
    raise DirectoryWentAway("the hand-off failed half-way")


def reports(request, exc_info) -> tuple[str, str]:
    """The text and HTML of Django's technical error report, as AdminEmailHandler renders them."""
    exc_type, exc_value, traceback = exc_info
    reporter = ExceptionReporter(request, exc_type, exc_value, traceback, is_email=True)
    return reporter.get_traceback_text(), reporter.get_traceback_html()


def assert_no_password(text: str, html: str) -> None:
    assert "DirectoryWentAway" in text and "DirectoryWentAway" in html  # the report is about this failure
    for name, report in (("text", text), ("html", html)):
        assert PASSWORD not in report, f"the password is in the {name} report: " + _around(report)


def _around(report: str) -> str:
    at = report.index(PASSWORD)
    return re.sub(r"\s+", " ", report[max(0, at - 600):at + 40])


class LoggedErrors(logging.Handler):
    """What django.request logs for a 500: the record AdminEmailHandler turns into the report."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def report(self) -> tuple[str, str]:
        record = next(r for r in self.records if r.exc_info and r.exc_info[0] is DirectoryWentAway)
        return reports(getattr(record, "request", None), record.exc_info)


@pytest.fixture
def logged_errors():
    handler = LoggedErrors()
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def tenant(tenant_factory):
    return tenant_factory("Alpha Corp", ["alpha.example.test"])


# --- the authentication backend (django.contrib.auth.authenticate) ---------------------------------------

def test_backend_authenticate_hides_the_password(monkeypatch, tenant):
    monkeypatch.setattr(backends, "password_sign_in", failing_sign_in)
    request = RequestFactory().post("/admin/login/")
    with pytest.raises(DirectoryWentAway) as failure:
        authenticate(request, username=UPN, password=PASSWORD)
    assert_no_password(*reports(request, (failure.type, failure.value, failure.tb)))


async def test_backend_aauthenticate_hides_the_password(monkeypatch, tenant):
    from django.contrib.auth import aauthenticate

    monkeypatch.setattr(backends, "password_sign_in", failing_sign_in)
    request = RequestFactory().post("/admin/login/")
    with pytest.raises(DirectoryWentAway) as failure:
        await aauthenticate(request, username=UPN, password=PASSWORD)
    assert_no_password(*reports(request, (failure.type, failure.value, failure.tb)))


# --- the OAuth password grant (the token endpoint, as a legacy client calls it) ----------------------------

def test_password_grant_hides_the_password(monkeypatch, tenant, logged_errors):
    tenant_policy_set(tenant=tenant, password_grant_enabled=True)
    application, secret = application_register(tenant=tenant, name="Legacy", grant="password")
    monkeypatch.setattr(oidc, "password_sign_in", failing_sign_in)
    client = Client(raise_request_exception=False)
    response = client.post("/token/", {"grant_type": "password", "username": UPN, "password": PASSWORD,
                                       "scope": "openid", "client_id": application.client_id,
                                       "client_secret": secret})
    assert response.status_code == 500
    assert_no_password(*logged_errors.report())


def test_validate_user_hides_the_password(monkeypatch, tenant):
    from oauthlib.common import Request as OAuthRequest

    tenant_policy_set(tenant=tenant, password_grant_enabled=True)
    application, _ = application_register(tenant=tenant, name="Legacy", grant="password")
    monkeypatch.setattr(oidc, "password_sign_in", failing_sign_in)
    request = OAuthRequest("https://portal.example.test/token/", http_method="POST")
    with pytest.raises(DirectoryWentAway) as failure:
        oidc.PortalOAuth2Validator().validate_user(UPN, PASSWORD, application, request)
    assert_no_password(*reports(None, (failure.type, failure.value, failure.tb)))


# --- the password page: Django's view (test client) and the consumer that serves it under Daphne ----------

def username_step(client: Client) -> str:
    page = client.get("/login/")
    token = found(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert client.post("/login/", {"username": UPN, "csrfmiddlewaretoken": token}).status_code == 302
    return token


@sensitive_variables("submission")
def failing_answer(request, submission, result):
    raise DirectoryWentAway("the answer page failed")


def break_step(step: str, monkeypatch) -> str:
    """Break the password step in the sign-in service, in a validator of the form's password field (the
    frames of Django's form cleaning hold the password as ``value``), or in the answer after the sign-in (the
    frames that call it hold the submission, password included)."""
    if step == "service":
        monkeypatch.setattr(views, "password_sign_in", failing_sign_in)
    elif step == "answer":
        monkeypatch.setattr(views, "password_answer", failing_answer)
    else:
        def failing_validator(value):
            raise DirectoryWentAway("a password validator failed")

        monkeypatch.setattr(PasswordForm.base_fields["password"], "validators", [failing_validator])
    return step


@pytest.fixture(params=["service", "form"])
def failing_step(request, monkeypatch):
    return break_step(request.param, monkeypatch)


@pytest.fixture(params=["service", "form", "answer"])
def failing_consumer_step(request, monkeypatch):
    """The consumer's steps: "answer" runs after a real sign-in, which writes from the worker threads (a
    transactional test only)."""
    return break_step(request.param, monkeypatch)


def test_password_view_hides_the_password(failing_step, tenant, logged_errors):
    client = Client(raise_request_exception=False)
    token = username_step(client)
    response = client.post("/login/password/", {"password": PASSWORD, "csrfmiddlewaretoken": token})
    assert response.status_code == 500
    assert_no_password(*logged_errors.report())


@pytest.mark.django_db(transaction=True)
async def test_password_consumer_hides_the_password(failing_consumer_step, tenant, logged_errors):
    client = Client()
    token = await sync_to_async(username_step)(client)
    body = f"csrfmiddlewaretoken={token}&password={PASSWORD}".encode()
    headers = [(b"content-type", b"application/x-www-form-urlencoded"), (b"host", b"127.0.0.1"),
               (b"cookie", "; ".join(f"{k}={m.value}" for k, m in client.cookies.items()).encode())]

    def not_django(scope, receive, send):
        raise AssertionError("the password POST must reach the consumer")

    communicator = HttpCommunicator(SignInRouter(not_django), "POST", "/login/password/", body=body,
                                    headers=headers)
    response = await communicator.get_response(timeout=10)
    assert response["status"] == 500
    assert_no_password(*logged_errors.report())


@pytest.mark.django_db(transaction=True)  # the sign-in's worker threads write to the database
def test_the_token_endpoint_still_issues_tokens(tenant, tenant_admin_factory):
    """Parity: the token view, wrapped for error reports, still serves the password grant."""
    tenant_policy_set(tenant=tenant, password_grant_enabled=True)
    application, secret = application_register(tenant=tenant, name="Legacy", grant="password")
    admin = tenant_admin_factory(tenant)  # a cloud account: its password is checked without an agent
    response = Client().post("/token/", {"grant_type": "password", "username": admin.upn,
                                         "password": "Adm1n-pa55-for-tests", "scope": "openid",
                                         "client_id": application.client_id, "client_secret": secret})
    assert response.status_code == 200, response.content
    assert response.json()["access_token"]
