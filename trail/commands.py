"""The base of the portal's management commands that change what administrators own: what they change is
recorded as the command's, with the operating-system user who ran it (and, under sudo, who ran sudo)."""

from __future__ import annotations

import getpass
import os

from django.core.management.base import BaseCommand

from trail.context import Actor, Through, actor_set
from trail.redaction import field_recorded

# BaseCommand's own options: how the command runs, not what it does.
_RUN_OPTIONS = frozenset({"verbosity", "settings", "pythonpath", "traceback", "no_color", "force_color",
                          "skip_checks"})


def os_user() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = str(os.getuid())
    sudo = os.environ.get("SUDO_USER", "")
    return f"{name} (sudo by {sudo})" if sudo and sudo != name else name


def options_shown(args: tuple, options: dict) -> str:
    """The command's arguments as the trail keeps them: an option whose name says secret is not shown."""
    shown = [str(a) for a in args]
    for name, value in sorted(options.items()):
        if name in _RUN_OPTIONS or value in (None, False, [], ""):
            continue
        shown.append(f"--{name.replace('_', '-')}" + ("" if value is True else
                                                      f"={value if field_recorded(name) else '[redacted]'}"))
    return " ".join(shown)[:480]


class AuditedCommand(BaseCommand):
    def execute(self, *args, **options):
        name = self.__module__.rpartition(".")[2]
        actor = Actor(name=f"manage.py {name}", through=Through.COMMAND, os_user=os_user(),
                      detail=options_shown(args, options))
        with actor_set(actor):
            return super().execute(*args, **options)
