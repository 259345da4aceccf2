"""The SQL statements of a node on SQLite, counted for bench/run --costs --profile embedded.

PostgreSQL logs its statements itself (log_statement=all, read by bench/fleet.py); SQLite has no server, so the
node counts them: `bench.sqlcount_settings` (the portal's settings and this) gives every new SQLite connection
of the process a trace callback that appends each statement's verb and table (`SELECT tenant_user`, never a
value: no parameter leaves the process) to the file named by BENCH_SQL_LOG. One short line per statement,
a few microseconds each; nothing of it runs unless a benchmark asks for it.
"""

from __future__ import annotations

import os
import re

TABLE = re.compile(r'(?:FROM|INTO|UPDATE)\s+"?([a-z_]+)"?', re.IGNORECASE)


def statement_kind(sql: str) -> str:
    """A statement's verb and table: `SELECT tenant_user`, `INSERT signin_signinevent`."""
    words = sql.split()
    verb = words[0].upper() if words else "?"
    table = TABLE.search(sql)
    return f"{verb} {table.group(1)}" if table and verb not in ("BEGIN", "COMMIT") else verb


def install(path: str) -> None:
    """Count the statements of every SQLite connection this process opens from now on into ``path``."""
    from django.db.backends.signals import connection_created

    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def trace(sql: str) -> None:
        os.write(fd, (statement_kind(sql) + "\n").encode())  # one write per line: O_APPEND keeps threads' apart

    def traced(sender, connection, **kwargs) -> None:
        if connection.vendor == "sqlite":
            connection.connection.set_trace_callback(trace)

    connection_created.connect(traced, weak=False)


def read_kinds(path, offset: int) -> tuple[list[str], int]:
    """The statement kinds written to ``path`` since ``offset``, and the new offset."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read()
    except FileNotFoundError:
        return [], offset
    return text.decode("utf-8", "replace").splitlines(), offset + len(text)
