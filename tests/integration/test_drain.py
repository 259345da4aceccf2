"""SIGTERM drains a Daphne node (config/drain.py): the sign-ins it is serving are answered, its agent is told to
move (NODE_LEAVING) once they are, new connections are refused, and it exits 0.

Without the drain, Twisted's SIGTERM handler stops the reactor, whose shutdown cancels every request in flight:
the clients saw their connection dropped mid-request (behind nginx: a 502, and a POST is rightly not retried)."""

from __future__ import annotations

import collections
import re
import signal
import threading
import time

import httpx
import pytest

from tests.fixtures.portal import site_with_agent, wait_for

pytestmark = pytest.mark.integration

WORKERS = 12
LOAD_SECONDS = 1.5  # of sign-ins before the SIGTERM, and the most any worker goes on after it
DRAIN_SECONDS = 20.0  # PTA_DRAIN_SECONDS, the default
_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class Load:
    """Workers signing good users in, each on its own keep-alive connection, until told to stop or refused."""

    def __init__(self, url: str, users: list[tuple[str, str]]) -> None:
        self.url, self.users = url, users
        self.stop = threading.Event()
        self.sigterm_at: float | None = None
        self.lock = threading.Lock()
        self.posts: list[tuple[float, float, str]] = []  # a walk's start, its end, its outcome or error
        self.connection_closing = 0  # answers (to any request of a walk) that carried Connection: close
        self.refused = 0  # new connections refused: expected once the node stopped listening

    def run(self, number: int) -> None:
        upn, password = self.users[number % len(self.users)]
        with httpx.Client(base_url=self.url, timeout=15, follow_redirects=False,
                          event_hooks={"response": [self.count_closing]}) as client:
            while not self.stop.is_set():
                try:
                    self.sign_in(client, upn, password)
                except httpx.ConnectError:  # a new connection, refused before anything was sent: expected
                    with self.lock:
                        self.refused += 1
                    return

    def count_closing(self, response: httpx.Response) -> None:
        if response.headers.get("connection", "").lower() == "close":
            with self.lock:
                self.connection_closing += 1

    def sign_in(self, client: httpx.Client, upn: str, password: str) -> None:
        client.cookies.clear()
        started = time.monotonic()
        try:
            page = client.get("/login/")
            client.post("/login/", data={"username": upn, "csrfmiddlewaretoken": _CSRF.findall(page.text)[0]})
            page = client.get("/login/password/")
            response = client.post("/login/password/", data={"password": password,
                                                             "csrfmiddlewaretoken": _CSRF.findall(page.text)[0]})
            outcome = response.headers.get("PTA-Outcome") or f"http-{response.status_code}"
        except httpx.ConnectError:
            raise
        except httpx.HTTPError as exc:  # sent, then dropped: what a drain must never do
            outcome = type(exc).__name__
        with self.lock:
            self.posts.append((started, time.monotonic(), outcome))


def test_sigterm_answers_what_is_in_flight_moves_the_agent_and_exits_0(ad_testbed):
    good = [(user["upn"], user["password"]) for name, user in ad_testbed.users_in_state("good").items()
            if name != "mallory"]
    with site_with_agent(ad_testbed) as (portal, node, tenant, agent):
        load = Load(node.url, good)
        workers = [threading.Thread(target=load.run, args=(n,), daemon=True) for n in range(WORKERS)]
        for worker in workers:
            worker.start()
        time.sleep(LOAD_SECONDS)
        assert node.proc is not None
        load.sigterm_at = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        exit_code = node.proc.wait(DRAIN_SECONDS + 10)
        load.stop.set()
        for worker in workers:
            worker.join(20)
        assert not any(worker.is_alive() for worker in workers)
        wait_for(lambda: "node is leaving; reconnecting at once" in agent.log(), timeout=10,
                 message=lambda: f"the agent to hear NODE_LEAVING:\n{agent.log()[-2000:]}")
        log = node.log()

    outcomes = collections.Counter(outcome for _, _, outcome in load.posts)
    in_flight = [p for p in load.posts if p[0] < load.sigterm_at < p[1]]  # walks under way at the SIGTERM
    assert exit_code == 0, log[-3000:]
    assert set(outcomes) == {"success"}, f"{outcomes}\n{log[-3000:]}"  # nothing dropped mid-request, no 5xx
    assert in_flight, f"no sign-in was in flight at the SIGTERM ({len(load.posts)} in all): the test saw nothing"
    assert load.connection_closing, "the answers during the drain tell the client to open a new connection"
    assert load.refused, "the node kept taking new connections while it drained"
    assert "drained in" in log and "cut" not in log
    with pytest.raises(httpx.ConnectError):
        httpx.get(node.url + "/login/", timeout=2)
