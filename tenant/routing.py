"""Which tenant a domain routes to, remembered by each portal process (docs/architecture.md, "A sign-in"), and
with it what the sign-in reads per tenant at every step (its company branding: branding/selectors.py; its named
locations, parsed: tenant/selectors.py).

Every sign-in step asks (the username page, then the password POST), and the answer changes only when a domain
or a tenant (or a branding, or a location) is saved or deleted. So a process that serves sign-ins keeps the routes it
has read, and forgets all of them whenever any domain, tenant, branding or location changes, wherever the change was
made:

- in the process that made it: its signal (tenant/signals.py), once the transaction commits;
- on every node, in production: a message on the Redis channel ``<PTA_REDIS_PREFIX>:routing``, which each node's
  listener thread receives. Routes are kept only while that listener is subscribed, and forgotten each time it
  subscribes again, so a change made while it was away is never missed;
- in the embedded profile's other processes (``manage.py``, on the same machine): a stamp file in the state folder,
  replaced on every change and looked at (one ``stat``) before the routes are used;
- and at the latest after PTA_ROUTING_CACHE_SECONDS, should a message be lost all the same (a connection that died
  without a word).

Only a process that started the cache (``routes_start``, config/asgi.py) keeps routes: a Celery worker, a management
command or the tests read the database every time. A change by ``QuerySet.update()`` sends no signal: change domains
and tenants through ``save()`` and ``delete()`` (the services and the admin do).
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings

from tenant.models import Tenant

logger = logging.getLogger(__name__)
# Unknown domains are remembered too (any name can be typed): past this many routes, all are forgotten.
MAX_ROUTES = 10_000
LISTENER_RETRY_SECONDS = 1.0
T = TypeVar("T")


class Routes:
    """This process's routes: domain → tenant (None: no tenant has it verified)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # ("domain", name) → its tenant; (another kind, key) → what ``kept`` read for it.
        self._routes: dict[Hashable, tuple[Any, float]] = {}
        self._generation = 0  # moves on with every change: a read that began before it is not kept
        self.kept = False  # whether this process keeps routes now (started, and in production subscribed)
        self._stamp: Path | None = None  # the embedded profile's stamp file, and what it was when last looked at
        self._stamp_seen: tuple[int, int, int] | None = None

    def tenant(self, domain: str, read: Callable[[str], Tenant | None]) -> Tenant | None:
        """The tenant ``domain`` routes to: remembered, or ``read(domain)`` from the database. Each caller gets its
        own copy of the tenant: one that changes an attribute changes nothing for the others."""
        return self.remembered(("domain", domain), lambda: read(domain))

    def remembered(self, key: Hashable, read: Callable[[], T]) -> T:
        """What ``read()`` answers for ``key``, remembered like a route (and forgotten with the routes): for a
        read that changes only when a domain, a tenant, a branding or a location is saved or deleted. Each caller
        gets its own (shallow) copy."""
        if not self.kept:
            return read()
        if self._stamp is not None:
            self._stamp_check()
        now = time.monotonic()
        route = self._routes.get(key)
        if route is not None and route[1] > now:
            return copy.copy(route[0])
        generation = self._generation
        value = read()
        with self._lock:
            if self.kept and generation == self._generation:  # no change since the read began
                if len(self._routes) >= MAX_ROUTES:
                    self._routes.clear()
                self._routes[key] = (copy.copy(value), now + settings.PTA_ROUTING_CACHE_SECONDS)
        return value

    def forget(self) -> None:
        with self._lock:
            self._generation += 1
            self._routes.clear()

    def keep(self, kept: bool) -> None:
        """Start (or stop) keeping routes; either way, what was kept is forgotten."""
        with self._lock:
            self.kept = kept
            self._generation += 1
            self._routes.clear()

    # --- the embedded profile's stamp file -------------------------------------------------------------------

    def stamp_follow(self, path: Path | None) -> None:
        """Follow this stamp file (None: none)."""
        self._stamp, self._stamp_seen = path, (_stamp_state(path) if path is not None else None)

    def _stamp_check(self) -> None:
        assert self._stamp is not None  # only called when following one
        state = _stamp_state(self._stamp)
        if state != self._stamp_seen:
            self._stamp_seen = state
            self.forget()


routes = Routes()


def _stamp_path() -> Path:
    return Path(settings.STATE_DIR) / "routing.stamp"


def _stamp_state(path: Path) -> tuple[int, int, int] | None:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_ino, found.st_mtime_ns, found.st_size


def _stamp_replace(path: Path) -> None:
    """A new file each time (a new inode), so a change within the clock's resolution is still seen."""
    fresh = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fresh.write_text(uuid.uuid4().hex)
    os.replace(fresh, path)


# --- production: one message to every node ----------------------------------------------------------------

def _channel() -> str:
    return f"{settings.PTA_REDIS_PREFIX}:routing"


_publisher = None


def _publish() -> None:
    global _publisher
    if _publisher is None:
        import redis

        from config.redis import redis_retry_options

        _publisher = redis.Redis.from_url(settings.PTA_REDIS_URL, socket_connect_timeout=2, socket_timeout=5,
                                          **redis_retry_options())
    _publisher.publish(_channel(), b"changed")


def _listen() -> None:
    """Forget the routes on every message; keep routes only while subscribed (a message sent while this was away
    is lost, so what was kept before is forgotten when it subscribes again)."""
    import redis

    # No read timeout (redis-py's default is 5 s): a quiet channel is not a broken one.
    client = redis.Redis.from_url(settings.PTA_REDIS_URL, socket_connect_timeout=2, socket_timeout=None)
    away = False
    while True:
        try:
            with client.pubsub() as subscription:
                subscription.subscribe(_channel())
                for message in subscription.listen():
                    if message["type"] == "subscribe":
                        away = False
                        routes.keep(True)
                    elif message["type"] == "message":
                        routes.forget()
        except Exception as exc:  # noqa: BLE001 - Redis away: read the database meanwhile, and subscribe again
            if not away:
                logger.warning("routing: the change channel is away (%s); routes are read from the database until "
                               "it is back", exc)
            away = True
        routes.keep(False)
        time.sleep(LISTENER_RETRY_SECONDS)


_listener: threading.Thread | None = None


def routes_start() -> None:
    """Keep routes in this process from now on (a portal node, at start-up): in production once its listener
    is subscribed, in the embedded profile at once, following the stamp file."""
    global _listener
    if settings.PTA_REDIS_URL:
        if _listener is None:
            _listener = threading.Thread(target=_listen, name="pta-routing", daemon=True)
            _listener.start()
    else:
        routes.stamp_follow(_stamp_path())
        routes.keep(True)


def routes_changed() -> None:
    """A domain, a tenant or a branding changed (committed): this process forgets its routes now, every other one
    as soon as it hears (production: the channel; embedded: the stamp file)."""
    routes.forget()
    try:
        if settings.PTA_REDIS_URL:
            _publish()
        else:
            _stamp_replace(_stamp_path())
    except Exception:  # noqa: BLE001 - the other processes forget within PTA_ROUTING_CACHE_SECONDS anyway
        logger.exception("routing: could not tell the other processes that a domain or tenant changed")
