"""Who is making a change right now: the administrator in the admin console, or the management command and the
operating-system user who ran it.

A leaf module (no Django, no app), so every app may set the actor where a change enters: the console's site
(trail/console.py) for every console page, ``AuditedCommand`` (trail/commands.py) for every command. The trail's
receivers (trail/recording.py) record a change only while an actor is set, so what the portal does by itself
(a sign-in updating a user from the directory, the periodic work) is not an administrative change and costs
one context-variable read.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass


class Through:
    CONSOLE = "console"
    COMMAND = "command"
    REGISTRATION = "registration"


@dataclass(frozen=True)
class Actor:
    name: str  # the administrator's UPN, or "manage.py <command>"
    through: str  # Through.*
    user_id: int | None = None
    os_user: str = ""
    address: str = ""
    detail: str = ""  # the console's method and path (and the action chosen), or the command's arguments


_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("pta_audit_actor", default=None)


def actor_current() -> Actor | None:
    return _actor.get()


@contextlib.contextmanager
def actor_set(actor: Actor) -> Iterator[Actor]:
    """Changes made inside are recorded as ``actor``'s."""
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)
