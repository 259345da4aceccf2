"""Logging filters of the portal (LOGGING in config/settings/base.py)."""

import logging
import re

REASON_CHARS = 200
# Django's own wording, "Forbidden (<reason>): <path>" (the CSRF check's reasons among them).
DJANGO_FORBIDDEN = re.compile(r"^Forbidden \((?P<reason>.*)\): .*$", re.S)


class ForbiddenOnOneLine(logging.Filter):
    """A 403 is one line: method, path, user id and reason, no traceback. Django's request logger logs a
    PermissionDenied as "Forbidden (Permission denied)" with the exception's traceback, which says nothing an
    operator needs (the code that refused is the code meant to) and buries the line that does."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Once per record: logging.config adds a logger's filters again each time the configuration is applied
        # (it removes the old handlers, never the old filters), so a process that configured logging twice
        # holds two of these, and the second would take the first one's line for a reason.
        if getattr(record, "status_code", None) != 403 or getattr(record, "forbidden_on_one_line", False):
            return True
        record.forbidden_on_one_line = True
        request = getattr(record, "request", None)
        exception = record.exc_info[1] if record.exc_info else None
        if exception is not None:
            reason = str(exception) or "permission denied"
        else:
            message = record.getMessage()
            found = DJANGO_FORBIDDEN.match(message)
            reason = found.group("reason") if found else message
        # One line whatever the reason holds, and never long.
        reason = " ".join(reason.split())[:REASON_CHARS] or "permission denied"
        record.msg = "403 %s %s user=%s reason=%s"
        # The path is the client's, decoded (%0d%0a is a line break, %1b a terminal's escape): escaped as Django
        # escapes it in its own line (CVE-2025-48432), so that nobody can write a forged line into the log or
        # drive the terminal of whoever reads it. The reason too: an exception's text may quote the request.
        record.args = (_escaped(getattr(request, "method", "-")), _escaped(getattr(request, "path", "-")),
                       _user_id(request), _escaped(reason))
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def _escaped(text: str) -> str:
    """Control characters (CR, LF, ESC among them) and anything not ASCII as Python escapes: printable, one line."""
    return str(text).encode("unicode_escape").decode("ascii")


def _user_id(request) -> str:
    """The signed-in user's id if the request already read it: never a database query from inside logging (nor
    one from an event loop's thread)."""
    for cached in ("_cached_user", "_acached_user"):
        user = getattr(request, cached, None)
        if user is not None:
            return str(user.pk) if user.is_authenticated else "anonymous"
    return "-"
