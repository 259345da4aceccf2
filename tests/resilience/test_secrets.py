"""Secrets under load: no password, nor anything derived from it, in Redis, a log, a Celery message, the database
or a page (docs/architecture.md, "What never happens").

Every wrong password and unknown user's password is a unique marker (``Marker-<hex>-pw``), and the good users'
fixed passwords are markers too. 500 sign-ins run (16 at once) on a production portal logging at DEBUG, with a
Celery worker on the same Redis, while a ``MONITOR`` connection records every command Redis executes (the
channel layer's pub/sub, the cache and sessions, Lua scripts, Celery's messages). Error pages are provoked with
markers in them: a malformed multipart body, a bad CSRF token, an oversized body, an over-long password, control
characters, a JSON body, a POST with no session. Two nodes with an agent each: sealed requests cross Redis.
Then the capture, every log (Daphne, agents, Celery, Redis), a
``pg_dump`` of the portal's database and every page body and header are searched for each marker, as text,
UTF-16, URL-encoded, hex and base64.
"""

from __future__ import annotations

import base64
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.http import found
from tests.fixtures.memory import RedisCapture, encodings
from tests.fixtures.portal import REPO_ROOT, RedisServer, stop_process, wait_for
from tests.resilience.load import (
    OTHER_ADDRESS,
    UNKNOWN,
    LoadRun,
    SignInMix,
    SignInRecord,
    Timeline,
    Walker,
    marker_password,
)
from tests.resilience.site import site_build

pytestmark = [pytest.mark.integration, pytest.mark.resilience]

SIGNINS = 500
WORKERS = 16
MARKER_PREFIX = "Marker-"
MARKER = re.compile(rb"Marker-[0-9a-f]{16}-pw")
CAPTURE = "Redis MONITOR capture (incl. Celery messages)"


def occurrences(views: dict[str, tuple[bytes, bytes]], secret: str) -> list[tuple[str, str]]:
    """Where (place) and how (form) ``secret`` occurs in each place's text or its decoded runs."""
    found = []
    for where, (text, decoded_text) in views.items():
        for form, pattern in encodings(secret).items():
            for view, searched in (("", text), (", base64/hex-decoded", decoded_text)):
                if pattern in searched:
                    found.append((where, form + view))
    return found


def decoded(text: bytes) -> bytes:
    """Every run of base64 (standard or URL-safe, at each alignment) and of hex in ``text``, decoded: Celery's
    message bodies, cookies and tokens are base64, digests hex."""
    out = []
    for run in re.findall(rb"[A-Za-z0-9+/_-]{12,}", text):
        run = run.replace(b"-", b"+").replace(b"_", b"/")
        for shift in range(4):
            chunk = run[shift:]
            out.append(base64.b64decode(chunk[: len(chunk) - len(chunk) % 4]))
    for run in re.findall(rb"[0-9a-fA-F]{14,}", text):
        for shift in range(2):
            chunk = run[shift:]
            out.append(bytes.fromhex(chunk[: len(chunk) - len(chunk) % 2].decode()))
    return b"\n".join(out)


def test_no_secret_anywhere_after_500_sign_ins_and_error_pages(ad_testbed, reliability, tmp_path):
    server = RedisServer(tmp_path).start()
    site = None
    worker = None
    worker_log = tmp_path / "celery-worker.log"
    markers: list[str] = []
    pages: list[bytes] = []
    pages_lock = threading.Lock()

    def marker() -> str:
        value = marker_password()
        markers.append(value)
        return value

    def keep_page(response: httpx.Response) -> None:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items()).encode()
        with pages_lock:
            pages.append(headers + b"\n\n" + response.content)

    try:
        # Two nodes, an agent on each, browsers on both: half the sealed requests cross Redis pub/sub.
        site = site_build(ad_testbed, nodes=("a", "b"), agent_nodes=(0, 1), redis_url=server.url,
                          env={"PTA_LOG_LEVEL": "DEBUG"})
        portal = site.portal
        queue = f"{portal.redis_prefix}-q"
        with worker_log.open("wb") as log:
            worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo",
                                       "--loglevel", "DEBUG", "-Q", queue], cwd=REPO_ROOT, env=portal.env,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        capture = RedisCapture(server.url).start()
        mix = SignInMix(ad_testbed, password=marker)
        timeline = Timeline()
        load = LoadRun(site.urls, mix, timeline, workers=WORKERS, min_signins=SIGNINS, on_response=keep_page)
        load.faulty = False
        load.start()
        try:
            load.wait_answered(50)
            portal.manage("shell", "-c", "from signin.tasks import purge_signin_events; "
                          f"purge_signin_events.apply_async(queue='{queue}')")
            error_pages = provoke_error_pages(site.urls[0], ad_testbed, marker, keep_page)
            control = f"canary-{secrets.token_hex(6)}@{ad_testbed.upn_suffix}"
            walker = Walker(on_response=keep_page)
            try:
                walker.sign_in(SignInRecord(-1, UNKNOWN, control), [site.urls[0]], marker(), timeline)
            finally:
                walker.close()
        finally:
            records = load.join()
        wait_for(lambda: "purged" in worker_log.read_text(errors="replace"), timeout=60,
                 message=lambda: f"the Celery worker to run the purge:\n{worker_log.read_text()[-2000:]}")
        captured = capture.stop()
        dump = subprocess.run(["pg_dump", portal.env["DATABASE_URL"]], capture_output=True, timeout=120,
                              check=True).stdout
        stop_process(worker)  # its log complete; the nodes' and agents' logs go with the portal's directory
        logs = {f"daphne {node.name}": node.log_path.read_bytes() for node in site.nodes}
        logs.update({f"agent {agent.agent_id}": agent.log_path.read_bytes() for agent in site.agents})
        logs["celery worker"] = worker_log.read_bytes()
        logs.update({f"redis {path.name}": path.read_bytes() for path in Path(tmp_path).glob("redis-*.log")})
    finally:
        if worker is not None:
            stop_process(worker)
        if site is not None:
            site.close()
        server.stop(kill=True)

    places = {CAPTURE: captured, "pg_dump": dump,
              "pages (bodies and headers)": b"\n".join(pages), **logs}

    # The places really hold what was searched for: the records, the hand-off and Celery's messages.
    assert b"signin_signinevent" in dump and mix.unknown_prefix.encode() in dump
    assert b"agent.request" in captured and b"purge_signin_events" in captured
    assert any(b"DEBUG" in text for name, text in logs.items() if name.startswith("daphne"))
    assert len(records) >= SIGNINS and all(record.outcome for record in records), \
        [r.label for r in records if not r.outcome][:10]

    # The search itself works: a name (not a secret) typed as a username is found where sign-ins leave it.
    views = {where: (text, decoded(text)) for where, text in places.items()}
    control_found = {where for where, _ in occurrences(views, control)}
    assert {"pg_dump", CAPTURE} <= control_found, f"the control name {control} was found only in {control_found}"

    good = list(mix.good.values())
    found = [f"{where}: a marker as {form} {sorted(set(re.findall(MARKER, views[where][0] + views[where][1])))[:3]}"
             for where, form in occurrences(views, MARKER_PREFIX)]  # every marker starts with it; nothing else does
    found += [f"{where}: a good user's password as {form}" for secret in good
              for where, form in occurrences(views, secret)]
    sizes = ", ".join(f"{name} {_size(len(text))}" for name, text in places.items())
    reliability.secrets = (
        f"{len(records)} sign-ins ({', '.join(f'{k} {sum(v.values())}' for k, v in _by_kind(records).items())}), "
        f"{WORKERS} at once, and {len(error_pages)} provoked error pages ({', '.join(error_pages)}); "
        f"{len(markers)} unique marker passwords plus the {len(good)} good users' passwords, each searched as text, "
        f"UTF-16, URL-encoded, and in every base64 and hex run decoded, in: {sizes} ({len(capture.lines)} Redis "
        f"commands captured with MONITOR, logs at DEBUG). Found: "
        + ("nowhere." if not found else "; ".join(found[:20]))
    )
    server_errors = [page for page in error_pages if page.endswith(tuple(f" {n}" for n in range(500, 600)))]
    assert not found and not server_errors, "\n".join(found + [f"5xx: {page}" for page in server_errors])


def provoke_error_pages(node_url: str, ad, marker, keep_page) -> list[str]:
    """Requests that end in error pages, each carrying a marker password; returns what each got. From
    OTHER_ADDRESS: the refused guesses count in the account's other lockout bucket, not the good sign-ins'."""
    upn = ad.user("alice")["upn"]
    got = []
    walker = Walker(on_response=keep_page)
    try:
        def password_page() -> tuple[httpx.Client, str]:
            client = walker.client(node_url, OTHER_ADDRESS)
            token = walker.to_password_page(client, SignInRecord(0, "wrong", upn), upn)
            assert token, "the password page did not open"
            return client, token

        def post(name: str, client: httpx.Client, **kwargs) -> None:
            response = client.post("/login/password/", **kwargs)
            keep_page(response)
            got.append(f"{name} {response.status_code}")

        client, token = password_page()
        post("bad CSRF token", client, data={"password": marker(), "csrfmiddlewaretoken": token[::-1]})
        client, token = password_page()
        post("no CSRF token", client, data={"password": marker()})
        client, token = password_page()
        post("malformed multipart", client, content=f"--x\r\npassword={marker()}\r\n".encode(),
             headers={"Content-Type": "multipart/form-data", "X-CSRFToken": token})
        client, token = password_page()
        post("malformed urlencoded", client, content=(f"csrfmiddlewaretoken={token}&password={marker()}&%zz=%"
                                                      ).encode() + b"\xff\xfe",
             headers={"Content-Type": "application/x-www-form-urlencoded"})
        client, token = password_page()
        post("oversized body", client, content=(f"csrfmiddlewaretoken={token}&password={marker()}&pad="
                                                + "x" * (3 * 2**20)).encode(),
             headers={"Content-Type": "application/x-www-form-urlencoded"})
        client, token = password_page()
        post("over-long password", client, data={"password": marker() + "y" * 600, "csrfmiddlewaretoken": token})
        client, token = password_page()
        post("control characters", client, data={"password": marker() + "\x00\r\n", "csrfmiddlewaretoken": token})
        client, token = password_page()
        post("JSON body", client, json={"password": marker(), "csrfmiddlewaretoken": token},
             headers={"X-CSRFToken": token})
        client = walker.client(node_url, OTHER_ADDRESS)  # a fresh browser: no session at all
        page = client.get("/login/")
        keep_page(page)
        token = found(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        post("no session", client, data={"password": marker(), "csrfmiddlewaretoken": token})
        response = client.post("/login/", content=(f"csrfmiddlewaretoken={token}&username={upn}&password={marker()}"
                                                   "&pad=" + "x" * (3 * 2**20)).encode(),
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        keep_page(response)
        got.append(f"oversized username form {response.status_code}")
    finally:
        walker.close()
    time.sleep(0.5)  # let the nodes write their logs of these
    return got


def _by_kind(records) -> dict[str, dict[str, int]]:
    result: dict[str, dict[str, int]] = {}
    for record in records:
        result.setdefault(record.kind, {}).setdefault(record.label, 0)
        result[record.kind][record.label] += 1
    return result


def _size(length: int) -> str:
    return f"{length / 2**20:.1f} MiB" if length >= 2**20 else f"{length / 2**10:.0f} KiB"
