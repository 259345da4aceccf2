"""A 403 is logged as one line (method, path, user id, reason), not as "Forbidden (Permission denied)" with a
traceback: driven through the admin console with the test client, read from the log records and from the
portal's own console handler's output."""

import logging

import pytest
from django.urls import reverse

FORBIDDEN_PATHS = ("django.request", "django.security.csrf")


@pytest.fixture
def admin(tenant_a, tenant_admin_factory):
    return tenant_admin_factory(tenant_a)


def forbidden_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name in FORBIDDEN_PATHS and getattr(r, "status_code", None) == 403]


def test_a_permission_denied_is_one_line_with_method_path_user_and_reason(client, admin, caplog):
    client.force_login(admin)
    url = reverse("admin:tenant_tenant_add")  # a tenant administrator may not add tenants
    with caplog.at_level(logging.WARNING):
        assert client.get(url).status_code == 403
    [record] = forbidden_records(caplog)
    assert record.getMessage() == f"403 GET {url} user={admin.pk} reason=permission denied"
    assert record.exc_info is None and record.exc_text is None
    # What the portal's console handler writes (config/settings/base.py LOGGING): that line, no traceback.
    [console] = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    written = console.format(record)
    assert "\n" not in written and "Traceback" not in written
    assert written.endswith(f"WARNING django.request 403 GET {url} user={admin.pk} reason=permission denied")


def test_the_reason_given_is_kept_on_the_line(admin):
    """The registration token form's refusal (two posts racing with one key) carries its reason."""
    from django.core.exceptions import PermissionDenied
    from django.test import RequestFactory

    from config.logfilters import ForbiddenOnOneLine

    request = RequestFactory().post("/admin/agents/registrationtoken/add/")
    request._cached_user = admin  # type: ignore[attr-defined]  # as AuthenticationMiddleware leaves it
    try:
        raise PermissionDenied("This form has already issued\nits token.")
    except PermissionDenied as exc:
        record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Forbidden (Permission denied): %s",
                                   (request.path,), (type(exc), exc, exc.__traceback__))
    record.status_code, record.request = 403, request
    assert ForbiddenOnOneLine().filter(record)
    assert record.getMessage() == (f"403 POST /admin/agents/registrationtoken/add/ user={admin.pk} "
                                   "reason=This form has already issued its token.")
    assert logging.Formatter().format(record).count("\n") == 0


def test_an_anonymous_csrf_failure_is_one_line(db, caplog):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    with caplog.at_level(logging.WARNING):
        assert browser.post("/login/", {"username": "x@y.test"}).status_code == 403
    [record] = forbidden_records(caplog)
    message = record.getMessage()
    assert message.startswith("403 POST /login/ user=") and "CSRF" in message and "\n" not in message


def test_a_path_cannot_forge_a_log_line_nor_drive_the_terminal(db, caplog):
    """A POST without the CSRF cookie to a path holding CR LF, a forged line and an ANSI escape (CVE-2025-48432:
    Django escapes the path in its own line; the one-line filter put the raw path back)."""
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    path = "/alerts/confirm/x%0d%0a2026-12-07%2004:00:00%20INFO%20forged%1b[2J/"
    with caplog.at_level(logging.WARNING):
        assert browser.post(path).status_code == 403
    [record] = forbidden_records(caplog)
    message = record.getMessage()
    assert not any(c in message for c in "\r\n\x1b"), repr(message)
    assert message.startswith("403 POST /alerts/confirm/x\\r\\n2026-12-07 04:00:00 INFO forged\\x1b[2J/ user=")
    [console] = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    written = console.format(record)
    assert "\n" not in written and "\r" not in written and "\x1b" not in written


def test_the_reason_is_escaped_too(admin):
    from django.core.exceptions import PermissionDenied
    from django.test import RequestFactory

    from config.logfilters import ForbiddenOnOneLine

    request = RequestFactory().get("/admin/")
    try:
        raise PermissionDenied("no\x1b[31m entry")
    except PermissionDenied as exc:
        record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Forbidden (Permission denied): %s",
                                   (request.path,), (type(exc), exc, exc.__traceback__))
    record.status_code, record.request = 403, request
    assert ForbiddenOnOneLine().filter(record)
    assert record.getMessage() == "403 GET /admin/ user=- reason=no\\x1b[31m entry"


def test_other_errors_keep_their_traceback():
    from config.logfilters import ForbiddenOnOneLine

    try:
        raise ValueError("boom")
    except ValueError as exc:
        record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Internal Server Error: %s", ("/x",),
                                   (type(exc), exc, exc.__traceback__))
    record.status_code = 500
    assert ForbiddenOnOneLine().filter(record) and record.exc_info is not None
    assert "Traceback" in logging.Formatter().format(record)


def test_logging_configured_twice_still_writes_one_line(client, admin, settings):
    """logging.config adds a logger's filters again at each configuration (a process that set Django up twice):
    the line stays the one line, not the first filter's line taken for a reason by the second."""
    from django.utils.log import configure_logging

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
    logger = logging.getLogger("django.request")
    assert len(logger.filters) >= 2
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    collect = Collect()
    logger.addHandler(collect)
    try:
        client.force_login(admin)
        url = reverse("admin:tenant_tenant_add")
        assert client.get(url).status_code == 403
    finally:
        logger.removeHandler(collect)
    assert [r.getMessage() for r in seen] == [f"403 GET {url} user={admin.pk} reason=permission denied"]
