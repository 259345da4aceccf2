"""The resilience suite's load driver: sign-ins through the pages, as many browsers at once, while faults happen.

    timeline = Timeline()
    load = LoadRun([node.url], SignInMix(ad_testbed), timeline, workers=16, min_signins=500)
    load.start()
    load.wait_answered(150)            # some steady traffic first
    timeline.fault_begins("agent 1: kill -9")
    ...
    timeline.fault_ends("…")           # the load goes on (tail_seconds) so recovery can be seen
    records = load.join()
    figures = Figures.of(records, timeline, expectation)

A fixed pool of worker threads, each with its own ``httpx.Client`` per node and per source address, pulls from
a bounded work list (at least ``min_signins``, at most ``max_signins``, at most ``max_seconds``). Each sign-in
walks GET /login/, POST username, GET /login/password/, POST password, and is recorded: kind, user, start,
end, status, outcome, connection errors. Every request has a bounded client timeout: a page that does not
answer within it is a hang.

Who signs in, and from where, keeps cloud smart lockout (threshold 5 per account, guesses in flight counted)
out of the measurement without switching it off:

- good sign-ins come from 127.0.0.1, an address where each user signed in before (the warm-up), and at most
  ``MAX_IN_FLIGHT_PER_USER`` of one user are in flight at once (a person does not sign in five times at once;
  a fifth in flight would be refused ``cloud_locked`` by design);
- wrong passwords (for the good users) and unknown users come from 127.0.0.2: the accounts' "unfamiliar"
  bucket, so a wrong guess never locks the user out of 127.0.0.1. After five wrong guesses a user's unfamiliar
  bucket locks (``cloud_locked``, no agent asked): AD sees at most five, far below its own threshold of 10;
- every unknown user is a new name (``nobody-<run>-<n>@domain``, AD knows none): each reaches an agent.
"""

from __future__ import annotations

import collections
import itertools
import re
import secrets
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx

GOOD, WRONG, UNKNOWN = "good", "wrong", "unknown"
KINDS = (GOOD, WRONG, UNKNOWN)
GOOD_ADDRESS = "127.0.0.1"  # where the good users signed in before (familiar)
OTHER_ADDRESS = "127.0.0.2"  # wrong guesses and unknown users: another address, the accounts' other bucket
MAX_IN_FLIGHT_PER_USER = 4  # the tenant's lockout threshold (5) counts guesses in flight: stay below it
DEFAULT_PATTERN = (GOOD, WRONG, GOOD, UNKNOWN)  # half good, a quarter wrong, a quarter unknown
SIGNIN_DEADLINE_SECONDS = 10.0  # PTA_SIGNIN_DEADLINE_SECONDS, the portal's default
# The sign-in walk is four requests; only the last waits for an agent. What the three others and the HTTP round
# trips may add to the deadline on this busy 2-core machine.
ROUND_TRIP_MARGIN_SECONDS = 3.0
CLIENT_TIMEOUT_SECONDS = SIGNIN_DEADLINE_SECONDS + 5.0  # per request: beyond it, a hang
SUCCESS_OUTCOMES = {"success", "mfa_required"}  # a password accepted
STEADY_MIN_GOOD = 20  # "steady" needs at least this many good sign-ins after it, all successful

_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_OUTCOME = re.compile(r'data-outcome="([^"]+)"')
# The transport failing under the client: the node died (kill -9) or refused the connection. Timeouts are not
# among them: those are hangs.
CONNECTION_ERRORS = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError,
                     httpx.CloseError)


def marker_password() -> str:
    """A unique password that can be searched for afterwards, and that AD knows for nobody."""
    return f"Marker-{secrets.token_hex(8)}-pw"


# --- the timeline ------------------------------------------------------------------------------------------


@dataclass
class Timeline:
    """Seconds since the load began (monotonic), and what happened when."""

    t0: float = field(default_factory=time.monotonic)
    events: list[tuple[float, str]] = field(default_factory=list)
    fault_start: float | None = None
    fault_end: float | None = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    def mark(self, what: str) -> float:
        at = self.now()
        self.events.append((at, what))
        return at

    def fault_begins(self, what: str) -> float:
        at = self.mark(what)
        if self.fault_start is None:
            self.fault_start = at
        return at

    def fault_ends(self, what: str) -> float:
        self.fault_end = self.mark(what)
        return self.fault_end

    @property
    def fault_began(self) -> float:
        """fault_start, once the scenario has marked it."""
        assert self.fault_start is not None, "the scenario marked no fault"
        return self.fault_start

    @property
    def fault_ended(self) -> float:
        """fault_end, once the scenario has marked it."""
        assert self.fault_end is not None, "the scenario marked no end to its fault"
        return self.fault_end

    def describe(self) -> str:
        return "; ".join(f"{what} at {at:.1f} s" for at, what in self.events)


# --- one sign-in -------------------------------------------------------------------------------------------


@dataclass
class SignInRecord:
    index: int
    kind: str
    username: str
    start: float = 0.0  # on the timeline
    end: float = 0.0
    node: str = ""  # the node that gave the final answer
    status: int | None = None  # of the final response (None: no answer)
    outcome: str | None = None  # data-outcome / PTA-Outcome
    error: str = ""  # "hang", "connection", "session_lost", "no_csrf", "no_outcome", "no_slot", "driver-…"
    connection_errors: int = 0  # retried on another node
    statuses: tuple[int, ...] = ()  # every response of the walk
    password_seconds: float | None = None  # the password POST alone
    phase: str = "load"  # "load", or "rush"

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def label(self) -> str:
        """What the sign-in ended with: its outcome, or !error, or !http-<status> when a page had no outcome."""
        if self.outcome:
            return self.outcome
        if self.error and self.error != "no_outcome":
            return f"!{self.error}"
        return f"!http-{self.status}"  # a page without an outcome: a 5xx, or anything else unexpected

    @property
    def server_error(self) -> bool:
        return any(status >= 500 for status in self.statuses)

    @property
    def accepted(self) -> bool:
        return self.outcome in SUCCESS_OUTCOMES


@dataclass(frozen=True)
class WorkItem:
    index: int
    kind: str
    username: str  # "" for a good sign-in: the user is chosen when it starts (the least busy)
    password: str


class UserSlots:
    """At most MAX_IN_FLIGHT_PER_USER sign-ins of each good user in flight; a new one takes the least busy."""

    def __init__(self, users: Iterable[str], *, per_user: int = MAX_IN_FLIGHT_PER_USER) -> None:
        self.per_user = per_user
        self.busy = {upn: 0 for upn in users}
        self._free = threading.Condition()

    def acquire(self, *, timeout: float = 30.0) -> str | None:
        deadline = time.monotonic() + timeout
        with self._free:
            while True:
                choice = min(self.busy, key=lambda name: self.busy[name])
                if self.busy[choice] < self.per_user:
                    self.busy[choice] += 1
                    return choice
                left = deadline - time.monotonic()
                if left <= 0 or not self._free.wait(left):
                    return None

    def release(self, upn: str) -> None:
        with self._free:
            self.busy[upn] -= 1
            self._free.notify_all()


class SignInMix:
    """What the n-th sign-in is: its kind (``pattern`` repeated), its user and password."""

    def __init__(self, ad, *, pattern: Iterable[str] = DEFAULT_PATTERN, password: Callable[[], str] = marker_password
                 ) -> None:
        good = {name: user for name, user in ad.users_in_state("good").items() if name != "mallory"}
        self.good = {user["upn"]: user["password"] for user in good.values()}
        self.pattern = tuple(pattern)
        self.password = password
        local, _, self.domain = ad.unknown_user["upn"].partition("@")
        self.unknown_prefix = f"{local}-{secrets.token_hex(3)}"
        self._wrong_targets = itertools.cycle(sorted(self.good))
        self._lock = threading.Lock()
        self.slots = UserSlots(self.good)

    def item(self, index: int, kind: str | None = None) -> WorkItem:
        kind = kind or self.pattern[index % len(self.pattern)]
        if kind == GOOD:
            return WorkItem(index, GOOD, "", "")
        if kind == WRONG:
            with self._lock:
                target = next(self._wrong_targets)
            return WorkItem(index, WRONG, target, self.password())
        return WorkItem(index, UNKNOWN, f"{self.unknown_prefix}-{index}@{self.domain}", self.password())


# --- the walk ----------------------------------------------------------------------------------------------


class Walker:
    """One browser's clients (per node and per source address) and the four-request walk."""

    def __init__(self, *, timeout: float = CLIENT_TIMEOUT_SECONDS,
                 on_response: Callable[[httpx.Response], None] | None = None, verify: str | bool = True) -> None:
        self.timeout = timeout
        self.on_response = on_response
        self.verify = verify  # the CA of an nginx in front (https), as a browser would trust it
        self._clients: dict[tuple[str, str], httpx.Client] = {}

    def client(self, base_url: str, address: str) -> httpx.Client:
        key = (base_url, address)
        if key not in self._clients:
            self._clients[key] = httpx.Client(
                base_url=base_url, follow_redirects=False, timeout=self.timeout,
                transport=httpx.HTTPTransport(local_address=address, verify=self.verify),
                # A browser's Referer: Django's CSRF check asks for one on https.
                headers={"User-Agent": "pta-resilience", "Referer": f"{base_url}/login/"})
        client = self._clients[key]
        client.cookies.clear()  # a new browser session for every sign-in
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def _seen(self, record: SignInRecord, response: httpx.Response) -> httpx.Response:
        record.statuses += (response.status_code,)
        if self.on_response is not None:
            self.on_response(response)
        return response

    def to_password_page(self, client: httpx.Client, record: SignInRecord, username: str) -> str | None:
        """The first three requests; the password form's CSRF token, or None when the walk already ended
        (record filled in)."""
        page = self._seen(record, client.get("/login/"))
        if page.status_code != 200:
            return self._final(record, page)
        token = _CSRF.search(page.text)
        if not token:
            record.error = "no_csrf"
            return self._final(record, page)
        response = self._seen(record, client.post("/login/", data={"username": username,
                                                                   "csrfmiddlewaretoken": token.group(1)}))
        if response.status_code != 302:
            return self._final(record, response)  # e.g. unknown_domain, a form error
        page = self._seen(record, client.get("/login/password/"))
        if page.status_code == 302:
            if not page.headers.get("PTA-Outcome"):  # sent back without a word: the session is gone
                record.error = "session_lost"
            return self._final(record, page)
        token = _CSRF.search(page.text) if page.status_code == 200 else None
        if not token:
            record.error = record.error or ("no_csrf" if page.status_code == 200 else "")
            return self._final(record, page)
        return token.group(1)

    def submit_password(self, client: httpx.Client, record: SignInRecord, token: str, password: str) -> None:
        started = time.monotonic()
        response = self._seen(record, client.post("/login/password/", data={"password": password,
                                                                            "csrfmiddlewaretoken": token}))
        record.password_seconds = time.monotonic() - started
        if response.status_code == 302 and response.headers.get("location", "").startswith("/login/") \
                and not response.headers.get("PTA-Outcome"):
            record.error = "session_lost"
        self._final(record, response)

    @staticmethod
    def _final(record: SignInRecord, response: httpx.Response) -> None:
        record.status = response.status_code
        found = _OUTCOME.search(response.text)
        record.outcome = response.headers.get("PTA-Outcome") or (found.group(1) if found else None)
        if record.outcome is None and not record.error:
            record.error = "no_outcome"
        return None

    def sign_in(self, record: SignInRecord, nodes: list[str], password: str, timeline: Timeline) -> None:
        """The whole walk on the first node of ``nodes``; on a connection error, again from the start on the
        next one (a browser behind a load balancer that moved it). ``nodes`` is reordered: a node that failed
        goes last, as a load balancer's health check would take it out."""
        address = GOOD_ADDRESS if record.kind == GOOD else OTHER_ADDRESS
        for base_url in list(nodes):
            record.start = timeline.now()
            record.statuses, record.error, record.node = (), "", base_url
            record.status = record.outcome = record.password_seconds = None
            try:
                client = self.client(base_url, address)
                token = self.to_password_page(client, record, record.username)
                if token is not None:
                    self.submit_password(client, record, token, password)
                record.end = timeline.now()
                return
            except httpx.TimeoutException:
                record.error, record.end = "hang", timeline.now()
                return
            except CONNECTION_ERRORS:
                record.connection_errors += 1
                record.error, record.end = "connection", timeline.now()
                nodes.remove(base_url)
                nodes.append(base_url)
        # every node refused: the last error stands


# --- the load ----------------------------------------------------------------------------------------------


class LoadRun:
    """A fixed pool of ``workers`` threads signing in until the work list ends: at least ``min_signins``, and
    ``tail_seconds`` past the fault's end (so recovery shows); never more than ``max_signins`` nor longer than
    ``max_seconds``."""

    def __init__(self, node_urls: list[str], mix: SignInMix, timeline: Timeline, *, workers: int = 16,
                 min_signins: int = 500, max_signins: int = 2000, tail_seconds: float = 12.0,
                 max_seconds: float = 150.0, on_response: Callable[[httpx.Response], None] | None = None,
                 verify: str | bool = True) -> None:
        self.node_urls = list(node_urls)
        self.mix = mix
        self.timeline = timeline
        self.workers = workers
        self.min_signins = min_signins
        self.max_signins = max_signins
        self.tail_seconds = tail_seconds
        self.max_seconds = max_seconds
        self.on_response = on_response
        self.verify = verify
        self.records: list[SignInRecord] = []
        self._next = 0
        self._lock = threading.Condition()
        self._threads: list[threading.Thread] = []
        self.faulty = True  # False: no fault is coming, stop at min_signins

    # --- the work list ---

    def _take(self) -> WorkItem | None:
        with self._lock:
            now = self.timeline.now()
            if self._next >= self.max_signins or now > self.max_seconds:
                return None
            if self._next >= self.min_signins:
                end = self.timeline.fault_end
                if not self.faulty or (end is not None and now >= end + self.tail_seconds):
                    return None
            index, self._next = self._next, self._next + 1
        return self.mix.item(index)

    def _done(self, record: SignInRecord) -> None:
        with self._lock:
            self.records.append(record)
            self._lock.notify_all()

    # --- the workers ---

    def _work(self, number: int) -> None:
        walker = Walker(on_response=self.on_response, verify=self.verify)
        # Workers are spread over the nodes; each keeps its own order (a node that failed it goes last).
        nodes = self.node_urls[number % len(self.node_urls):] + self.node_urls[:number % len(self.node_urls)]
        try:
            while (item := self._take()) is not None:
                try:
                    record = run_one(walker, item, self.mix, nodes, self.timeline)
                except Exception as exc:  # noqa: BLE001 - a sign-in the driver could not read: recorded, not lost
                    now = self.timeline.now()
                    record = SignInRecord(item.index, item.kind, item.username, start=now, end=now,
                                          error=f"driver-{type(exc).__name__}")
                self._done(record)
        finally:
            walker.close()

    def start(self) -> LoadRun:
        self.timeline.mark(f"load starts: {self.workers} workers")
        self._threads = [threading.Thread(target=self._work, args=(n,), name=f"signin-{n}", daemon=True)
                         for n in range(self.workers)]
        for thread in self._threads:
            thread.start()
        return self

    def answered(self) -> int:
        with self._lock:
            return len(self.records)

    def wait_answered(self, count: int, *, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.records) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"only {len(self.records)} of {count} sign-ins answered in {timeout} s")
                self._lock.wait(min(left, 1.0))

    def join(self) -> list[SignInRecord]:
        # Bounded: the work list stops by max_seconds; a sign-in is at most four requests of CLIENT_TIMEOUT each
        # (twice, when it moves to another node).
        limit = time.monotonic() + max(0.0, self.max_seconds - self.timeline.now()) + 8 * CLIENT_TIMEOUT_SECONDS
        for thread in self._threads:
            thread.join(max(0.1, limit - time.monotonic()))
        stuck = [thread.name for thread in self._threads if thread.is_alive()]
        if stuck:
            raise AssertionError(f"load workers still running past every bound: {stuck}")
        self.timeline.mark(f"load ends: {len(self.records)} sign-ins")
        with self._lock:
            return sorted(self.records, key=lambda record: record.index)


def run_one(walker: Walker, item: WorkItem, mix: SignInMix, nodes: list[str], timeline: Timeline,
            *, phase: str = "load") -> SignInRecord:
    """One sign-in of the work list (a good one holds one of its user's slots while in flight)."""
    if item.kind != GOOD:
        record = SignInRecord(item.index, item.kind, item.username, phase=phase)
        walker.sign_in(record, nodes, item.password, timeline)
        return record
    upn = mix.slots.acquire()
    if upn is None:
        now = timeline.now()
        return SignInRecord(item.index, GOOD, "", start=now, end=now, error="no_slot", phase=phase)
    try:
        record = SignInRecord(item.index, GOOD, upn, phase=phase)
        walker.sign_in(record, nodes, mix.good[upn], timeline)
        return record
    finally:
        mix.slots.release(upn)


class Rush:
    """``size`` sign-ins whose password POSTs leave at the same instant: each browser first walks to the password
    page (holding its user's slot when it is a good one), then a barrier lets every POST go at once."""

    def __init__(self, node_url: str, mix: SignInMix, timeline: Timeline, *, size: int, first_index: int,
                 label: str = "rush", good_per_user: int = 2, wrong: int = 4) -> None:
        self.node_url, self.mix, self.timeline, self.size, self.label = node_url, mix, timeline, size, label
        self.released = 0.0
        good = min(size, good_per_user * len(mix.good))
        wrong = min(wrong, size - good)
        kinds = [GOOD] * good + [WRONG] * wrong + [UNKNOWN] * (size - good - wrong)
        self.items = [mix.item(first_index + n, kind) for n, kind in enumerate(kinds)]

    def run(self) -> list[SignInRecord]:
        barrier = threading.Barrier(self.size + 1)
        records: list[SignInRecord | None] = [None] * self.size
        threads = [threading.Thread(target=self._one, args=(n, item, barrier, records), daemon=True)
                   for n, item in enumerate(self.items)]
        for thread in threads:
            thread.start()
        try:
            barrier.wait(timeout=60)  # every browser is on its password page
        except threading.BrokenBarrierError:
            pass
        self.released = self.timeline.fault_begins(self.label)
        for thread in threads:
            thread.join(4 * CLIENT_TIMEOUT_SECONDS + 60)
        return [record for record in records if record is not None]

    def _one(self, n: int, item: WorkItem, barrier: threading.Barrier, records: list) -> None:
        walker = Walker()
        upn = self.mix.slots.acquire() if item.kind == GOOD else item.username
        password = self.mix.good.get(upn, item.password) if item.kind == GOOD else item.password
        record = SignInRecord(item.index, item.kind, upn or "", phase="rush")
        try:
            if upn is None:
                record.error = "no_slot"
                barrier.wait(timeout=60)
                return
            address = GOOD_ADDRESS if item.kind == GOOD else OTHER_ADDRESS
            client = walker.client(self.node_url, address)
            try:
                token = walker.to_password_page(client, record, upn)
            except httpx.HTTPError as exc:
                token, record.error = None, f"prewalk-{type(exc).__name__}"
            barrier.wait(timeout=60)
            record.start = self.timeline.now()  # the rush is the POST: the walk before it was at leisure
            if token is None:
                record.end = record.start
                return
            try:
                walker.submit_password(client, record, token, password)
            except httpx.TimeoutException:
                record.error = "hang"
            except CONNECTION_ERRORS:
                record.error, record.connection_errors = "connection", 1
            record.end = self.timeline.now()
        except threading.BrokenBarrierError:
            record.error = record.error or "barrier"
        finally:
            records[n] = record
            walker.close()
            if item.kind == GOOD and upn:
                self.mix.slots.release(upn)


# --- what the records say ----------------------------------------------------------------------------------

NORMAL_OUTCOMES = {
    GOOD: frozenset({"success"}),
    WRONG: frozenset({"invalid_credentials", "cloud_locked"}),
    UNKNOWN: frozenset({"invalid_credentials", "cloud_locked"}),
}


@dataclass(frozen=True)
class Allowance:
    """Outcomes a fault explains: for sign-ins of these kinds that were in flight during [start, end] (seconds on
    the timeline), at most ``limit`` of them."""

    labels: frozenset[str]
    start: float
    end: float
    why: str
    kinds: frozenset[str] = frozenset(KINDS)
    limit: int | None = None

    def covers(self, record: SignInRecord) -> bool:
        return (record.label in self.labels and record.kind in self.kinds
                and record.start <= self.end and record.end >= self.start)


@dataclass
class Figures:
    """One scenario's measurements, and what in them breaks the expectations."""

    signins: int
    workers: int
    seconds: float
    by_kind: dict[str, collections.Counter]
    server_errors: int
    hangs: int
    no_outcome: collections.Counter
    wrongly_accepted: list[SignInRecord]
    over_deadline: list[SignInRecord]
    slowest: float
    p95: float
    connection_errors: int
    good_lost: collections.Counter
    explained: collections.Counter
    unexplained: list[SignInRecord]
    first_good: float | None  # seconds from the fault's end to the first good sign-in answered success
    steady: float | None  # seconds from the fault's end after which every good sign-in started succeeded
    good_after_steady: int

    @classmethod
    def of(cls, records: list[SignInRecord], timeline: Timeline, allowances: Iterable[Allowance] = (), *,
           workers: int, deadline: float = SIGNIN_DEADLINE_SECONDS) -> Figures:
        allowances = list(allowances)
        by_kind = {kind: collections.Counter(r.label for r in records if r.kind == kind) for kind in KINDS}
        answered = [r for r in records if r.status is not None]
        durations = sorted(r.seconds for r in answered) or [0.0]
        used: collections.Counter[str] = collections.Counter()
        explained: collections.Counter[str] = collections.Counter()
        unexplained: list[SignInRecord] = []
        for record in sorted(records, key=lambda r: r.start):
            if record.label in NORMAL_OUTCOMES[record.kind]:
                continue
            for allowance in allowances:
                if allowance.covers(record) and (allowance.limit is None or used[allowance.why] < allowance.limit):
                    used[allowance.why] += 1
                    explained[f"{record.kind} {record.label}: {allowance.why}"] += 1
                    break
            else:
                unexplained.append(record)
        good = sorted((r for r in records if r.kind == GOOD), key=lambda r: r.start)
        first_good, steady, after = _recovery(good, timeline)
        return cls(
            signins=len(records), workers=workers, seconds=max((r.end for r in records), default=0.0),
            by_kind=by_kind, server_errors=sum(r.server_error for r in records),
            hangs=sum(r.error == "hang" for r in records),
            no_outcome=collections.Counter(r.label for r in records if not r.outcome),
            wrongly_accepted=[r for r in records if r.kind != GOOD and r.accepted],
            over_deadline=[r for r in answered if r.seconds > deadline + ROUND_TRIP_MARGIN_SECONDS],
            slowest=durations[-1], p95=durations[int(0.95 * (len(durations) - 1))],
            connection_errors=sum(r.connection_errors for r in records),
            good_lost=collections.Counter(r.label for r in good if r.label != "success"),
            explained=explained, unexplained=unexplained, first_good=first_good, steady=steady,
            good_after_steady=after,
        )

    @property
    def outcomes(self) -> collections.Counter[str]:
        total: collections.Counter[str] = collections.Counter()
        for counts in self.by_kind.values():
            total.update(counts)
        return total

    def good_count(self) -> int:
        return sum(self.by_kind[GOOD].values())

    def problems(self, *, recovery_bound: float | None) -> list[str]:
        """Every broken expectation, in words (empty: the scenario held)."""
        found = []
        if self.server_errors:
            found.append(f"{self.server_errors} sign-in(s) met a 5xx")
        if self.hangs:
            found.append(f"{self.hangs} sign-in(s) hung past the client timeout ({CLIENT_TIMEOUT_SECONDS:.0f} s)")
        if self.no_outcome:
            found.append(f"no definite outcome: {_counts(self.no_outcome)}")
        if self.wrongly_accepted:
            found.append(f"WRONGLY ACCEPTED: {len(self.wrongly_accepted)} ({_examples(self.wrongly_accepted)})")
        if self.over_deadline:
            found.append(f"{len(self.over_deadline)} answer(s) later than the deadline + "
                         f"{ROUND_TRIP_MARGIN_SECONDS:.0f} s (slowest {self.slowest:.1f} s)")
        if self.unexplained:
            counts = collections.Counter(f"{r.kind} {r.label}" for r in self.unexplained)
            found.append(f"not explained by the fault: {_counts(counts)} ({_examples(self.unexplained)})")
        if recovery_bound is not None:
            if self.steady is None or self.good_after_steady < STEADY_MIN_GOOD:
                found.append(f"no steady good sign-ins after the fault (only {self.good_after_steady} good after "
                             f"the last failure)")
            elif self.steady > recovery_bound:
                found.append(f"recovered in {self.steady:.1f} s, more than {recovery_bound:.0f} s")
        return found


def _recovery(good: list[SignInRecord], timeline: Timeline) -> tuple[float | None, float | None, int]:
    end = timeline.fault_end
    if end is None:
        return None, None, 0
    firsts = [r.end for r in good if r.start >= end and r.label == "success"]
    first = max(0.0, min(firsts) - end) if firsts else None
    # Steady: from the start of the last good sign-in that failed (or the fault's end), every good sign-in that
    # started succeeded. A sign-in caught by the fault but answered late (agent_timeout) does not delay it.
    failed = [r for r in good if r.label != "success" and r.end >= (timeline.fault_start or end)]
    last = max(failed, key=lambda r: r.start, default=None)
    steady_at = max(end, last.start) if last is not None else end
    after = [r for r in good if r.start >= steady_at and r is not last]
    if not after or any(r.label != "success" for r in after):
        return first, None, 0
    return first, steady_at - end, len(after)


def _counts(counter: collections.Counter) -> str:
    return ", ".join(f"{label} {count}" for label, count in counter.most_common())


def _examples(records: list[SignInRecord], limit: int = 3) -> str:
    return "; ".join(f"#{r.index} {r.kind} {r.label} status {r.status} at {r.start:.1f}-{r.end:.1f} s"
                     for r in records[:limit])


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
