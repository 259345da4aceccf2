"""The trail and the sign-in records as they happen, one JSON line each (trail/lines.py), to a file or syslog
for a SIEM. Off unless ``PTA_AUDIT_STREAM`` names where:

- ``file:/var/log/pta/audit.jsonl`` (or a plain absolute path): appended by every process of the machine, each
  line in one ``write`` on a descriptor opened ``O_APPEND`` (lines of several processes never interleave); the file
  is reopened when it was rotated (renamed or removed), so logrotate needs no ``copytruncate`` nor signal.
- ``syslog`` (the local ``/dev/log``), ``syslog:/path/to/socket`` or ``syslog://host:514`` (UDP): facility
  ``auth``, tag ``pta-audit``.

A failing sink never fails the change nor the sign-in: the line is lost, the failure logged, and the database
(``manage.py audit_export``) keeps everything for the retention period.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import threading

from django.conf import settings

from trail.lines import change_line, line_text, signin_line

logger = logging.getLogger(__name__)


class FileSink:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def _open(self) -> int:
        try:
            stat = os.stat(self.path)
            current: tuple[int, int] | None = (stat.st_dev, stat.st_ino)
        except FileNotFoundError:
            current = None
        if self._fd is not None and current == self._inode:
            return self._fd
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        stat = os.fstat(self._fd)
        self._inode = (stat.st_dev, stat.st_ino)
        return self._fd

    def write(self, text: str) -> None:
        data = (text + "\n").encode()
        with self._lock:
            os.write(self._open(), data)


class _SysLogHandler(logging.handlers.SysLogHandler):
    def handleError(self, record) -> None:
        raise  # called inside emit's except: the failure goes to _write, one line in the log


class SyslogSink:
    def __init__(self, address: str | tuple[str, int]) -> None:
        self.handler = _SysLogHandler(address=address, facility=logging.handlers.SysLogHandler.LOG_AUTH)
        self.handler.ident = "pta-audit: "

    def write(self, text: str) -> None:
        record = logging.LogRecord("pta-audit", logging.INFO, __file__, 0, text, None, None)
        self.handler.emit(record)


def sink_from(value: str) -> FileSink | SyslogSink | None:
    """The sink a ``PTA_AUDIT_STREAM`` value names (checked at start-up by config/settings/audit.py)."""
    value = value.strip()
    if not value:
        return None
    if value == "syslog":
        return SyslogSink("/dev/log")
    if value.startswith("syslog://"):
        host, _, port = value.removeprefix("syslog://").rstrip("/").rpartition(":")
        return SyslogSink((host.strip("[]"), int(port)))
    if value.startswith("syslog:"):
        return SyslogSink(value.removeprefix("syslog:"))
    return FileSink(value.removeprefix("file:"))


_sink_lock = threading.Lock()
_sink: FileSink | SyslogSink | None = None
_sink_for: str | None = None


def _current_sink() -> FileSink | SyslogSink | None:
    global _sink, _sink_for
    wanted = settings.PTA_AUDIT_STREAM
    if wanted == _sink_for:
        return _sink
    with _sink_lock:
        if wanted != _sink_for:
            _sink, _sink_for = sink_from(wanted), wanted
    return _sink


def stream_on() -> bool:
    return bool(settings.PTA_AUDIT_STREAM)


def _write(line: dict) -> None:
    try:
        sink = _current_sink()  # opening a syslog socket may fail too
        if sink is not None:
            sink.write(line_text(line))
    except Exception as exc:  # never the sign-in's nor the change's failure
        logger.error("audit stream %s: a line was lost (%s); audit_export has it", settings.PTA_AUDIT_STREAM, exc)


def stream_change(event) -> None:
    _write(change_line(event))


def stream_signin(event) -> None:
    _write(signin_line(event))
