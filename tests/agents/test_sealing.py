"""Sealing in the browser, the portal's side (agents/services/sealing.py and the hand-off): a ticket's binding is
the agent's view of the request byte for byte, failover uses the next candidate's envelope, and posted envelopes
that do not fit the ticket are refused before any agent. The envelopes are sealed here exactly as the page's script
seals them (from the ticket's JSON alone: its SubjectPublicKeyInfo and associated data); the agents are test_handoff's
fakes, which open each envelope with the agent's own function (pta_protocol.open_envelope)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time

import pta_protocol as protocol
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agents.handoff import HandoffOutcome
from agents.services import sealing
from agents.services.dispatch import password_validate
from agents.services.sealing import (
    SealingRefused,
    browser_sealed_parse,
    sealing_ticket_current,
    sealing_ticket_issue,
    ticket_for_page,
)
from tests.agents import test_handoff
from tests.agents.test_handoff import DOMAIN, answers, held, never_acks, until

# test_handoff's fake agents and short deadlines.
connect, registered, short_deadlines = test_handoff.connect, test_handoff.registered, test_handoff.short_deadlines

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "Seal-Marker-h\u00f6rse"


def seal_as_the_page_does(candidate: dict, plain: bytes) -> dict:
    """signin.js's sealFor, step by step: import the SPKI for RSA-OAEP-SHA256, a fresh AES-256-GCM key, a 96-bit
    nonce, the ticket's associated data as additionalData, the raw key wrapped."""
    agent_key = serialization.load_der_public_key(base64.b64decode(candidate["spki"]))
    content_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    data = AESGCM(content_key).encrypt(nonce, plain, base64.b64decode(candidate["aad"]))
    wrapped = agent_key.encrypt(content_key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),  # type: ignore[union-attr]
                                                          algorithm=hashes.SHA256(), label=None))
    return {"alg": "RSA-OAEP-256+A256GCM", "key": base64.b64encode(wrapped).decode(),
            "nonce": base64.b64encode(nonce).decode(), "data": base64.b64encode(data).decode()}


def posted(ticket: dict, password: str = PASSWORD, *, request_id: str | None = None) -> str:
    envelopes = {c["key_id"]: seal_as_the_page_does(c, password.encode()) for c in ticket["candidates"]}
    return json.dumps({"request_id": request_id or ticket["request_id"], "envelopes": envelopes})


async def test_the_page_seals_to_the_agents_own_view_of_the_binding(tenant_a, connect):
    relayed = await connect(0, answers("success"), relayed=True)  # its request crosses the channel layer as JSON
    ticket = await sealing_ticket_issue(tenant_id=str(tenant_a.pk), domain=DOMAIN)
    assert ticket is not None and [c["key_id"] for c in ticket["candidates"]] == [relayed.key_id]
    ticket = json.loads(json.dumps(ticket))  # as the session keeps it
    sealed = browser_sealed_parse(ticket=ticket, posted=posted(ticket), kind=protocol.REQUEST_PASSWORD)
    assert sealed.agent_ids == (relayed.agent_id,)  # the hand-off reads this agent's presence, not the tenant's
    assert all("agent_id" not in c for c in ticket_for_page(ticket)["candidates"])  # the page is not told who
    validation = await password_validate(tenant_id=str(tenant_a.pk), domain=DOMAIN,
                                         username=f"alice@{DOMAIN}", sealed=sealed)
    assert validation.outcome is protocol.Outcome.SUCCESS
    assert validation.request_id == ticket["request_id"]
    assert relayed.asked == [PASSWORD]  # opened by the agent's own function, with its own view of the binding


async def test_the_ticket_names_the_least_loaded_agents_and_no_more_than_its_few(tenant_a, connect, monkeypatch):
    release = asyncio.Event()
    busy = await connect(0, held(release))  # the most recent heartbeat: first, all else equal
    idle = await connect(1, answers("success"))
    signing_in = asyncio.create_task(password_validate(tenant_id=str(tenant_a.pk), domain=DOMAIN,
                                                       username=f"alice@{DOMAIN}", password=PASSWORD))
    await until(lambda: busy.in_flight == 1)
    ticket = await sealing_ticket_issue(tenant_id=str(tenant_a.pk), domain=DOMAIN)
    assert ticket is not None and [c["key_id"] for c in ticket["candidates"]] == [idle.key_id, busy.key_id]
    monkeypatch.setattr(sealing, "CANDIDATES", 1)
    ticket = await sealing_ticket_issue(tenant_id=str(tenant_a.pk), domain=DOMAIN)
    assert ticket is not None and [c["key_id"] for c in ticket["candidates"]] == [idle.key_id]
    release.set()
    assert (await signing_in).outcome is protocol.Outcome.SUCCESS


async def test_failover_uses_the_next_candidates_envelope(tenant_a, connect):
    silent = await connect(0, never_acks)
    other = await connect(1, answers("success"))
    ticket = await sealing_ticket_issue(tenant_id=str(tenant_a.pk), domain=DOMAIN)
    assert ticket is not None
    sealed = browser_sealed_parse(ticket=ticket, posted=posted(ticket), kind=protocol.REQUEST_PASSWORD)
    validation = await password_validate(tenant_id=str(tenant_a.pk), domain=DOMAIN,
                                         username=f"alice@{DOMAIN}", sealed=sealed)
    assert validation.outcome is protocol.Outcome.SUCCESS and validation.agent_id == other.agent_id
    assert silent.asked == [PASSWORD] and other.asked == [PASSWORD]  # each its own envelope, the same password


async def test_no_candidate_left_means_a_new_ticket_and_no_agent_without_an_envelope(tenant_a, connect):
    gone = await connect(0, answers("success"))
    ticket = await sealing_ticket_issue(tenant_id=str(tenant_a.pk), domain=DOMAIN)
    assert ticket is not None and [c["key_id"] for c in ticket["candidates"]] == [gone.key_id]
    assert await sealing_ticket_current(ticket=ticket, tenant_id=str(tenant_a.pk), domain=DOMAIN,
                                        kind=protocol.REQUEST_PASSWORD) is ticket  # fresh, its agent connected
    await gone.close_for(protocol.CloseCode.PROTOCOL_ERROR, "killed")
    newcomer = await connect(1, answers("success"))
    sealed = browser_sealed_parse(ticket=ticket, posted=posted(ticket), kind=protocol.REQUEST_PASSWORD)
    validation = await password_validate(tenant_id=str(tenant_a.pk), domain=DOMAIN,
                                         username=f"alice@{DOMAIN}", sealed=sealed)
    assert validation.outcome is HandoffOutcome.NO_AGENT_AVAILABLE and newcomer.asked == []  # it has no envelope
    fresh = await sealing_ticket_current(ticket=ticket, tenant_id=str(tenant_a.pk), domain=DOMAIN,
                                         kind=protocol.REQUEST_PASSWORD)
    assert fresh is not None and fresh["request_id"] != ticket["request_id"]
    assert [c["key_id"] for c in fresh["candidates"]] == [newcomer.key_id]  # the page seals again for it


async def test_envelopes_that_do_not_fit_the_ticket_are_refused_before_any_agent(tenant_a, connect):
    await connect(0, answers("success"))
    ticket = await sealing_ticket_issue(tenant_id=str(tenant_a.pk), domain=DOMAIN)
    assert ticket is not None
    good = posted(ticket)
    envelope = next(iter(json.loads(good)["envelopes"].values()))
    cases = {
        "wrong_request": posted(ticket, request_id="0" * 32),
        "wrong_key": json.dumps({"request_id": ticket["request_id"], "envelopes": {"f" * 64: envelope}}),
        "malformed": json.dumps({"request_id": ticket["request_id"],
                                 "envelopes": {ticket["candidates"][0]["key_id"]: {**envelope, "key": "AAAA"}}}),
        "too_large": "x" * 20_000,
    }
    for reason, body in cases.items():
        with pytest.raises(SealingRefused) as refused:
            browser_sealed_parse(ticket=ticket, posted=body, kind=protocol.REQUEST_PASSWORD)
        assert refused.value.reason == reason
    for reason, ticket_used, kind, now in (
            ("no_ticket", None, protocol.REQUEST_PASSWORD, None),
            ("wrong_kind", ticket, protocol.REQUEST_PASSWORD_CHANGE, None),
            ("expired", ticket, protocol.REQUEST_PASSWORD, ticket["expires_at"] - 1)):
        with pytest.raises(SealingRefused) as refused:
            browser_sealed_parse(ticket=ticket_used, posted=good, kind=kind, now=now)
        assert refused.value.reason == reason
    assert browser_sealed_parse(ticket=ticket, posted=good, kind=protocol.REQUEST_PASSWORD,
                                now=time.time()).request_id == ticket["request_id"]


def test_an_envelope_of_the_right_form_only():
    key = {"alg": protocol.SEAL_ALGORITHM, "key": base64.b64encode(b"k" * 256).decode(),
           "nonce": base64.b64encode(b"n" * 12).decode(), "data": base64.b64encode(b"d" * 40).decode()}
    assert protocol.envelope_well_formed(key)
    for broken in ({**key, "alg": "none"}, {**key, "nonce": base64.b64encode(b"n" * 8).decode()},
                   {**key, "data": "***"}, {**key, "extra": "1"}, {"alg": key["alg"]}, "text"):
        assert not protocol.envelope_well_formed(broken)
