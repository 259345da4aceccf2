"""`pta-agent run` against a fake portal on loopback: handshake, requests, refusals, close codes, renewal, stop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import stat
import time
from pathlib import Path

import msgspec
import pta_protocol as protocol
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from pta_agent.backoff import Backoff
from pta_agent.directory import DirectoryUser, Verdict
from pta_agent.identity import identity_load
from pta_agent.runner import EXIT_FINAL_CLOSE, EXIT_OK, AgentRunner, websocket_url
from pta_protocol import CloseCode, Outcome
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .conftest import TENANT, pem

FRAME_TIMEOUT = 5


class FakeValidator:
    can_change_passwords = False
    can_read_groups = False

    def __init__(self, verdict: Verdict | None = None, delay: float = 0.0):
        self.verdict = verdict or Verdict(Outcome.SUCCESS, user=DirectoryUser(
            object_guid="2f1c7a1e-8d6b-4c1a-9d55-0a4e1c7b9e01", display_name="Alice Smith",
            mail="alice@corp.example.test", upn="alice@corp.example.test"))
        self.delay = delay
        self.calls: list[tuple[str, str]] = []

    async def validate_async(self, username: str, password: str, *, deadline: float,
                             groups: bool = False) -> Verdict:
        self.calls.append((username, password))
        self.groups_asked = groups
        await asyncio.sleep(self.delay)
        return self.verdict

    async def reachable_async(self) -> dict[str, bool]:
        return {"ldaps://dc1.corp.example.test:636": True}

    def close(self) -> None:
        pass


class FakePortal:
    """Accepts agent connections and lets the test play the portal's part."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def _handler(self, ws: ServerConnection) -> None:
        await self.connections.put(ws)
        await ws.wait_closed()

    async def __aenter__(self) -> FakePortal:
        self.server = await serve(self._handler, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def next_connection(self) -> ServerConnection:
        return await asyncio.wait_for(self.connections.get(), FRAME_TIMEOUT)

    async def accept(self, *, renew: bool = False) -> tuple[ServerConnection, protocol.Hello]:
        ws = await self.next_connection()
        nonce = protocol.new_nonce()
        await send(ws, protocol.Challenge(nonce=nonce))
        hello = await receive(ws, protocol.Hello)
        public_key = x509.load_pem_x509_certificate(hello.certificate.encode()).public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)
        assert protocol.verify_challenge(public_key, nonce, hello.signature)
        await send(ws, protocol.Welcome(agent_id="agent-1", heartbeat_seconds=1, renew=renew))
        return ws, hello


async def send(ws, frame: protocol.Frame) -> None:
    await ws.send(protocol.encode(frame))


async def receive(ws, expected: type | None = None, *, skip_heartbeats: bool = True):
    while True:
        frame = protocol.decode(await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT))
        if skip_heartbeats and isinstance(frame, protocol.Heartbeat) and expected is not protocol.Heartbeat:
            continue
        if expected is not None:
            assert isinstance(frame, expected), frame
        return frame


@contextlib.asynccontextmanager
async def running_agent(agent_config, identity, validator=None, **agent_settings):
    async with FakePortal() as portal:
        config = msgspec.structs.replace(
            agent_config, portal=msgspec.structs.replace(agent_config.portal, url=portal.url),
            agent=msgspec.structs.replace(agent_config.agent, **agent_settings))
        # FakeValidator answers as DirectoryValidator does, without being one (mypy checks the nominal type).
        directory = validator or FakeValidator()
        runner = AgentRunner(config, identity, directory, hostname="agent-host",  # type: ignore[arg-type]
                             backoff=Backoff(base=0.01, cap=0.05))
        task = asyncio.create_task(runner.run())
        try:
            yield portal, runner, task
        finally:
            runner.request_stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)


def test_websocket_url_follows_the_portal_scheme():
    assert websocket_url("https://portal.example.com/") == "wss://portal.example.com/agent/ws/"
    assert websocket_url("http://127.0.0.1:8000") == "ws://127.0.0.1:8000/agent/ws/"
    assert websocket_url("https://example.com/pta") == "wss://example.com/pta/agent/ws/"


async def test_handshake_heartbeat_and_a_sign_in(agent_config, identity, make_request):
    validator = FakeValidator()
    async with running_agent(agent_config, identity, validator) as (portal, runner, _):
        ws, hello = await portal.accept()
        assert (hello.capacity, hello.hostname) == (4, "agent-host")
        beat = await receive(ws, protocol.Heartbeat)
        assert beat.capacity == 4 and beat.dc_reachable and beat.dcs
        request = make_request("Wonder!Land-2024")
        await send(ws, request)
        assert (await receive(ws, protocol.Ack)).request_id == request.request_id
        result = await receive(ws, protocol.Result)
        assert (result.request_id, result.outcome) == (request.request_id, "success")
        assert set(result.user) == {"object_guid", "display_name", "mail", "upn"}
        assert validator.calls == [("alice@corp.example.test", "Wonder!Land-2024")]


@pytest.mark.parametrize("garbage", [
    "not json", '["a list"]', '{"type": "nope"}', '{"type": "request"}', '{"type": "request", "extra": 1}',
    '{"type": "welcome", "agent_id": "again"}', '{"type": "renewed", "certificate": "no renewal pending"}',
    "x" * (protocol.MAX_FRAME_BYTES - 10),
])
async def test_garbage_from_the_portal_gets_an_error_frame_and_the_agent_carries_on(
        agent_config, identity, make_request, garbage):
    async with running_agent(agent_config, identity) as (portal, runner, task):
        ws, _ = await portal.accept()
        await ws.send(garbage)
        error = await receive(ws, protocol.Error)
        assert error.code
        request = make_request()
        await send(ws, request)
        assert (await receive(ws, protocol.Ack)).request_id == request.request_id
        assert not task.done()


async def test_a_request_with_a_mistyped_field_is_refused_by_name_and_fails_at_once(agent_config, identity,
                                                                                   make_request):
    async with running_agent(agent_config, identity) as (portal, runner, task):
        ws, _ = await portal.accept()
        request = make_request()
        await ws.send(json.dumps(json.loads(protocol.encode(request)) | {"expires_at": str(request.expires_at)}))
        error = await receive(ws, protocol.Error)
        assert (error.code, error.request_id) == ("malformed", request.request_id)  # the portal fails it at once
        assert "`$.expires_at`" in error.message
        await send(ws, request)  # refused before admission: the same request, well formed, is still served
        assert (await receive(ws, protocol.Ack)).request_id == request.request_id
        assert not task.done()


async def test_binary_frames_are_refused_too(agent_config, identity):
    async with running_agent(agent_config, identity) as (portal, runner, task):
        ws, _ = await portal.accept()
        await ws.send(b"\x00\x01")
        assert (await receive(ws, protocol.Error)).code == "malformed"


async def test_refused_requests_get_an_error_frame_and_never_an_ack(agent_config, identity, make_request):
    validator = FakeValidator()
    async with running_agent(agent_config, identity, validator) as (portal, runner, _):
        ws, _ = await portal.accept()
        good = make_request()
        cases = {
            "bad_signature": make_request(signing_key=ed25519.Ed25519PrivateKey.generate()),
            "wrong_tenant": make_request(tenant="other"),
            "wrong_domain": make_request(domain="other.example.test"),
            "wrong_key": make_request(key_id="f" * 64),
            "replay": good,
        }
        await send(ws, good)
        await receive(ws, protocol.Ack)
        await receive(ws, protocol.Result)
        for code, request in cases.items():
            await send(ws, request)
            error = await receive(ws)
            assert isinstance(error, protocol.Error), (code, error)
            assert (error.code, error.request_id) == (code, request.request_id)
        assert len(validator.calls) == 1


async def test_over_capacity_answers_busy_without_an_ack(agent_config, identity, make_request):
    async with running_agent(agent_config, identity, FakeValidator(delay=0.5), capacity=1) as (portal, runner, _):
        ws, _ = await portal.accept()
        first, second = make_request(), make_request()
        await send(ws, first)
        await send(ws, second)
        assert (await receive(ws, protocol.Ack)).request_id == first.request_id
        busy = await receive(ws, protocol.Error)
        assert (busy.code, busy.request_id) == ("busy", second.request_id)
        assert (await receive(ws, protocol.Result)).request_id == first.request_id
        await send(ws, second)  # no bind happened for it: the portal may send it again
        assert (await receive(ws, protocol.Ack)).request_id == second.request_id


async def test_a_password_sealed_for_another_key_answers_agent_error_after_the_ack(agent_config, identity,
                                                                                    make_request):
    validator = FakeValidator()
    async with running_agent(agent_config, identity, validator) as (portal, runner, _):
        ws, _ = await portal.accept()
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        request = make_request(public_key=other_key)
        await send(ws, request)
        await receive(ws, protocol.Ack)
        result = await receive(ws, protocol.Result)
        assert (result.outcome, result.detail) == ("agent_error", "cannot_decrypt")
        assert validator.calls == []


@pytest.mark.parametrize("code", [CloseCode.REVOKED, CloseCode.UNKNOWN_CERTIFICATE, CloseCode.CERTIFICATE_EXPIRED])
async def test_final_close_codes_end_the_agent_with_exit_code_3(agent_config, identity, caplog, code):
    caplog.set_level(logging.INFO)
    async with running_agent(agent_config, identity) as (portal, runner, task):
        ws, _ = await portal.accept()
        await ws.close(code=int(code), reason="closed by the portal")
        assert await asyncio.wait_for(task, FRAME_TIMEOUT) == EXIT_FINAL_CLOSE
    if code is CloseCode.REVOKED:
        assert "agent revoked by the portal; exiting" in caplog.text


async def test_revoked_at_the_handshake_also_exits_3(agent_config, identity):
    async with running_agent(agent_config, identity) as (portal, runner, task):
        ws = await portal.next_connection()
        await send(ws, protocol.Challenge(nonce=protocol.new_nonce()))
        await receive(ws, protocol.Hello)
        await ws.close(code=int(CloseCode.REVOKED), reason="revoked")
        assert await asyncio.wait_for(task, FRAME_TIMEOUT) == EXIT_FINAL_CLOSE


@pytest.mark.parametrize("code", [CloseCode.PROTOCOL_ERROR, CloseCode.BAD_SIGNATURE, CloseCode.HANDSHAKE_TIMEOUT,
                                  1001, 1011])
async def test_other_close_codes_reconnect_with_backoff(agent_config, identity, caplog, code):
    caplog.set_level(logging.INFO)
    async with running_agent(agent_config, identity) as (portal, runner, task):
        ws, _ = await portal.accept()
        await ws.close(code=int(code))
        await portal.accept()
        assert not task.done()
    assert "reconnecting in" in caplog.text


async def test_an_unreachable_portal_is_retried_until_stopped(agent_config, identity, caplog):
    caplog.set_level(logging.INFO)
    runner = AgentRunner(agent_config, identity, FakeValidator(),  # type: ignore[arg-type]  # a fake directory
                         backoff=Backoff(base=0.01, cap=0.05))
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(0.5)
    runner.request_stop()
    assert await asyncio.wait_for(task, FRAME_TIMEOUT) == EXIT_OK
    assert caplog.text.count("reconnecting in") >= 2


async def test_stop_finishes_in_flight_sign_ins_then_closes_and_exits_0(agent_config, identity, make_request):
    async with running_agent(agent_config, identity, FakeValidator(delay=0.3)) as (portal, runner, task):
        ws, _ = await portal.accept()
        request = make_request()
        await send(ws, request)
        await receive(ws, protocol.Ack)
        runner.request_stop()
        late = make_request()
        await send(ws, late)
        frames = [await receive(ws), await receive(ws)]
        assert {type(f) for f in frames} == {protocol.Error, protocol.Result}  # late: refused; first: answered
        [refused] = [f for f in frames if isinstance(f, protocol.Error)]
        # shutting_down, not busy: the portal asks another agent at once instead of waiting for this one.
        assert (refused.code, refused.request_id) == ("shutting_down", late.request_id)
        with pytest.raises(ConnectionClosed):
            await receive(ws)
        assert ws.close_code == 1001
        assert await asyncio.wait_for(task, FRAME_TIMEOUT) == EXIT_OK


async def test_renewal_writes_the_new_key_and_certificate_then_reconnects_with_them(
        agent_config, identity, tenant_ca, caplog):
    caplog.set_level(logging.INFO)
    async with running_agent(agent_config, identity) as (portal, runner, task):
        ws, _ = await portal.accept(renew=True)
        renewal = await receive(ws, protocol.Renewal)
        assert protocol.verify_renewal(identity.private_key.public_key(), renewal.csr, renewal.signature)
        csr = x509.load_pem_x509_csr(renewal.csr.encode())
        assert csr.is_signature_valid
        new_certificate = tenant_ca.issue(csr.public_key())
        await send(ws, protocol.Renewed(certificate=pem(new_certificate)))
        await ws.close(code=int(CloseCode.RENEWED), reason="renewed")  # what the portal does
        ws2, hello = await portal.accept()
        assert hello.certificate == pem(new_certificate)
    files = agent_config.files
    on_disk = identity_load(private_key_file=files.private_key, certificate_file=files.certificate,
                            portal_signing_key_file=files.portal_signing_key)
    new_key = csr.public_key()
    assert isinstance(new_key, rsa.RSAPublicKey)
    assert on_disk.key_id == protocol.key_fingerprint(new_key) != identity.key_id
    assert stat.S_IMODE(Path(files.private_key).stat().st_mode) == 0o600
    assert "renewed" in caplog.text


async def test_after_renewal_requests_for_the_old_key_are_refused(agent_config, identity, tenant_ca, make_request):
    async with running_agent(agent_config, identity) as (portal, runner, task):
        ws, _ = await portal.accept()
        await send(ws, protocol.Renew())
        renewal = await receive(ws, protocol.Renewal)
        csr = x509.load_pem_x509_csr(renewal.csr.encode())
        await send(ws, protocol.Renewed(certificate=pem(tenant_ca.issue(csr.public_key()))))
        # The agent closes by itself when the portal does not (1000, "renewed"), and comes back.
        with pytest.raises(ConnectionClosed):
            await receive(ws)
        ws2, _ = await portal.accept()
        old = make_request()
        await send(ws2, old)
        assert (await receive(ws2, protocol.Error)).code == "wrong_key"


async def test_a_renewed_certificate_for_another_key_is_refused(agent_config, identity, tenant_ca):
    async with running_agent(agent_config, identity) as (portal, runner, task):
        ws, _ = await portal.accept()
        await send(ws, protocol.Renew())
        await receive(ws, protocol.Renewal)
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        await send(ws, protocol.Renewed(certificate=pem(tenant_ca.issue(stranger))))
        assert (await receive(ws, protocol.Error)).code == "bad_certificate"
        assert runner.identity.key_id == identity.key_id


def test_heartbeat_reports_load_and_dcs(agent_config, identity):
    runner = AgentRunner(agent_config, identity, FakeValidator())  # type: ignore[arg-type]  # a fake directory
    runner.dc_status = {"ldaps://a:636": False, "ldaps://b:636": True}
    beat = json.loads(protocol.encode(runner.heartbeat()))
    assert beat["dc_reachable"] is True and beat["dcs"] == runner.dc_status and beat["in_flight"] == 0


class ChangingValidator(FakeValidator):
    """A validator with a service account: it changes passwords."""

    can_change_passwords = True

    def __init__(self) -> None:
        super().__init__(Verdict(Outcome.PASSWORD_CHANGED, user=DirectoryUser(
            object_guid="2f1c7a1e-8d6b-4c1a-9d55-0a4e1c7b9e01", upn="erin@corp.example.test")))
        self.changes: list[tuple[str, str, str]] = []

    async def change_password_async(self, username: str, current: str, new: str, *, deadline: float,
                                    groups: bool = False) -> Verdict:
        self.changes.append((username, current, new))
        return self.verdict


def change_request(identity, portal_signing_key, *, current: str, new: str) -> protocol.Request:
    values = {"request_id": "c" * 32, "tenant": TENANT, "domain": "corp.example.test",
              "username": "erin@corp.example.test", "key_id": identity.key_id, "expires_at": time.time() + 20}
    sealed = protocol.seal_password_change(public_key=identity.private_key.public_key(), current=current, new=new,
                                           **{k: values[k] for k in ("request_id", "tenant", "key_id", "expires_at")})
    return protocol.sign_request(protocol.Request(**values, sealed=sealed, kind=protocol.REQUEST_PASSWORD_CHANGE),
                                 portal_signing_key)


async def test_an_agent_with_a_service_account_announces_and_makes_password_changes(agent_config, identity,
                                                                                    portal_signing_key):
    validator = ChangingValidator()
    async with running_agent(agent_config, identity, validator) as (portal, _, _):
        ws, hello = await portal.accept()
        assert hello.capabilities == [protocol.CAPABILITY_PASSWORD_CHANGE]
        request = change_request(identity, portal_signing_key, current="0ld!Pa55", new="N\u00a0ew!Pa55")
        await send(ws, request)
        await receive(ws, protocol.Ack)
        result = await receive(ws, protocol.Result)
        assert result.outcome == "password_changed" and result.user["upn"] == "erin@corp.example.test"
        assert validator.changes == [("erin@corp.example.test", "0ld!Pa55", "N\u00a0ew!Pa55")]


async def test_an_agent_without_a_service_account_announces_nothing_and_refuses_a_change_before_its_ack(
        agent_config, identity, portal_signing_key):
    async with running_agent(agent_config, identity, FakeValidator()) as (portal, _, _):
        ws, hello = await portal.accept()
        assert hello.capabilities == []
        await send(ws, change_request(identity, portal_signing_key, current="0ld!Pa55", new="New!Pa55"))
        error = await receive(ws, protocol.Error)  # no ack: the portal may ask another agent
        assert (error.code, error.request_id) == ("unsupported", "c" * 32)


class GroupsValidator(FakeValidator):
    """A validator that reads groups (a base DN, groups not turned off)."""

    can_read_groups = True

    def __init__(self) -> None:
        super().__init__()
        self.verdict = dataclasses.replace(self.verdict, groups=[
            {"id": "5b0c2a8e-1111-4c1a-9d55-0a4e1c7b9e01", "name": "Sales", "dn": "CN=Sales,DC=corp"}])

    async def validate_async(self, username: str, password: str, *, deadline: float,
                             groups: bool = False) -> Verdict:
        verdict = await super().validate_async(username, password, deadline=deadline, groups=groups)
        return verdict if groups else dataclasses.replace(verdict, groups=None)


async def test_an_agent_that_reads_groups_announces_them_and_sends_them_only_when_asked(
        agent_config, identity, make_request):
    validator = GroupsValidator()
    async with running_agent(agent_config, identity, validator) as (portal, _, _):
        ws, hello = await portal.accept()
        assert hello.capabilities == [protocol.CAPABILITY_GROUPS]
        asked = make_request(groups=True)
        await send(ws, asked)
        await receive(ws, protocol.Ack)
        result = await receive(ws, protocol.Result)
        assert validator.groups_asked is True and [g["name"] for g in result.groups] == ["Sales"]
        # A request that does not ask (an older portal's) gets the result frame that portal knows.
        plain = make_request()
        await send(ws, plain)
        await receive(ws, protocol.Ack)
        result = await receive(ws, protocol.Result)
        assert validator.groups_asked is False and result.groups is None


async def test_a_node_that_leaves_is_left_at_once_for_another(agent_config, identity, caplog):
    """NODE_LEAVING: the portal node is stopping and takes no new connection; the agent reconnects with no
    backoff delay, so its sign-ins find it on another node within a round trip."""
    caplog.set_level(logging.INFO)
    async with running_agent(agent_config, identity) as (portal, runner, task):
        runner.backoff = Backoff(base=5.0, cap=5.0)  # a delay would show: the next accept would time out
        ws, hello = await portal.accept()
        assert hello.protocol == protocol.PROTOCOL_VERSION  # the challenge said the portal reads it
        await ws.close(code=int(CloseCode.NODE_LEAVING), reason="this node is stopping")
        await portal.accept()
        assert not task.done()
    assert "node is leaving; reconnecting at once" in caplog.text
    assert "reconnecting in" not in caplog.text


async def test_a_stop_while_an_ack_is_being_sent_still_answers_that_request(agent_config, identity, make_request):
    """The stop's wait for in-flight sign-ins began before the acked request's task existed: it found nothing,
    closed, and the bind's result was lost (the portal, acked, then answered agent_timeout)."""
    async with running_agent(agent_config, identity, FakeValidator(delay=0.2)) as (portal, runner, task):
        connect = runner.connector

        @contextlib.asynccontextmanager
        async def stop_during_the_ack(*args, **kwargs):
            async with connect(*args, **kwargs) as ws:
                send = ws.send

                async def send_and_stop(message, *more, **options):
                    if json.loads(message)["type"] == "ack":  # SIGTERM lands while the ack is on its way
                        runner.request_stop()
                        await asyncio.sleep(0.05)
                    await send(message, *more, **options)

                ws.send = send_and_stop
                yield ws

        runner.connector = stop_during_the_ack
        ws, _ = await portal.accept()
        request = make_request()
        await send(ws, request)
        await receive(ws, protocol.Ack)
        result = await receive(ws, protocol.Result)
        assert (result.request_id, result.outcome) == (request.request_id, "success")
        assert await asyncio.wait_for(task, FRAME_TIMEOUT) == EXIT_OK


async def test_a_node_that_says_try_later_is_asked_again_after_a_jittered_delay(agent_config, identity, caplog):
    """TRY_LATER: the node verifies as many hellos as it takes at once (a reconnect storm). The agent neither stops
    nor comes back at once: it waits its backoff's random delay, then connects again."""
    caplog.set_level(logging.INFO)
    async with running_agent(agent_config, identity) as (portal, runner, task):
        runner.backoff = Backoff(base=0.2, cap=0.2)
        ws = await portal.next_connection()
        await send(ws, protocol.Challenge(nonce=protocol.new_nonce()))
        await receive(ws, protocol.Hello)  # refused before its proof is verified: no welcome
        await ws.close(code=int(CloseCode.TRY_LATER), reason="too many handshakes at once")
        await portal.accept()
        assert not task.done()
    assert "4008 try_later" in caplog.text and "reconnecting in" in caplog.text
