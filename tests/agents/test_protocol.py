"""The pure protocol module: no Django, no database."""

import dataclasses
import json
import time
from typing import Any

import pta_protocol as protocol
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from pta_protocol import Outcome, ProtocolError


@pytest.fixture(scope="module")
def agent_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def portal_key():
    return ed25519.Ed25519PrivateKey.generate()


def sealed_request(agent_key, portal_key, *, password="Pa55 wörd\u00a0!", expires_in=10.0, **overrides):
    fields = {"request_id": "r-1", "tenant": "t-1", "domain": "corp.example.test", "username": "a@corp.example.test",
              "key_id": protocol.key_fingerprint(agent_key.public_key()), "expires_at": time.time() + expires_in}
    fields.update(overrides)
    sealed = protocol.seal_password(public_key=agent_key.public_key(), password=password,
                                    **{k: fields[k] for k in ("request_id", "tenant", "key_id", "expires_at")})
    return protocol.sign_request(protocol.Request(**fields, sealed=sealed), portal_key)


def test_heartbeats_fit_three_times_in_presence_expiry():
    assert protocol.HEARTBEAT_SECONDS * 3 < protocol.PRESENCE_TTL_SECONDS


def test_every_ad_subcode_maps_to_exactly_one_failure_outcome():
    for subcode, outcome in protocol.AD_SUBCODE_OUTCOMES.items():
        assert protocol.outcome_for_ad_subcode(subcode) is outcome
        assert protocol.outcome_for_ad_subcode(subcode.upper()) is outcome
        assert outcome is not Outcome.SUCCESS
    for unknown in ("52f", "568", "569", "", "zzz"):
        assert protocol.outcome_for_ad_subcode(unknown) is Outcome.INVALID_CREDENTIALS


@pytest.mark.parametrize("frame", [
    protocol.Challenge(nonce="abc"), protocol.Heartbeat(version="1", in_flight=3, dcs={"ldaps://x": True}),
    protocol.Ack(request_id="r"), protocol.Result(request_id="r", outcome="success", user={"mail": "a@b"}),
    protocol.Error(code="busy", message="full"), protocol.Renew(), protocol.Welcome(agent_id="a", renew=True),
    protocol.Renewal(csr="c", signature="s"), protocol.Renewed(certificate="c"),
])
def test_frames_round_trip(frame):
    assert protocol.decode(protocol.encode(frame)) == frame


@pytest.mark.parametrize("text,code", [
    ("not json", "malformed"), ("[]", "malformed"), ('{"type": 5}', "malformed"), ('{"type": "nope"}', "unknown_type"),
    ('{"type": "ack"}', "malformed"), ('{"type": "ack", "request_id": 5}', "malformed"),
    ('{"type": "heartbeat", "in_flight": true}', "malformed"), ("[" * 100_000, "too_large"),
    ('{"type": "heartbeat", "in_flight": ' + "[" * 5000 + "]" * 5000 + "}", "malformed"),
])
def test_bad_frames_raise_protocol_errors_only(text, code):
    with pytest.raises(ProtocolError) as raised:
        protocol.decode(text)
    assert raised.value.code == code


@pytest.mark.parametrize(("text", "code", "named"), [
    ('{"type": "hello", "certificate": "c", "signature": "s", "capabilities": "password_change"}', "malformed",
     "`$.capabilities`"),
    ('{"type": "heartbeat", "capacity": "32"}', "malformed", "`$.capacity`"),
    ('{"type": "welcome", "agent_id": "a", "renew": 1}', "malformed", "`$.renew`"),
    ('{"type": "heartbeat", "dcs": {"ldaps://dc": "yes"}}', "malformed", "`$.dcs"),
    ('{"type": "ack"}', "malformed", "`request_id`"),
    ('{"type": "heartbeat", "version": "' + "x" * protocol.MAX_FRAME_BYTES + '"}', "too_large",
     str(protocol.MAX_FRAME_BYTES)),
    ('{"type": "ack", "request_id": ', "malformed", "not valid JSON"),
    ('{"type": "teleport"}', "unknown_type", "'teleport'"),
])
def test_a_refused_frame_names_what_is_wrong(text, code, named):
    with pytest.raises(ProtocolError) as raised:
        protocol.decode(text)
    assert raised.value.code == code
    assert named in raised.value.message


def test_a_refused_frame_keeps_its_request_id_so_that_request_fails_at_once():
    with pytest.raises(ProtocolError) as raised:
        protocol.decode('{"type": "result", "request_id": "r-7", "outcome": 5}')
    assert (raised.value.request_id, raised.value.code) == ("r-7", "malformed")
    assert "`$.outcome`" in raised.value.message


def test_binary_frames_are_refused():
    with pytest.raises(ProtocolError):
        protocol.decode(b'{"type": "ack", "request_id": "r"}')


def test_sealed_password_opens_only_for_its_key_and_context(agent_key, portal_key):
    request = sealed_request(agent_key, portal_key)
    wire = protocol.decode(protocol.encode(request))
    assert isinstance(wire, protocol.Request)
    protocol.verify_request(wire, portal_key.public_key())
    assert protocol.open_envelope(private_key=agent_key, request=wire) == "Pa55 wörd\u00a0!"
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ProtocolError) as raised:
        protocol.open_envelope(private_key=other_key, request=wire)
    assert raised.value.code == "cannot_decrypt"
    # The associated data binds the request id, tenant, key id and expiry: moving the envelope fails.
    for change in ({"request_id": "r-2"}, {"tenant": "t-2"}, {"expires_at": wire.expires_at + 1}):
        with pytest.raises(ProtocolError):
            protocol.open_envelope(private_key=agent_key, request=dataclasses.replace(wire, **change))


def test_the_password_is_not_on_the_wire_in_clear(agent_key, portal_key):
    encoded = protocol.encode(sealed_request(agent_key, portal_key, password="Findable-Secret-123"))
    assert "Findable-Secret-123" not in encoded


def test_request_signature_covers_every_field(agent_key, portal_key):
    request = sealed_request(agent_key, portal_key)
    for change in ({"username": "b@corp.example.test"}, {"domain": "other.test"}, {"tenant": "t-2"},
                   {"sealed": {**request.sealed, "data": request.sealed["key"]}}):
        with pytest.raises(ProtocolError) as raised:
            protocol.verify_request(dataclasses.replace(request, **change), portal_key.public_key())
        assert raised.value.code == "bad_signature"
    forger = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(ProtocolError):
        protocol.verify_request(protocol.sign_request(request, forger), portal_key.public_key())


def test_password_requests_keep_their_wire_form_and_state_checks_sign_their_kind(agent_key, portal_key):
    request = sealed_request(agent_key, portal_key)
    wire = json.loads(protocol.encode(request))
    assert "kind" not in wire, "an agent that predates account-state checks must still read password requests"
    assert protocol.decode(protocol.encode(request)) == request
    state = protocol.sign_request(dataclasses.replace(request, kind=protocol.REQUEST_ACCOUNT_STATE, sealed={},
                                                      signature=""), portal_key)
    assert json.loads(protocol.encode(state))["kind"] == "account_state"
    protocol.verify_request(state, portal_key.public_key())
    with pytest.raises(ProtocolError):  # a state check cannot be turned into a password request, nor back
        protocol.verify_request(dataclasses.replace(state, kind=protocol.REQUEST_PASSWORD), portal_key.public_key())


def test_expired_and_far_future_requests_are_refused(agent_key, portal_key):
    with pytest.raises(ProtocolError) as raised:
        protocol.verify_request(sealed_request(agent_key, portal_key, expires_in=-1), portal_key.public_key())
    assert raised.value.code == "expired"
    with pytest.raises(ProtocolError):
        protocol.verify_request(sealed_request(agent_key, portal_key, expires_in=3600), portal_key.public_key())


def test_replay_guard_refuses_a_seen_request_until_it_expires():
    guard = protocol.ReplayGuard()
    now = 1000.0
    assert guard.check_and_remember("r", now + 30, now=now)
    assert not guard.check_and_remember("r", now + 30, now=now + 1)
    for i in range(2000):  # pruning keeps what has not expired yet
        guard.check_and_remember(f"x{i}", now + 5, now=now + 2)
    assert not guard.check_and_remember("r", now + 30, now=now + 10)


def test_challenge_signature(agent_key):
    nonce = protocol.new_nonce()
    signature = protocol.sign_challenge(agent_key, nonce)
    assert protocol.verify_challenge(agent_key.public_key(), nonce, signature)
    assert not protocol.verify_challenge(agent_key.public_key(), protocol.new_nonce(), signature)
    assert not protocol.verify_challenge(agent_key.public_key(), nonce, "not base64!")
    json.dumps(signature)


def change_request(agent_key, portal_key, *, current="0ld!Pa55 wörd", new='N\u00a0ew "quoted" Pa55!', **overrides):
    fields: dict[str, Any] = {"request_id": "r-9", "tenant": "t-1", "domain": "corp.example.test",
                              "username": "a@corp.example.test", "expires_at": time.time() + 10,
                              "key_id": protocol.key_fingerprint(agent_key.public_key())}
    fields.update(overrides)
    sealed = protocol.seal_password_change(public_key=agent_key.public_key(), current=current, new=new,
                                           **{k: fields[k] for k in ("request_id", "tenant", "key_id", "expires_at")})
    return protocol.sign_request(protocol.Request(**fields, sealed=sealed, kind=protocol.REQUEST_PASSWORD_CHANGE),
                                 portal_key)


def test_a_password_change_round_trips_sealed_signed_and_bound_to_its_kind(agent_key, portal_key):
    request = change_request(agent_key, portal_key)
    encoded = protocol.encode(request)
    assert "0ld!Pa55" not in encoded and "quoted" not in encoded and json.loads(encoded)["kind"] == "password_change"
    wire = protocol.decode(encoded)
    assert isinstance(wire, protocol.Request)
    protocol.verify_request(wire, portal_key.public_key())
    # Both passwords exactly as typed: no normalisation, the no-break space and the quotes kept.
    assert protocol.open_password_change(private_key=agent_key, request=wire) == (
        "0ld!Pa55 wörd", 'N\u00a0ew "quoted" Pa55!')
    # A change envelope never opens as a sign-in's password, nor a sign-in's as a change: the kind is bound.
    with pytest.raises(ProtocolError) as raised:
        protocol.open_envelope(private_key=agent_key, request=wire)
    assert raised.value.code == "cannot_decrypt"
    with pytest.raises(ProtocolError):
        protocol.open_password_change(private_key=agent_key, request=sealed_request(agent_key, portal_key))
    with pytest.raises(ProtocolError):  # the kind is signed: a change is not turned into a sign-in
        protocol.verify_request(dataclasses.replace(wire, kind=protocol.REQUEST_PASSWORD), portal_key.public_key())
    for change in ({"request_id": "r-2"}, {"tenant": "t-2"}, {"expires_at": wire.expires_at + 1}):
        with pytest.raises(ProtocolError):
            protocol.open_password_change(private_key=agent_key, request=dataclasses.replace(wire, **change))
    guard = protocol.ReplayGuard()
    assert guard.check_and_remember(wire.request_id, wire.expires_at)
    assert not guard.check_and_remember(wire.request_id, wire.expires_at)


def test_capabilities_are_announced_in_the_hello_and_left_off_when_there_are_none():
    plain = protocol.Hello(certificate="c", signature="s")
    assert "capabilities" not in json.loads(protocol.encode(plain)), "an older portal refuses unknown fields"
    read = protocol.decode(protocol.encode(plain))
    assert isinstance(read, protocol.Hello) and read.capabilities == []
    able = protocol.Hello(certificate="c", signature="s", capabilities=[protocol.CAPABILITY_PASSWORD_CHANGE])
    assert protocol.decode(protocol.encode(able)) == able
    for bad in ('"password_change"', "[1]", '[["nested"]]', "[" + ",".join(['"x"'] * 17) + "]", "{}"):
        with pytest.raises(ProtocolError) as raised:
            protocol.decode('{"type": "hello", "certificate": "c", "signature": "s", "capabilities": ' + bad + "}")
        assert raised.value.code == "malformed"


def test_change_outcomes_answer_only_a_change_and_a_change_is_never_answered_success():
    change, password = protocol.REQUEST_PASSWORD_CHANGE, protocol.REQUEST_PASSWORD
    for outcome in (Outcome.PASSWORD_CHANGED, Outcome.PASSWORD_REJECTED):
        assert outcome.is_directory_answer and outcome.answers(change)
        assert not outcome.answers(password) and not outcome.answers(protocol.REQUEST_ACCOUNT_STATE)
    assert not Outcome.SUCCESS.answers(change) and Outcome.SUCCESS.answers(password)
    for outcome in (Outcome.INVALID_CREDENTIALS, Outcome.ACCOUNT_LOCKED, Outcome.DIRECTORY_UNAVAILABLE):
        assert outcome.answers(change) and outcome.answers(password)
    for outcome in (Outcome.AGENT_ERROR, Outcome.AGENT_TIMEOUT):  # the agent's own failures answer nothing
        assert not outcome.answers(change) and not outcome.answers(password)


# --- groups (docs/architecture.md, "Groups"): asked for only from an agent that announced them ----------------

GROUP = protocol.Group(id="8c1f0a4e-0d4e-4a52-9b1e-3f1b3c8f6a10", name="Sales", dn="CN=Sales,CN=Users,DC=corp,DC=test")


def test_a_request_that_asks_no_groups_keeps_the_wire_form_an_older_agent_verifies(agent_key, portal_key):
    plain = protocol.Request(request_id="r", tenant="t", domain="d", username="u", key_id="k", expires_at=1.0,
                             sealed={})
    assert "groups" not in json.loads(protocol.encode(plain)), "an older agent refuses unknown fields"
    asking = protocol.sign_request(dataclasses.replace(plain, groups=True), portal_key)
    read = protocol.decode(protocol.encode(asking))
    assert isinstance(read, protocol.Request) and read.groups is True
    protocol.verify_request(read, portal_key.public_key(), now=0.5)
    # The flag is signed: a relay cannot add or drop it.
    with pytest.raises(ProtocolError):
        protocol.verify_request(dataclasses.replace(read, groups=False), portal_key.public_key(), now=0.5)


def test_an_older_agents_result_without_groups_reads_as_not_read():
    old = '{"type":"result","request_id":"r","outcome":"success","user":{"upn":"a@b"}}'
    read = protocol.decode(old)
    assert isinstance(read, protocol.Result) and read.groups is None and read.groups_truncated is False


def test_a_result_without_groups_is_the_frame_an_older_portal_knows_and_one_with_them_round_trips():
    bare = protocol.Result(request_id="r", outcome="success")
    assert set(json.loads(protocol.encode(bare))) == {"type", "request_id", "outcome", "ad_subcode", "latency_ms",
                                                      "user", "detail"}
    full = protocol.Result(request_id="r", outcome="success", groups=[GROUP], groups_truncated=True)
    assert protocol.decode(protocol.encode(full)) == full
    empty = protocol.decode(protocol.encode(protocol.Result(request_id="r", outcome="success", groups=[])))
    assert isinstance(empty, protocol.Result) and empty.groups == [], "no groups is not the same as not read"


@pytest.mark.parametrize("groups, named", [
    ('[{"id": "x", "name": "n"}]', "`dn`"),
    ('[{"id": 1, "name": "n", "dn": "d"}]', "`$.groups[0].id`"),
    ('{"id": "x"}', "`$.groups`"),
    ('[{"id": "x", "name": "n", "dn": "' + "d" * 3000 + '"}]', "`$.groups[0].dn`"),
])
def test_malformed_groups_are_refused_and_named(groups, named):
    with pytest.raises(ProtocolError) as refused:
        protocol.decode('{"type":"result","request_id":"r","outcome":"success","groups":' + groups + "}")
    assert named in refused.value.message and refused.value.request_id == "r"


def test_a_later_agents_extra_group_key_is_ignored():
    extra = json.dumps({**GROUP, "sid": "S-1"})
    text = '{"type":"result","request_id":"r","outcome":"success","groups":[' + extra + "]}"
    read = protocol.decode(text)
    assert isinstance(read, protocol.Result) and read.groups == [GROUP]


def test_groups_beyond_the_frames_budget_are_cut_and_marked():
    many = [protocol.Group(id=GROUP["id"], name=f"group-{i:04d}", dn=f"CN=group-{i:04d},OU=Groups,DC=corp,DC=test")
            for i in range(1000)]
    kept, truncated = protocol.groups_within_budget(many)
    assert truncated and 0 < len(kept) < len(many) and kept == many[:len(kept)]
    frame = protocol.encode(protocol.Result(request_id="r", outcome="success", groups=kept, groups_truncated=True))
    assert len(frame.encode()) < protocol.MAX_FRAME_BYTES
    assert protocol.groups_within_budget(many[:200]) == (many[:200], False)


# --- versions: a portal N with agents N-1 and N --------------------------------------------------------------


def test_a_reader_ignores_fields_it_does_not_know():
    beat = protocol.decode('{"type": "heartbeat", "in_flight": 2, "cpu": 0.5, "later": {"x": [1]}}')
    assert beat == protocol.Heartbeat(in_flight=2)
    ack = protocol.decode('{"type": "ack", "request_id": "r", "received_at": 1.5}')
    assert ack == protocol.Ack(request_id="r")


def test_an_unknown_field_never_hides_a_wrong_known_one():
    with pytest.raises(ProtocolError) as raised:
        protocol.decode('{"type": "heartbeat", "capacity": "32", "later": 1}')
    assert "`$.capacity`" in raised.value.message


def test_a_newer_portals_request_field_is_kept_and_its_signature_still_verifies(agent_key, portal_key):
    """The portal signs every field it sends; an agent that does not know one still checks the signature over
    it (a request of a newer portal verifies), and nobody can add a field to a signed request unnoticed."""
    request = sealed_request(agent_key, portal_key)
    newer = protocol.sign_request(dataclasses.replace(request, extensions={"priority": "high"}), portal_key)
    received = protocol.decode(protocol.encode(newer))
    assert isinstance(received, protocol.Request)
    assert received.extensions == {"priority": "high"} and received.username == request.username
    protocol.verify_request(received, portal_key.public_key())
    assert protocol.open_envelope(private_key=agent_key, request=received) == "Pa55 wörd\u00a0!"
    tampered = json.loads(protocol.encode(request))
    tampered["priority"] = "high"  # added on the way, without the portal's key
    forged = protocol.decode(json.dumps(tampered))
    assert isinstance(forged, protocol.Request)
    with pytest.raises(ProtocolError) as raised:
        protocol.verify_request(forged, portal_key.public_key())
    assert raised.value.code == "bad_signature"


def test_an_extension_never_replaces_a_field_of_the_request(agent_key, portal_key):
    request = sealed_request(agent_key, portal_key)
    shadow = dataclasses.replace(request, extensions={"username": "mallory@x", "type": "ack"})
    assert json.loads(protocol.encode(shadow))["username"] == request.username
    decoded = protocol.decode(protocol.encode(shadow))
    assert isinstance(decoded, protocol.Request) and decoded.extensions == {}


def test_an_unknown_frame_type_is_an_error_code_the_sender_understands():
    with pytest.raises(ProtocolError) as raised:
        protocol.decode('{"type": "handover", "to": "node-2"}')
    assert raised.value.code == "unknown_type"


def test_the_hello_carries_the_agents_version_only_to_a_portal_that_reads_it():
    """A version-1 portal refused unknown fields: the hello it gets is the one it knew."""
    old = protocol.Hello(certificate="c", signature="s", version="1.0", capacity=4)
    assert "protocol" not in json.loads(protocol.encode(old))
    new = dataclasses.replace(old, protocol=protocol.PROTOCOL_VERSION)
    assert json.loads(protocol.encode(new))["protocol"] == protocol.PROTOCOL_VERSION
    for hello, version in ((new, protocol.PROTOCOL_VERSION), (old, 1)):
        decoded = protocol.decode(protocol.encode(hello))
        assert isinstance(decoded, protocol.Hello) and decoded.protocol == version
    challenge = protocol.decode(protocol.encode(protocol.Challenge(nonce="n")))
    assert isinstance(challenge, protocol.Challenge) and challenge.protocol == protocol.PROTOCOL_VERSION


def test_node_leaving_means_reconnect_not_stop():
    assert not protocol.CloseCode.NODE_LEAVING.is_final
    assert protocol.CloseCode.NODE_LEAVING not in (protocol.CloseCode.RENEWED, protocol.CloseCode.PROTOCOL_ERROR)
