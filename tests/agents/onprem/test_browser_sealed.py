"""Envelopes sealed in the browser reach the agent through a portal that could not open them (issue 28): the agent
alone stands between a tampered envelope and a bind. Each attack is played as the portal's side of the agent socket
would play it: an envelope sealed to one binding (request id, tenant, key id, expiry, kind), sent under another. Every
one ends in a definite refusal (an error frame before the ack, or agent_error after it), never a bind."""

from __future__ import annotations

import json
import time

import pta_protocol as protocol
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pta_agent.directory import DirectoryValidator, Verdict
from pta_protocol import Outcome

from .conftest import DOMAIN, TENANT
from .test_runner import FakeValidator, receive, running_agent, send


def browser_envelope(public_key: rsa.RSAPublicKey, password: str, *, request_id: str, tenant: str, key_id: str,
                     expires_at: float) -> dict:
    """What the page's script posts for one candidate: the portal's ticket gives it the associated data."""
    return protocol.seal_password(public_key=public_key, password=password, request_id=request_id, tenant=tenant,
                                  key_id=key_id, expires_at=expires_at)


def signed(identity, portal_signing_key, sealed: dict, **fields) -> protocol.Request:
    values = {"request_id": "a" * 32, "tenant": TENANT, "domain": DOMAIN, "username": f"alice@{DOMAIN}",
              "key_id": identity.key_id, "expires_at": round(time.time() + 20, 3)} | fields
    return protocol.sign_request(protocol.Request(**values, sealed=sealed), portal_signing_key)


@pytest.fixture
def ticket(identity):
    return {"request_id": "b" * 32, "tenant": TENANT, "key_id": identity.key_id,
            "expires_at": round(time.time() + 20, 3)}


async def test_tampered_browser_envelopes_are_refused_with_a_definite_outcome(agent_config, identity,
                                                                             portal_signing_key, ticket):
    validator = FakeValidator()
    other_agent = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    mine = browser_envelope(identity.private_key.public_key(), "Marker-Pa55", **ticket)
    after_ack = {
        # The envelope of one sign-in sent under another's request id: the associated data no longer matches.
        "wrong_request_id": signed(identity, portal_signing_key, mine, request_id="c" * 32,
                                   expires_at=ticket["expires_at"]),
        # Sealed for another agent's key (its key id in the binding), handed to this one under this one's id.
        "another_agents_envelope": signed(identity, portal_signing_key, browser_envelope(
            other_agent.public_key(), "Marker-Pa55", **(ticket | {"key_id": protocol.key_fingerprint(
                other_agent.public_key()), "request_id": "d" * 32})), request_id="d" * 32,
            expires_at=ticket["expires_at"]),
        # Sealed to another tenant's binding (and key id), sent as this tenant's request.
        "another_tenants_binding": signed(identity, portal_signing_key, browser_envelope(
            identity.private_key.public_key(), "Marker-Pa55", **(ticket | {"tenant": "other-tenant",
                                                                          "request_id": "e" * 32})),
            request_id="e" * 32, expires_at=ticket["expires_at"]),
        # The expiry moved (the portal would keep a stale envelope alive): bound to the old one.
        "expiry_moved": signed(identity, portal_signing_key, browser_envelope(
            identity.private_key.public_key(), "Marker-Pa55", **(ticket | {"request_id": "2" * 32})),
            request_id="2" * 32, expires_at=ticket["expires_at"] + 5),
    }
    before_ack = {
        "wrong_key": signed(identity, portal_signing_key, mine, request_id="f" * 32, key_id="0" * 64),
        "expired": signed(identity, portal_signing_key, browser_envelope(
            identity.private_key.public_key(), "Marker-Pa55", **(ticket | {"request_id": "1" * 32,
                                                                          "expires_at": time.time() - 1})),
            request_id="1" * 32, expires_at=time.time() - 1),
    }
    good = signed(identity, portal_signing_key, mine, request_id=ticket["request_id"],
                  expires_at=ticket["expires_at"])
    async with running_agent(agent_config, identity, validator) as (portal, _, _):
        ws, _ = await portal.accept()
        for name, request in after_ack.items():
            await send(ws, request)
            await receive(ws, protocol.Ack)
            result = await receive(ws, protocol.Result)
            assert (result.outcome, result.detail) == ("agent_error", "cannot_decrypt"), name
        for code, request in before_ack.items():
            await send(ws, request)
            error = await receive(ws, protocol.Error)
            assert (error.code, error.request_id) == (code, request.request_id)
        await send(ws, good)
        await receive(ws, protocol.Ack)
        assert (await receive(ws, protocol.Result)).outcome == "success"
        await send(ws, good)  # the same envelope again: a replay
        error = await receive(ws, protocol.Error)
        assert (error.code, error.request_id) == ("replay", good.request_id)
    assert validator.calls == [(f"alice@{DOMAIN}", "Marker-Pa55")]  # one bind: the untampered envelope's


class ChangeRecorder(FakeValidator):
    can_change_passwords = True

    def __init__(self) -> None:
        super().__init__()
        self.changes: list[tuple[str, str, str]] = []

    async def change_password_async(self, username, current, new, *, deadline, groups=False) -> Verdict:
        self.changes.append((username, current, new))
        return Verdict(Outcome.PASSWORD_CHANGED, user=self.verdict.user)


async def test_a_change_whose_two_new_passwords_differ_is_refused_by_the_agent(agent_config, identity,
                                                                              portal_signing_key):
    validator = ChangeRecorder()
    expires_at = round(time.time() + 20, 3)

    def sealed_change(request_id: str, confirm: str) -> protocol.Request:
        # As the page's script seals it: the three fields in one JSON object, bound to the change's kind.
        aad = protocol.associated_data(request_id=request_id, tenant=TENANT, key_id=identity.key_id,
                                       expires_at=expires_at, kind=protocol.REQUEST_PASSWORD_CHANGE)
        plain = json.dumps({"current": "0ld-Pa55", "new": "N3w-Pa55", "confirm": confirm}).encode()
        sealed = protocol._seal(public_key=identity.private_key.public_key(), plain=plain, aad=aad)
        return signed(identity, portal_signing_key, sealed, request_id=request_id, username=f"erin@{DOMAIN}",
                      kind=protocol.REQUEST_PASSWORD_CHANGE, expires_at=expires_at)

    async with running_agent(agent_config, identity, validator) as (portal, _, _):
        ws, _ = await portal.accept()
        for request_id, confirm, expected in (("8" * 32, "N3w-Pa5S", "password_rejected"),
                                              ("9" * 32, "N3w-Pa55", "password_changed")):
            await send(ws, sealed_change(request_id, confirm))
            await receive(ws, protocol.Ack)
            result = await receive(ws, protocol.Result)
            assert result.outcome == expected, result
            assert result.detail.startswith("mismatch") == (expected == "password_rejected")
    assert validator.changes == [(f"erin@{DOMAIN}", "0ld-Pa55", "N3w-Pa55")]  # only the matching one changed


@pytest.mark.parametrize(("password", "refusal"), [("", "empty_password"), ("x" * 513, "too_long"),
                                                   ("Pa55\x00word", "control_characters")])
def test_the_agent_refuses_what_the_portal_used_to_before_any_bind(password, refusal):
    """Sealed in the browser, only the agent sees the password: the same refusals, the same outcome
    (invalid_credentials), with no connection to a DC (no URL answers here)."""
    assert protocol.password_refusal(password) == refusal
    validator = DirectoryValidator.__new__(DirectoryValidator)  # validate() refuses before it touches a pool
    validator.options = None  # type: ignore[assignment]
    verdict = DirectoryValidator.validate(validator, f"alice@{DOMAIN}", password)
    assert (verdict.outcome, verdict.detail) == (Outcome.INVALID_CREDENTIALS, refusal)
    assert protocol.password_refusal("x" * 512) == ""
