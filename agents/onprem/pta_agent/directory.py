"""Validate a password against Active Directory: LDAPS simple binds on pooled connections, with failover.

One sign-in checks out one connection exclusively for its bind and its read-as-user (ldap3 connections
are not safe to share, and the REUSABLE strategy's rebind rebinds the whole pool). ldap3 is synchronous:
the async entry point runs it in a thread pool.

With a service account the agent also changes expired (532) and must-change (773) passwords: a user in those
states cannot bind, so the change is a modify of unicodePwd (delete the current value, add the new one) on a
connection bound as the service account (AD gives every account the Change Password right; anonymous is
refused). It is a change, never an administrative reset: without the current password nothing is sent.

When the portal asks (Request.groups), a success also carries the user's transitive groups, read on the same
connection: AD's tokenGroups (the SIDs of every group the user is in, nested ones and the primary group included,
computed by the DC) on the user's entry, then one search that names them (objectGUID, sAMAccountName, DN). The
in-chain matching rule (1.2.840.113556.1.4.1941) gives the same groups but walks the directory's groups on every
sign-in (docs/agent.md, "Groups", has both measured).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import math
import queue
import re
import ssl
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import ldap3
import pta_protocol as protocol
from ldap3.core import exceptions as ldap_exceptions
from ldap3.utils.conv import escape_filter_chars
from pta_protocol import Group, Outcome, groups_within_budget, outcome_for_ad_subcode

logger = logging.getLogger(__name__)

INVALID_CREDENTIALS_RESULT = 49
INVALID_DN_SYNTAX_RESULT = 34
MAX_INPUT_CHARS = 1024
USER_ATTRIBUTES = ["objectGUID", "displayName", "mail", "userPrincipalName"]
STATE_ATTRIBUTES = ["objectGUID", "userPrincipalName", "userAccountControl", "accountExpires",
                    "msDS-User-Account-Control-Computed"]
UF_ACCOUNTDISABLE = 0x0002
UF_LOCKOUT = 0x0010
NEVER_EXPIRES = 0x7FFFFFFFFFFFFFFF
GROUP_ATTRIBUTES = ["objectGUID", "sAMAccountName", "objectSid"]
SIDS_PER_SEARCH = 200  # an OR of this many objectSid terms stays a modest filter; more groups take more searches
FILETIME_EPOCH_OFFSET = 116444736000000000  # 100 ns intervals from 1601-01-01 to 1970-01-01
AD_DATA_CODE = re.compile(r"\bdata ([0-9a-fA-F]+)\b")
# A refused modify starts with AD's Win32 error: "0000052D: Constraint violation - …".
AD_ERROR_CODE = re.compile(r"^\s*([0-9a-fA-F]{8})\b")
CONSTRAINT_VIOLATION_RESULT = 19
BUSY_RESULTS = (51, 52)  # busy, unavailable: the DC did nothing, another one may
WRONG_CURRENT_PASSWORD = "56"  # ERROR_INVALID_PASSWORD: the deleted value is not the current password
PASSWORD_RESTRICTION = "52d"  # ERROR_PASSWORD_RESTRICTION: complexity, length, history or minimum age
# Samba names the rule it applied; Windows AD says only 52D ("policy").
REFUSAL_REASONS = (("too short", "too_short"), ("complexity", "complexity"), ("already used", "history"),
                   ("history", "history"), ("too young", "too_young"), ("minimum password age", "too_young"))
# Bound when an Alternate ID matches no account, so that a missing account costs the same time as a bad password.
NO_SUCH_ACCOUNT_DN_PREFIX = "CN=pta-agent-no-such-account"

# A socket, TLS or timeout failure: the DC did not judge the password. rebind() reports a connection the
# server closed as LDAPBindError, hence that one here too (with raise_exceptions=False a refused bind is a
# False return, never an exception).
TRANSPORT_ERRORS = (
    ldap_exceptions.LDAPCommunicationError,
    ldap_exceptions.LDAPResponseTimeoutError,
    ldap_exceptions.LDAPStartTLSError,
    ldap_exceptions.LDAPBindError,
    ldap_exceptions.LDAPSSLConfigurationError,
    ssl.SSLError,
    OSError,
)

T = TypeVar("T")


@dataclass(frozen=True)
class DirectoryUser:
    object_guid: str = ""
    display_name: str = ""
    mail: str = ""
    upn: str = ""
    dn: str = ""  # where the groups are read; not sent to the portal

    def as_dict(self) -> dict[str, str]:
        return {"object_guid": self.object_guid, "display_name": self.display_name, "mail": self.mail,
                "upn": self.upn}


@dataclass(frozen=True)
class Verdict:
    """The directory's answer about one sign-in."""

    outcome: Outcome
    ad_subcode: str = ""
    user: DirectoryUser | None = None
    detail: str = ""
    dc: str = ""
    # The user's transitive groups when asked for and read; None: not asked, or could not be read.
    groups: list[Group] | None = None
    groups_truncated: bool = False


@dataclass(frozen=True)
class DirectoryOptions:
    ldap_urls: list[str]
    ca_file: str = ""
    login_attribute: str = "userPrincipalName"
    base_dn: str = ""
    service_account: str = ""
    service_password: str = field(default="", repr=False)
    pool_size: int = 8
    connect_timeout_seconds: float = 5.0
    receive_timeout_seconds: float = 5.0
    workers: int = 32
    read_groups: bool = True  # false: the agent announces no "groups" capability and reads none

    @property
    def uses_alternate_id(self) -> bool:
        return self.login_attribute.lower() != "userprincipalname"


class DirectoryUnreachable(Exception):
    """This DC could not judge the password (network, TLS, timeout, busy): try the next one."""


class _BrokenConnection(Exception):
    """A transport failure on one connection (it has been closed)."""


class _ChangeUnanswered(Exception):
    """The change was sent but no answer came: it may have happened, so no other DC may be asked."""


def input_refusal(username: str, password: str) -> str:
    """Why a username/password pair must not reach a bind at all ("" when it may)."""
    if not username.strip():
        return "empty_username"  # rebind(user="") would keep the previous user bound
    if refusal := protocol.password_refusal(password):
        # What the portal checked too when the password reached it; sealed in the browser, only this agent can.
        return refusal
    if len(username) > MAX_INPUT_CHARS:
        return "too_long"
    if any(unicodedata.category(ch) == "Cc" for ch in username):
        return "control_characters"  # NUL and friends: truncation and injection tricks
    return ""


def ad_subcode(message: str) -> str:
    """'… AcceptSecurityContext error, data 52e, v1db1' → '52e'."""
    match = AD_DATA_CODE.search(message or "")
    return match.group(1).lower() if match else ""


def guid_from_bytes(raw: bytes) -> str:
    """AD stores objectGUID little-endian in its first three fields; the canonical form reads them swapped."""
    return str(uuid.UUID(bytes_le=bytes(raw))) if len(raw) == 16 else ""


class ConnectionPool:
    """At most `size` persistent connections to one DC; each is checked out by one sign-in at a time."""

    def __init__(self, url: str, *, size: int, opener: Callable[[], ldap3.Connection]):
        self.url = url
        self._opener = opener
        self._idle: queue.LifoQueue[ldap3.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    def run(self, attempt: Callable[[ldap3.Connection], T], *, deadline: float) -> T:
        """Run attempt on a pooled connection; a transport failure there is retried once on a fresh one."""
        if not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise DirectoryUnreachable(f"{self.url}: every connection is busy")
        try:
            connection, reused = self._take(fresh=False)
            try:
                return self._attempt_on(connection, attempt)
            except _BrokenConnection as exc:
                if not reused:
                    raise DirectoryUnreachable(f"{self.url}: {exc}") from exc
                logger.info("pooled connection to %s broke (%s); retrying on a fresh one", self.url, exc)
            connection, _ = self._take(fresh=True)
            try:
                return self._attempt_on(connection, attempt)
            except _BrokenConnection as exc:
                raise DirectoryUnreachable(f"{self.url}: {exc}") from exc
        finally:
            self._slots.release()

    def _attempt_on(self, connection: ldap3.Connection, attempt: Callable[[ldap3.Connection], T]) -> T:
        try:
            result = attempt(connection)
        except TRANSPORT_ERRORS as exc:
            self._close(connection)
            raise _BrokenConnection(str(exc) or type(exc).__name__) from exc
        except BaseException:
            self._close(connection)  # its state is unknown: never hand it to the next sign-in
            raise
        self._idle.put(connection)
        return result

    def close_all(self) -> None:
        while True:
            try:
                self._close(self._idle.get_nowait())
            except queue.Empty:
                return

    def _take(self, *, fresh: bool) -> tuple[ldap3.Connection, bool]:
        if not fresh:
            try:
                return self._idle.get_nowait(), True
            except queue.Empty:
                pass
        try:
            return self._opener(), False
        except TRANSPORT_ERRORS as exc:
            raise DirectoryUnreachable(f"{self.url}: {exc}") from exc

    @staticmethod
    def _close(connection: ldap3.Connection) -> None:
        try:
            connection.unbind()
        except Exception:  # noqa: S110 - closing a broken connection may fail again; it is gone either way
            pass


class DirectoryValidator:
    """Checks passwords against the DCs in order (failover); a DC fault is never reported as a bad password."""

    def __init__(self, options: DirectoryOptions):
        self.options = options
        self._tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=options.ca_file or None)  # never CERT_NONE
        self._user_pools = {url: ConnectionPool(url, size=options.pool_size, opener=self._opener(url))
                            for url in options.ldap_urls}
        self._service_pools = {
            url: ConnectionPool(url, size=max(1, options.pool_size // 2), opener=self._service_opener(url))
            for url in options.ldap_urls
        } if options.service_account else {}
        # Password changes write: their own few service-account connections, the only ones not read-only.
        self._change_pools = {
            url: ConnectionPool(url, size=max(1, options.pool_size // 4),
                                opener=self._service_opener(url, read_only=False))
            for url in options.ldap_urls
        } if self.can_change_passwords else {}
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=options.workers,
                                                               thread_name_prefix="ldap")

    @property
    def can_read_groups(self) -> bool:
        """Groups are named by a search under the base DN."""
        return bool(self.options.read_groups and self.options.base_dn)

    @property
    def can_change_passwords(self) -> bool:
        """A service account (with its password) and a search base: what a password change needs."""
        return bool(self.options.service_account and self.options.service_password and self.options.base_dn)

    # --- entry points -------------------------------------------------------------------------------------

    async def validate_async(self, username: str, password: str, *, deadline: float, groups: bool = False) -> Verdict:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(self.validate, username, password, deadline, groups=groups))

    def validate(self, username: str, password: str, deadline: float | None = None, *,
                 groups: bool = False) -> Verdict:
        deadline = time.monotonic() + 30.0 if deadline is None else deadline
        refusal = input_refusal(username, password)
        if refusal:
            return Verdict(Outcome.INVALID_CREDENTIALS, detail=refusal)
        password_bytes = password.encode("utf-8")  # bytes: ldap3 would SASLprep a str, AD does not
        failures = []
        for url in self.options.ldap_urls:
            if time.monotonic() >= deadline:
                return Verdict(Outcome.AGENT_TIMEOUT, detail="deadline passed before a DC answered")
            try:
                return self._validate_on(url, username, password_bytes, deadline,
                                         groups=groups and self.can_read_groups)
            except DirectoryUnreachable as exc:
                logger.warning("DC %s unavailable: %s", url, exc)
                failures.append(str(exc))
        return Verdict(Outcome.DIRECTORY_UNAVAILABLE, detail="; ".join(failures)[:500])

    async def account_state_async(self, upn: str, *, deadline: float, groups: bool = False) -> Verdict:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor,
                                          functools.partial(self.account_state, upn, deadline, groups=groups))

    def account_state(self, upn: str, deadline: float | None = None, *, groups: bool = False) -> Verdict:
        """Whether the account may sign in now, without its password: read with the service account (disabled,
        expired, locked), failing over like a bind. SUCCESS carries the account's objectGUID and UPN."""
        deadline = time.monotonic() + 30.0 if deadline is None else deadline
        if not (self.options.service_account and self.options.base_dn):
            return Verdict(Outcome.AGENT_ERROR, detail="no_service_account")
        if input_refusal(upn, "-"):
            return Verdict(Outcome.INVALID_CREDENTIALS, detail="invalid_name")
        failures = []
        for url in self.options.ldap_urls:
            if time.monotonic() >= deadline:
                return Verdict(Outcome.AGENT_TIMEOUT, detail="deadline passed before a DC answered")
            try:
                return self._service_pools[url].run(
                    functools.partial(self._read_state, url=url, upn=upn, groups=groups and self.can_read_groups),
                    deadline=deadline)
            except DirectoryUnreachable as exc:
                logger.warning("DC %s unavailable: %s", url, exc)
                failures.append(str(exc))
        return Verdict(Outcome.DIRECTORY_UNAVAILABLE, detail="; ".join(failures)[:500])

    async def change_password_async(self, username: str, current: str, new: str, *, deadline: float,
                                    groups: bool = False) -> Verdict:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(self.change_password, username, current, new, deadline, groups=groups))

    def change_password(self, username: str, current: str, new: str, deadline: float | None = None, *,
                        groups: bool = False) -> Verdict:
        """Change an expired or must-change password: PASSWORD_CHANGED (with the user, read after a bind with
        the new password), INVALID_CREDENTIALS (the current password is wrong: AD 56), PASSWORD_REJECTED (AD's
        policy, 52D, with its reason in ``detail``), or DIRECTORY_UNAVAILABLE. A DC is failed over only before
        the change reached one."""
        deadline = time.monotonic() + 30.0 if deadline is None else deadline
        if not self.can_change_passwords:
            return Verdict(Outcome.AGENT_ERROR, detail="no_service_account")
        if refusal := input_refusal(username, current):
            return Verdict(Outcome.INVALID_CREDENTIALS, detail=refusal)  # never an empty delete: that is a reset
        if refusal := input_refusal(username, new):
            return Verdict(Outcome.PASSWORD_REJECTED, detail=refusal)
        failures = []
        for url in self.options.ldap_urls:
            if time.monotonic() >= deadline:
                return Verdict(Outcome.AGENT_TIMEOUT, detail="deadline passed before a DC answered")
            try:
                verdict, dn = self._change_pools[url].run(
                    functools.partial(self._change_on, url=url, username=username, current=current, new=new),
                    deadline=deadline)
            except DirectoryUnreachable as exc:
                logger.warning("DC %s unavailable: %s", url, exc)
                failures.append(str(exc))
                continue
            except _ChangeUnanswered as exc:
                logger.warning("DC %s did not answer a password change: %s", url, exc)
                return Verdict(Outcome.DIRECTORY_UNAVAILABLE, detail="change_unanswered", dc=url)
            if verdict.outcome is Outcome.PASSWORD_CHANGED:
                return self._signed_in_after_change(url, dn, new, deadline, groups=groups and self.can_read_groups)
            return verdict
        return Verdict(Outcome.DIRECTORY_UNAVAILABLE, detail="; ".join(failures)[:500])

    def _change_on(self, connection: ldap3.Connection, url: str, username: str, current: str,
                   new: str) -> tuple[Verdict, str]:
        dn = self._find_dn(connection, username)  # by the login attribute (userPrincipalName), filter-escaped
        if dn is None:
            return Verdict(Outcome.INVALID_CREDENTIALS, detail="no_account", dc=url), ""
        # Delete the current value, add the new one: AD's user change (a replace would be an admin reset).
        changes = {"unicodePwd": [(ldap3.MODIFY_DELETE, [ad_password_value(current)]),
                                  (ldap3.MODIFY_ADD, [ad_password_value(new)])]}
        try:
            connection.modify(dn, changes)
        except TRANSPORT_ERRORS as exc:
            raise _ChangeUnanswered(str(exc) or type(exc).__name__) from exc
        return change_verdict(dict(connection.result or {}), url=url), dn

    def _signed_in_after_change(self, url: str, dn: str, new: str, deadline: float, *, groups: bool) -> Verdict:
        """The user cannot be read as themselves before the change: bind with the new password on the DC that
        changed it (no replication to wait for), which also proves the change, and read the user as a
        sign-in does."""
        try:
            verdict = self._user_pools[url].run(
                lambda connection: self._bind_and_read(connection, url, dn, new.encode("utf-8"), by_dn=True,
                                                       groups=groups),
                deadline=deadline)
        except DirectoryUnreachable as exc:
            logger.warning("password changed on %s, but the bind with the new one failed: %s", url, exc)
            return Verdict(Outcome.DIRECTORY_UNAVAILABLE, detail="changed; the sign-in that follows failed", dc=url)
        if verdict.outcome is Outcome.SUCCESS:
            return dataclasses.replace(verdict, outcome=Outcome.PASSWORD_CHANGED)
        return Verdict(verdict.outcome, ad_subcode=verdict.ad_subcode, detail="changed", dc=url)

    def _read_state(self, connection: ldap3.Connection, url: str, upn: str, groups: bool = False) -> Verdict:
        search_filter = f"(&(objectCategory=person)(objectClass=user)(userPrincipalName={escape_filter_chars(upn)}))"
        connection.search(self.options.base_dn, search_filter, search_scope=ldap3.SUBTREE,
                          attributes=STATE_ATTRIBUTES, size_limit=2)
        entries = _entries(connection)
        if len(entries) != 1:
            return Verdict(Outcome.INVALID_CREDENTIALS, detail="no_account" if not entries else "ambiguous", dc=url)
        raw = entries[0].get("raw_attributes", {})
        control = _number(_first(raw, "userAccountControl"))
        computed = _number(_first(raw, "msDS-User-Account-Control-Computed"))
        expires = _number(_first(raw, "accountExpires"))
        if control & UF_ACCOUNTDISABLE:
            outcome = Outcome.ACCOUNT_DISABLED
        elif 0 < expires < NEVER_EXPIRES and expires <= _filetime_now():
            outcome = Outcome.ACCOUNT_EXPIRED
        elif computed & UF_LOCKOUT:  # computed by the DC: a lockout whose duration has passed is not one
            outcome = Outcome.ACCOUNT_LOCKED
        else:
            outcome = Outcome.SUCCESS
        user = DirectoryUser(object_guid=guid_from_bytes(_first(raw, "objectGUID")),
                             upn=_text(_first(raw, "userPrincipalName")), dn=entries[0]["dn"])
        if groups and outcome is Outcome.SUCCESS:
            return self._with_groups(connection, Verdict(outcome, user=user, dc=url))
        return Verdict(outcome, user=user, dc=url)

    def reachable(self) -> dict[str, bool]:
        """Whether each DC accepts a verified TLS connection now (used by heartbeats and `status`)."""
        return {url: self._probe(url) for url in self.options.ldap_urls}

    async def reachable_async(self) -> dict[str, bool]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.reachable)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        for pool in [*self._user_pools.values(), *self._service_pools.values(), *self._change_pools.values()]:
            pool.close_all()

    # --- one DC -------------------------------------------------------------------------------------------

    def _validate_on(self, url: str, username: str, password: bytes, deadline: float, *, groups: bool) -> Verdict:
        if not self.options.uses_alternate_id:
            return self._user_pools[url].run(
                lambda connection: self._bind_and_read(connection, url, username, password, by_dn=False,
                                                       groups=groups),
                deadline=deadline)
        found = self._service_pools[url].run(lambda connection: self._find_dn(connection, username),
                                             deadline=deadline)
        if found is None:
            self._user_pools[url].run(lambda connection: self._bind(connection, self._no_such_dn(), password),
                                      deadline=deadline)
            return Verdict(Outcome.INVALID_CREDENTIALS, detail="no_account", dc=url)
        return self._user_pools[url].run(
            lambda connection: self._bind_and_read(connection, url, found, password, by_dn=True, groups=groups),
            deadline=deadline)

    def _bind_and_read(self, connection: ldap3.Connection, url: str, name: str, password: bytes, *,
                       by_dn: bool, groups: bool = False) -> Verdict:
        result = self._bind(connection, name, password)
        code = result.get("result")
        if code == 0:
            user = self._read_user_by_dn(connection, name) if by_dn else self._read_user_by_upn(connection, name)
            verdict = Verdict(Outcome.SUCCESS, user=user or DirectoryUser(upn=name), dc=url)
            return self._with_groups(connection, verdict) if groups else verdict
        if code == INVALID_CREDENTIALS_RESULT:
            subcode = ad_subcode(result.get("message", ""))
            return Verdict(outcome_for_ad_subcode(subcode), ad_subcode=subcode, dc=url)
        if code == INVALID_DN_SYNTAX_RESULT:
            return Verdict(Outcome.INVALID_CREDENTIALS, detail="invalid_name", dc=url)  # names no account
        # busy, unavailable, stronger auth required…: the DC did not judge the password, so the next one may.
        raise DirectoryUnreachable(f"{url}: bind answered {code} {result.get('description', '')}")

    @staticmethod
    def _bind(connection: ldap3.Connection, name: str, password: bytes) -> dict:
        connection.rebind(user=name, password=password, read_server_info=False)  # no schema re-read per bind
        return dict(connection.result or {})

    def _find_dn(self, connection: ldap3.Connection, username: str) -> str | None:
        """The one account whose login attribute is username (escaped: it is attacker-typed)."""
        attribute = self.options.login_attribute
        search_filter = f"(&(objectCategory=person)(objectClass=user)({attribute}={escape_filter_chars(username)}))"
        connection.search(self.options.base_dn, search_filter, search_scope=ldap3.SUBTREE,
                          attributes=["objectGUID"], size_limit=2)
        entries = _entries(connection)
        if len(entries) != 1:
            if len(entries) > 1:
                logger.warning("%s matches more than one account; refusing (fix the directory)", attribute)
            return None
        return entries[0]["dn"]

    def _with_groups(self, connection: ldap3.Connection, verdict: Verdict) -> Verdict:
        """The verdict with the user's groups, read on this connection (as the user after their bind, or as the
        service account). Groups that cannot be read leave the verdict as it was (groups None): the sign-in
        stands, and the portal says the groups are unknown rather than empty."""
        dn = verdict.user.dn if verdict.user else ""
        if not dn:
            return verdict
        found = self.read_groups(connection, dn)
        if found is None:
            return verdict
        kept, truncated = groups_within_budget(found)
        return dataclasses.replace(verdict, groups=kept, groups_truncated=truncated)

    def read_groups(self, connection: ldap3.Connection, dn: str) -> list[Group] | None:
        """Every group the account at ``dn`` is in, transitively: tokenGroups (one base read: the DC expands the
        nesting and adds the primary group), then the groups of those SIDs by objectSid under the base DN (SIDs
        outside it, e.g. another forest's, are left out). Sorted by name; None when the DC did not give them."""
        connection.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["tokenGroups"])
        entries = _entries(connection)
        if not entries:
            logger.warning("tokenGroups of %s could not be read: %s", dn, (connection.result or {}).get("description"))
            return None
        sids = [bytes(sid) for key, values in entries[0].get("raw_attributes", {}).items()
                if key.lower() == "tokengroups" for sid in values]
        groups: dict[str, Group] = {}
        for start in range(0, len(sids), SIDS_PER_SEARCH):
            terms = "".join(f"(objectSid={escape_filter_chars(sid)})" for sid in sids[start:start + SIDS_PER_SEARCH])
            connection.search(self.options.base_dn, f"(&(objectClass=group)(|{terms}))", search_scope=ldap3.SUBTREE,
                              attributes=GROUP_ATTRIBUTES)
            if (connection.result or {}).get("result") not in (0, None):
                logger.warning("the groups of %s could not be named: %s", dn,
                               (connection.result or {}).get("description"))
                return None
            for entry in _entries(connection):
                raw = entry.get("raw_attributes", {})
                guid = guid_from_bytes(_first(raw, "objectGUID"))
                if guid:
                    groups[guid] = Group(id=guid, name=_text(_first(raw, "sAMAccountName")), dn=entry["dn"])
        return sorted(groups.values(), key=lambda group: (group["name"].lower(), group["id"]))

    def _read_user_by_upn(self, connection: ldap3.Connection, upn: str) -> DirectoryUser | None:
        search_filter = f"(userPrincipalName={escape_filter_chars(upn)})"
        user = self._read_one(connection, self.options.base_dn, search_filter, ldap3.SUBTREE)
        if user is None:
            # An implicit UPN (sAMAccountName@dns-domain) binds but is not stored: ask who we are bound as.
            who = connection.extend.standard.who_am_i() or ""
            account = who.split("\\", 1)[1] if "\\" in who else ""
            if account:
                search_filter = f"(sAMAccountName={escape_filter_chars(account)})"
                user = self._read_one(connection, self.options.base_dn, search_filter, ldap3.SUBTREE)
        return user

    def _read_user_by_dn(self, connection: ldap3.Connection, dn: str) -> DirectoryUser | None:
        return self._read_one(connection, dn, "(objectClass=*)", ldap3.BASE)

    @staticmethod
    def _read_one(connection: ldap3.Connection, base: str, search_filter: str, scope) -> DirectoryUser | None:
        if not base:
            return None
        connection.search(base, search_filter, search_scope=scope, attributes=USER_ATTRIBUTES, size_limit=1)
        entries = _entries(connection)
        if not entries:
            return None
        raw = entries[0].get("raw_attributes", {})
        return DirectoryUser(
            object_guid=guid_from_bytes(_first(raw, "objectGUID")),
            display_name=_text(_first(raw, "displayName")),
            mail=_text(_first(raw, "mail")),
            upn=_text(_first(raw, "userPrincipalName")),
            dn=entries[0].get("dn", ""),
        )

    def _no_such_dn(self) -> str:
        return f"{NO_SUCH_ACCOUNT_DN_PREFIX}-{uuid.uuid4().hex},{self.options.base_dn}"

    # --- connections --------------------------------------------------------------------------------------

    def _server(self, url: str) -> ldap3.Server:
        return ldap3.Server(url, get_info=ldap3.NONE, tls=self._tls,
                            connect_timeout=self.options.connect_timeout_seconds)

    def _opener(self, url: str) -> Callable[[], ldap3.Connection]:
        return lambda: self._open(url)

    def _service_opener(self, url: str, *, read_only: bool = True) -> Callable[[], ldap3.Connection]:
        def open_as_service() -> ldap3.Connection:
            connection = self._open(url, read_only=read_only)
            name, password = self.options.service_account, self.options.service_password.encode("utf-8")
            result = self._bind(connection, name, password)
            if result.get("result") != 0:
                connection.unbind()
                raise DirectoryUnreachable(
                    f"{url}: the service account {name} cannot bind ({result.get('description')}"
                    f" {ad_subcode(result.get('message', ''))}); check directory.service_account")
            return connection
        return open_as_service

    def _open(self, url: str, *, read_only: bool = True) -> ldap3.Connection:
        # A Server per connection: ldap3 skips a Server's address for 5 s after one failed connect ("invalid
        # server address") and keeps its DNS answer for 5 min, so a shared one would refuse a DC that is back.
        server = self._server(url)
        connection = ldap3.Connection(
            server, auto_bind=ldap3.AUTO_BIND_NONE, client_strategy=ldap3.SYNC, raise_exceptions=False,
            # ldap3 packs this into SO_RCVTIMEO as an integer: a float would fail every connection.
            receive_timeout=max(1, math.ceil(self.options.receive_timeout_seconds)), auto_referrals=False,
            read_only=read_only)
        connection.open(read_server_info=False)
        if not server.ssl and not connection.start_tls(read_server_info=False):
            connection.unbind()  # never send a password in clear text
            raise DirectoryUnreachable(f"{url}: StartTLS refused")
        return connection

    def _probe(self, url: str) -> bool:
        try:
            self._open(url).unbind()
        except Exception as exc:  # whatever the failure, the answer is "does not answer", never a crash
            logger.debug("DC %s does not answer: %s", url, exc)
            return False
        return True


def ad_password_value(password: str) -> bytes:
    """unicodePwd as AD takes it: the password in double quotes, UTF-16LE (never SASLprep'd)."""
    return f'"{password}"'.encode("utf-16-le")


def ad_error_code(message: str) -> str:
    """'0000052D: Constraint violation - …' → '52d'."""
    match = AD_ERROR_CODE.match(message or "")
    return (match.group(1).lstrip("0") or "0").lower() if match else ""


def refusal_reason(message: str) -> str:
    """Why AD's policy refused a new password: 'history: the password was already used …', or 'policy'."""
    text = (message or "").split("check_password_restrictions:", 1)[-1] if "check_password_restrictions:" in (
        message or "") else ""
    text = text.strip()
    lowered = text.lower()
    reason = next((code for phrase, code in REFUSAL_REASONS if phrase in lowered), "policy")
    return f"{reason}: {text}"[:200] if text else reason


def change_verdict(result: dict, *, url: str) -> Verdict:
    """The outcome of AD's answer to a password change (delete/add of unicodePwd)."""
    code, message = result.get("result"), str(result.get("message") or "")
    if code == 0:
        return Verdict(Outcome.PASSWORD_CHANGED, dc=url)
    if code == CONSTRAINT_VIOLATION_RESULT:
        subcode = ad_error_code(message)
        if subcode == WRONG_CURRENT_PASSWORD:
            return Verdict(Outcome.INVALID_CREDENTIALS, ad_subcode=subcode, dc=url)
        return Verdict(Outcome.PASSWORD_REJECTED, ad_subcode=subcode, detail=refusal_reason(message), dc=url)
    if code == INVALID_CREDENTIALS_RESULT:
        subcode = ad_subcode(message)
        return Verdict(outcome_for_ad_subcode(subcode), ad_subcode=subcode, dc=url)
    if code in BUSY_RESULTS:
        raise DirectoryUnreachable(f"{url}: change answered {code} {result.get('description', '')}")
    return Verdict(Outcome.AGENT_ERROR, ad_subcode=ad_error_code(message),
                   detail=f"the DC refused the change: {code} {result.get('description', '')}"[:200], dc=url)


def _entries(connection: ldap3.Connection) -> list[dict]:
    return [item for item in (connection.response or []) if item.get("type") == "searchResEntry"]


def _first(raw: dict, name: str) -> bytes:
    for key, values in raw.items():
        if key.lower() == name.lower() and values:
            return bytes(values[0])
    return b""


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _number(value: bytes) -> int:
    try:
        return int(value or b"0")
    except ValueError:
        return 0


def _filetime_now() -> int:
    return int(time.time() * 10_000_000) + FILETIME_EPOCH_OFFSET
