"""`pta-agent run`: keep one outbound WebSocket to the portal and answer its sign-in requests.

    connect → challenge/hello/welcome → heartbeats + requests (ack at once, result when AD answers)
    close: final code (revoked, unknown certificate, expired) → exit 3; anything else → reconnect,
    exponential backoff with full jitter capped at 30 s; after a renewal → reconnect at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import socket
import ssl
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pta_protocol as protocol
import websockets
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from pta_protocol import CloseCode, Outcome, ProtocolError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from pta_agent import AGENT_VERSION
from pta_agent.admission import RequestAdmission, admission_for
from pta_agent.backoff import Backoff
from pta_agent.config import AgentConfig
from pta_agent.directory import DirectoryValidator, Verdict
from pta_agent.identity import (
    AgentIdentity,
    certificate_load_pem,
    csr_build,
    private_key_generate,
    private_key_write,
    public_file_write,
)

logger = logging.getLogger(__name__)

# What the handshake waits for from the portal, in turn.
HandshakeFrame = TypeVar("HandshakeFrame", protocol.Challenge, protocol.Welcome)

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_USAGE = 2
EXIT_FINAL_CLOSE = 3
HANDSHAKE_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 5.0
OUTBOX_LIMIT = 1024
GOING_AWAY = 1001
# Outcomes whose result carries the user read from AD.
SIGNED_IN = (Outcome.SUCCESS, Outcome.PASSWORD_CHANGED)

FINAL_CLOSE_MESSAGES = {
    CloseCode.REVOKED: "agent revoked by the portal; exiting",
    CloseCode.UNKNOWN_CERTIFICATE: "the portal does not know this agent's certificate (deleted, or replaced by a "
                                   "renewal); register the agent again; exiting",
    CloseCode.CERTIFICATE_EXPIRED: "the agent's certificate has expired; register the agent again; exiting",
}


def websocket_url(portal_url: str) -> str:
    """http(s)://portal[/prefix] → ws(s)://portal[/prefix]/agent/ws/."""
    parts = urllib.parse.urlsplit(portal_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + protocol.WEBSOCKET_PATH, "", ""))


def describe_close(code: int | None, reason: str = "") -> str:
    if code is None:
        name = "no close frame"
    elif code in set(CloseCode):
        name = CloseCode(code).name.lower()
    else:
        name = {1000: "normal", 1001: "going away", 1006: "connection lost", 1011: "server error",
                1009: "frame too large", 1012: "server restarting"}.get(code, "closed")
    return f"{code} {name}" + (f": {reason}" if reason else "")


@dataclass(frozen=True)
class SessionEnd:
    close_code: int | None = None
    reason: str = ""
    welcomed: bool = False
    renewed: bool = False

    @property
    def final_code(self) -> CloseCode | None:
        """The portal's close code when it means stop rather than reconnect (CloseCode.is_final)."""
        if self.close_code is None or self.close_code not in set(CloseCode):
            return None
        code = CloseCode(self.close_code)
        return code if code.is_final else None


@dataclass
class PendingResult:
    result: protocol.Result
    expires_at: float


class AgentRunner:
    """One agent process: the connection loop, request handling, heartbeats, renewal and shutdown."""

    def __init__(self, config: AgentConfig, identity: AgentIdentity, validator: DirectoryValidator, *,
                 ssl_context: ssl.SSLContext | None = None, hostname: str | None = None,
                 backoff: Backoff | None = None, connector: Callable = connect):
        self.config = config
        self.identity = identity
        self.validator = validator
        self.ssl_context = ssl_context
        self.hostname = hostname or socket.gethostname()
        self.backoff = backoff or Backoff()
        self.connector = connector
        self.url = websocket_url(config.portal.url)
        self.replay_guard = protocol.ReplayGuard()
        self.admission = self._admission()
        self.in_flight = 0
        self.dc_status: dict[str, bool] = {}
        self._ws: ClientConnection | None = None
        self._stop = asyncio.Event()
        self._draining = False
        self._renewed = False
        self._pending_key: rsa.RSAPrivateKey | None = None  # the new key of a renewal asked for
        self._tasks: set[asyncio.Task] = set()
        self._outbox: deque[PendingResult] = deque(maxlen=OUTBOX_LIMIT)

    # --- the process --------------------------------------------------------------------------------------

    async def run(self) -> int:
        self._install_signal_handlers()
        monitor = asyncio.create_task(self._watch_directory(), name="dc-monitor")
        try:
            return await self._connection_loop()
        finally:
            await self._finish_in_flight()
            monitor.cancel()
            self.validator.close()

    def request_stop(self) -> None:
        if not self._stop.is_set():
            logger.info("stopping: finishing in-flight sign-ins")
        self._stop.set()

    async def _connection_loop(self) -> int:
        while not self._stop.is_set():
            end = await self._connect_once()
            if (final := end.final_code) is not None:
                logger.error(FINAL_CLOSE_MESSAGES[final])
                return EXIT_FINAL_CLOSE
            if self._stop.is_set():
                break
            if end.renewed or end.close_code == CloseCode.RENEWED:
                logger.info("reconnecting with the renewed certificate")
                self.backoff.reset()
                continue
            if end.close_code == CloseCode.NODE_LEAVING:
                # That node answered what it owed and takes no new connection: another node takes this one now.
                logger.info("the portal node is leaving; reconnecting at once")
                self.backoff.reset()
                continue
            if end.welcomed:
                self.backoff.reset()  # the connection worked: start again from short delays
            delay = self.backoff.next_delay()
            logger.warning("disconnected (%s); reconnecting in %.1f s", describe_close(end.close_code, end.reason),
                           delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
        logger.info("stopped")
        return EXIT_OK

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
                loop.add_signal_handler(signum, self.request_stop)

    # --- one connection -----------------------------------------------------------------------------------

    async def _connect_once(self) -> SessionEnd:
        self._renewed = False
        self._draining = self._stop.is_set()
        try:
            async with self.connector(
                self.url, ssl=self.ssl_context if self.url.startswith("wss://") else None,
                open_timeout=HANDSHAKE_TIMEOUT_SECONDS, close_timeout=CLOSE_TIMEOUT_SECONDS,
                max_size=protocol.MAX_FRAME_BYTES, compression=None,
                user_agent_header=f"pta-agent/{AGENT_VERSION} websockets/{websockets.__version__}",
            ) as ws:
                welcomed = await self._serve_connection(ws)
            return SessionEnd(ws.close_code, ws.close_reason or "", welcomed, self._renewed)
        except InvalidStatus as exc:
            return SessionEnd(reason=f"the portal answered HTTP {exc.response.status_code} at {self.url}")
        except InvalidURI as exc:
            return SessionEnd(reason=f"bad portal URL {self.url}: {exc}")
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            return SessionEnd(reason=f"cannot connect to {self.url}: {exc or type(exc).__name__}")

    async def _serve_connection(self, ws: ClientConnection) -> bool:
        try:
            welcome = await self._handshake(ws)
        except ConnectionClosed:
            return False
        except (ProtocolError, TimeoutError) as exc:
            logger.warning("handshake failed: %s", getattr(exc, "message", None) or "no answer in time")
            await ws.close(code=1002, reason="handshake failed")
            return False
        logger.info("connected to %s as agent %s", self.config.portal.url, welcome.agent_id)
        self._ws = ws
        helpers = [asyncio.create_task(self._send_heartbeats(ws, welcome.heartbeat_seconds)),
                   asyncio.create_task(self._close_when_stopping(ws))]
        try:
            await self._flush_outbox(ws)
            if welcome.renew:
                await self._start_renewal(ws)
            async for message in ws:
                await self._on_message(ws, message)
        except ConnectionClosed:
            pass
        finally:
            self._ws = None
            for helper in helpers:
                helper.cancel()
        return True

    async def _handshake(self, ws: ClientConnection) -> protocol.Welcome:
        challenge = await self._receive(ws, protocol.Challenge)
        await ws.send(protocol.encode(protocol.Hello(
            certificate=self.identity.certificate_pem,
            signature=protocol.sign_challenge(self.identity.private_key, challenge.nonce),
            version=AGENT_VERSION, hostname=self.hostname, capacity=self.config.agent.capacity,
            capabilities=self.capabilities(),
            # A version-1 portal refuses the field: it is sent only to a portal whose challenge says it reads it.
            protocol=protocol.PROTOCOL_VERSION if challenge.protocol >= 2 else 1,
        )))
        welcome = await self._receive(ws, protocol.Welcome)
        if welcome.agent_id != self.config.agent.id:
            logger.warning("the portal calls this agent %s, the config says %s", welcome.agent_id,
                           self.config.agent.id)
        return welcome

    @staticmethod
    async def _receive(ws: ClientConnection, expected: type[HandshakeFrame]) -> HandshakeFrame:
        frame = protocol.decode(await asyncio.wait_for(ws.recv(), timeout=HANDSHAKE_TIMEOUT_SECONDS))
        if not isinstance(frame, expected):
            raise ProtocolError("unexpected", f"Expected {expected.type}, got {frame.type}.")
        return frame

    def capabilities(self) -> list[str]:
        """Announced in the hello: the portal sends a password change only to an agent that can make it."""
        capabilities = [protocol.CAPABILITY_PASSWORD_CHANGE] if self.validator.can_change_passwords else []
        if self.validator.can_read_groups:  # the portal then asks for the groups with each request
            capabilities.append(protocol.CAPABILITY_GROUPS)
        return capabilities

    async def _send_heartbeats(self, ws: ClientConnection, interval: float) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.send(protocol.encode(self.heartbeat()))
                await asyncio.sleep(max(1.0, interval))

    def heartbeat(self) -> protocol.Heartbeat:
        return protocol.Heartbeat(version=AGENT_VERSION, in_flight=self.in_flight,
                                  capacity=self.config.agent.capacity, dc_reachable=any(self.dc_status.values()),
                                  dcs=dict(self.dc_status))

    async def _watch_directory(self) -> None:
        while True:
            try:
                self.dc_status = await self.validator.reachable_async()
            except Exception:  # a probe failure must never end the agent
                logger.exception("checking the DCs failed")
            await asyncio.sleep(protocol.HEARTBEAT_SECONDS)

    async def _close_when_stopping(self, ws: ClientConnection) -> None:
        await self._stop.wait()
        self._draining = True
        await self._finish_in_flight()
        await ws.close(code=GOING_AWAY, reason="agent stopping")

    # --- frames from the portal ---------------------------------------------------------------------------

    async def _on_message(self, ws: ClientConnection, message: str | bytes) -> None:
        """Every frame gets handled or an error frame: a bad frame never ends the connection or the agent."""
        try:
            match frame := protocol.decode(message):
                case protocol.Request():
                    await self._on_request(ws, frame)
                case protocol.Renew():
                    await self._on_renew(ws, frame)
                case protocol.Renewed():
                    await self._on_renewed(ws, frame)
                case protocol.Error():
                    await self._on_error(ws, frame)
                case _:
                    raise ProtocolError("unexpected", f"The agent does not expect a {frame.type} frame now.")
        except ProtocolError as exc:
            logger.warning("refused a frame from the portal: %s (%s)", exc.code, exc.message)
            await ws.send(protocol.encode(protocol.Error(code=exc.code, message=exc.message,
                                                         request_id=exc.request_id)))
        except ConnectionClosed:
            raise
        except Exception:
            logger.exception("handling a frame from the portal failed")
            await ws.send(protocol.encode(protocol.Error(code="internal_error", message="The agent failed.")))

    async def _on_error(self, ws: ClientConnection, frame: protocol.Error) -> None:
        logger.warning("the portal reported an error: %s %s%s", frame.code, frame.message,
                       f" (request {frame.request_id})" if frame.request_id else "")
        if self._pending_key is not None and not frame.request_id:
            self._pending_key = None  # most likely our renewal was refused; the portal will ask again

    async def _on_request(self, ws: ClientConnection, request: protocol.Request) -> None:
        """Checks, then ack at once; the bind runs in a task. Refusals are error frames without an ack."""
        identity = self.identity  # a renewal may swap it while this request is served
        self.admission.check(request)
        if request.kind not in protocol.REQUEST_KINDS:
            # A newer portal's kind: refused before the ack, so it may ask an agent that knows it.
            raise ProtocolError("unsupported", f"This agent does not know requests of kind {request.kind[:40]!r}.",
                                request.request_id)
        if request.kind == protocol.REQUEST_PASSWORD_CHANGE and not self.validator.can_change_passwords:
            # Before the ack: nothing happened here, so the portal may ask another agent.
            raise ProtocolError("unsupported", "This agent has no service account to change passwords with.",
                                request.request_id)
        if self._draining:
            # Not busy: the portal would wait for this agent's slot instead of asking another agent.
            raise ProtocolError("shutting_down", "The agent is shutting down.", request.request_id)
        if self.in_flight >= self.config.agent.capacity:
            raise ProtocolError("busy", "The agent is at capacity.", request.request_id)
        self.admission.remember(request)
        self.in_flight += 1
        try:
            await ws.send(protocol.encode(protocol.Ack(request_id=request.request_id)))
        except BaseException:
            self.in_flight -= 1  # no ack sent: the portal tries another agent, so no bind may happen here
            raise
        task = asyncio.create_task(self._serve_request(request, identity), name=f"request-{request.request_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_request(self, request: protocol.Request, identity: AgentIdentity) -> None:
        started = time.monotonic()
        try:
            verdict = await self._validate(request, identity, started)
        except Exception:
            logger.exception("validating request %s failed", request.request_id)
            verdict = Verdict(Outcome.AGENT_ERROR, detail="internal_error")
        finally:
            self.in_flight -= 1
        result = protocol.Result(
            request_id=request.request_id, outcome=str(verdict.outcome), ad_subcode=verdict.ad_subcode,
            latency_ms=round((time.monotonic() - started) * 1000, 2),
            user=verdict.user.as_dict() if verdict.user and verdict.outcome in SIGNED_IN else {},
            detail=verdict.detail[:200],
            # Only to a request that asked (an older portal refuses the field), and only with a signed-in user.
            groups=verdict.groups if request.groups and verdict.outcome in SIGNED_IN else None,
            groups_truncated=verdict.groups_truncated and request.groups and verdict.outcome in SIGNED_IN,
        )
        await self._deliver(PendingResult(result, request.expires_at))

    async def _validate(self, request: protocol.Request, identity: AgentIdentity, started: float) -> Verdict:
        remaining = min(self.config.agent.request_deadline_seconds, request.expires_at - time.time())
        if request.kind == protocol.REQUEST_ACCOUNT_STATE:
            return await self.validator.account_state_async(request.username, deadline=started + remaining,
                                                            groups=request.groups)
        if request.kind == protocol.REQUEST_PASSWORD_CHANGE:
            logger.debug("request %s: password change", request.request_id)
            try:
                current, new, confirm = protocol.open_password_change_confirmed(
                    private_key=identity.private_key, request=request)
            except ProtocolError as exc:
                logger.warning("request %s: %s", request.request_id, exc.message)
                return Verdict(Outcome.AGENT_ERROR, detail=exc.code)
            if confirm is not None and confirm != new:
                # Sealed in the browser, the two new passwords were compared by nobody before: never a change to
                # a value the person may not have meant.
                return Verdict(Outcome.PASSWORD_REJECTED, detail="mismatch: the new passwords differ")
            return await self.validator.change_password_async(request.username, current, new,
                                                              deadline=started + remaining, groups=request.groups)
        if request.kind != protocol.REQUEST_PASSWORD:
            return Verdict(Outcome.AGENT_ERROR, detail="unknown_request_kind")
        try:
            password = protocol.open_envelope(private_key=identity.private_key, request=request)
        except ProtocolError as exc:
            logger.warning("request %s: %s", request.request_id, exc.message)
            return Verdict(Outcome.AGENT_ERROR, detail=exc.code)  # acked: a result ends the attempt at once
        return await self.validator.validate_async(request.username, password, deadline=started + remaining,
                                                   groups=request.groups)

    async def _deliver(self, pending: PendingResult) -> None:
        """Send now, or keep it for the next connection while the request has not expired."""
        ws = self._ws
        if ws is not None:
            try:
                await ws.send(protocol.encode(pending.result))
                return
            except ConnectionClosed:
                pass
        self._outbox.append(pending)

    async def _flush_outbox(self, ws: ClientConnection) -> None:
        now = time.time()
        while self._outbox:
            pending = self._outbox.popleft()
            if pending.expires_at > now:
                await ws.send(protocol.encode(pending.result))

    async def _finish_in_flight(self) -> None:
        """Until every request acknowledged has its result sent (or the grace has passed). ``in_flight`` counts a
        request from before its ack is sent, its task only from after: a stop that came while an ack was being
        sent found no task yet, closed the connection, and that request's result (the bind done) was lost, its
        sign-in ending agent_timeout."""
        deadline = time.monotonic() + self.config.agent.shutdown_grace_seconds
        if self._tasks or self.in_flight:
            logger.info("waiting for %d in-flight sign-in(s)", max(len(self._tasks), self.in_flight))
        while (self._tasks or self.in_flight) and (left := deadline - time.monotonic()) > 0:
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=left)
            else:
                await asyncio.sleep(min(0.01, left))  # an ack being sent: its task starts right after

    # --- renewal ------------------------------------------------------------------------------------------

    async def _on_renew(self, ws: ClientConnection, frame: protocol.Renew) -> None:
        await self._start_renewal(ws)

    async def _start_renewal(self, ws: ClientConnection) -> None:
        if self._pending_key is not None:
            return  # already asked; the portal's answer is on its way
        new_key = await asyncio.to_thread(private_key_generate)
        csr = csr_build(new_key, name=self.config.agent.name or self.hostname)
        self._pending_key = new_key
        logger.info("renewing the certificate")
        await ws.send(protocol.encode(protocol.Renewal(
            csr=csr, signature=protocol.sign_renewal(self.identity.private_key, csr))))

    async def _on_renewed(self, ws: ClientConnection, frame: protocol.Renewed) -> None:
        new_key = self._pending_key
        if new_key is None:
            raise ProtocolError("unexpected", "No renewal is in progress.")
        certificate = self._check_renewed_certificate(frame.certificate, new_key)
        await asyncio.to_thread(self._write_renewed, new_key, frame.certificate)
        self._pending_key = None
        self.identity = dataclasses.replace(self.identity, private_key=new_key, certificate=certificate)
        self.admission = self._admission()
        self._renewed = True
        logger.info("renewed: certificate valid until %s; reconnecting with the new key",
                    certificate.not_valid_after_utc.isoformat())
        task = asyncio.create_task(self._drain_and_close(ws, reason="renewed"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _check_renewed_certificate(self, pem: str, new_key: rsa.RSAPrivateKey) -> x509.Certificate:
        try:
            certificate = certificate_load_pem(pem)
        except Exception:
            raise ProtocolError("bad_certificate", "The renewed certificate is not valid PEM.") from None
        if certificate.public_key() != new_key.public_key():
            raise ProtocolError("bad_certificate", "The renewed certificate is not for the key just sent.")
        return certificate

    def _write_renewed(self, new_key: rsa.RSAPrivateKey, certificate_pem: str) -> None:
        # Key first, then certificate, each atomically: a crash between them is caught at start-up (mismatch).
        private_key_write(Path(self.config.files.private_key), new_key)
        public_file_write(Path(self.config.files.certificate), certificate_pem)

    async def _drain_and_close(self, ws: ClientConnection, *, reason: str) -> None:
        """In-flight sign-ins were sealed for the old key and are already open: let them answer first."""
        self._draining = True  # new requests now get "shutting_down" and go to another agent
        others = {task for task in self._tasks if task is not asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=self.config.agent.request_deadline_seconds)
        await ws.close(code=1000, reason=reason)

    def _admission(self) -> RequestAdmission:
        admission = admission_for(tenant=self.config.agent.tenant, domains=self.config.agent.domains,
                                  key_id=self.identity.key_id, portal_signing_key=self.identity.portal_signing_key)
        admission.replay_guard = self.replay_guard  # a replay stays a replay across reconnects and renewals
        return admission

