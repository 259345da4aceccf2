"""The agent protocol: frames, the sealed password envelope, request signatures and the outcomes an agent
reports (the portal's full taxonomy, with the page texts, is signin/outcomes.py).

Pure Python (no Django): imported by the portal and by the on-premises agent alike.

Frames are JSON text messages with a ``type`` tag. A connection goes:

    portal → agent   challenge {nonce}
    agent  → portal  hello {certificate, signature over the nonce, version, hostname, capacity}
    portal → agent   welcome {agent_id, heartbeat_seconds, renew}       (or close 4xxx)
    agent  → portal  heartbeat {...}                                     every HEARTBEAT_SECONDS
    portal → agent   request {sealed password, signed}  → agent: ack at once, then result
                     (kind "password_change": old and new password sealed together, only to an agent whose
                     hello announced the "password_change" capability)
                     (groups: true, only to an agent that announced "groups": the result carries the user's
                     transitive groups, or none at all when not asked)
    portal → agent   renew {}  → agent: renewal {csr signed with the old key} → portal: renewed {certificate}
    either side      error {code, message}                                for a frame it cannot use
    portal → agent   close NODE_LEAVING (4007) once the node's requests on it are answered: reconnect at once
    portal → agent   close TRY_LATER (4008) for a hello beyond the handshakes the node verifies at once, or (before
                     the challenge) an opening beyond those it holds at once: reconnect after the backoff's jittered
                     delay

Versions (PROTOCOL_VERSION): the challenge carries the portal's, the hello the agent's (left off the wire at 1, the
value of an agent that does not send it), so each side knows what the other reads. From version 2 on, a reader
ignores fields it does not know (a request keeps them, as its signature covers them: ``Request.extensions``)
and answers a frame type it does not know with an ``unknown_type`` error frame, never by closing. A sender sends
a field or frame only to a peer whose version (or announced capability) reads it: version 1 refused unknown
fields. docs/agent.md ("Versions") says which versions work together.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import json
import os
import time
import typing
import unicodedata
from dataclasses import dataclass, field

import msgspec
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# 1: the first (unknown fields refused). 2: unknown fields ignored, hello.protocol, CloseCode.NODE_LEAVING, a request
# of an unknown kind refused before the ack with "unsupported".
PROTOCOL_VERSION = 2
WEBSOCKET_PATH = "/agent/ws/"
REGISTER_PATH = "/agent/register/"
HEARTBEAT_SECONDS = 10
# Three missed heartbeats and an agent is gone.
PRESENCE_TTL_SECONDS = 3 * HEARTBEAT_SECONDS + 5
MAX_REQUEST_AGE_SECONDS = 30
MAX_FRAME_BYTES = 64 * 1024
AUTH_CONTEXT = b"pta-agent-auth-v1\x00"
RENEWAL_CONTEXT = b"pta-agent-renewal-v1\x00"
AGENT_KEY_BITS = 2048


class Outcome(enum.StrEnum):
    """What an agent reports about a request: the directory's answer, or that it could not get one. The codes
    cross the wire and are a stable interface. Outcomes the portal decides itself, and the words its pages
    show for each, are the portal's (they never cross the wire)."""

    SUCCESS = "success"
    INVALID_CREDENTIALS = "invalid_credentials"
    LOGON_HOURS = "logon_hours"
    WORKSTATION_RESTRICTED = "workstation_restricted"
    PASSWORD_EXPIRED = "password_expired"
    ACCOUNT_DISABLED = "account_disabled"
    ACCOUNT_EXPIRED = "account_expired"
    PASSWORD_MUST_CHANGE = "password_must_change"
    ACCOUNT_LOCKED = "account_locked"
    DIRECTORY_UNAVAILABLE = "directory_unavailable"
    # The agent's own failures after its ack: no DC answered within its deadline, or it could not check (an
    # envelope it cannot open, a change without a service account). Never an answer about the account.
    AGENT_TIMEOUT = "agent_timeout"
    AGENT_ERROR = "agent_error"
    # Answers to a password change (request kind "password_change"), and only to one.
    PASSWORD_CHANGED = "password_changed"
    PASSWORD_REJECTED = "password_rejected"

    @property
    def is_directory_answer(self) -> bool:
        """An answer about the account from AD itself (counts for lockout, never retried)."""
        return self in AD_SUBCODE_OUTCOMES.values() or self in (Outcome.SUCCESS, *CHANGE_ANSWERS)

    def answers(self, kind: str) -> bool:
        """Whether an agent may give this outcome to a request of ``kind``: a password change is answered
        PASSWORD_CHANGED, never SUCCESS, and only a password change may be answered with a change outcome."""
        if not (self.is_directory_answer or self is Outcome.DIRECTORY_UNAVAILABLE):
            return False
        if kind == REQUEST_PASSWORD_CHANGE:
            return self is not Outcome.SUCCESS
        return self not in CHANGE_ANSWERS


CHANGE_ANSWERS = (Outcome.PASSWORD_CHANGED, Outcome.PASSWORD_REJECTED)

# AD answers a failed simple bind with result 49 and "data <hex>" in its message.
AD_SUBCODE_OUTCOMES: dict[str, Outcome] = {
    "525": Outcome.INVALID_CREDENTIALS,
    "52e": Outcome.INVALID_CREDENTIALS,
    "530": Outcome.LOGON_HOURS,
    "531": Outcome.WORKSTATION_RESTRICTED,
    "532": Outcome.PASSWORD_EXPIRED,
    "533": Outcome.ACCOUNT_DISABLED,
    "701": Outcome.ACCOUNT_EXPIRED,
    "773": Outcome.PASSWORD_MUST_CHANGE,
    "775": Outcome.ACCOUNT_LOCKED,
}


def outcome_for_ad_subcode(subcode: str) -> Outcome:
    """Any sub-code AD may add later is still a failed password, never a success."""
    return AD_SUBCODE_OUTCOMES.get(subcode.strip().lower(), Outcome.INVALID_CREDENTIALS)


class CloseCode(enum.IntEnum):
    """WebSocket close codes the portal sends after accept(); the agent logs them and acts."""

    PROTOCOL_ERROR = 4000
    BAD_SIGNATURE = 4001
    UNKNOWN_CERTIFICATE = 4002
    REVOKED = 4003
    CERTIFICATE_EXPIRED = 4004
    HANDSHAKE_TIMEOUT = 4005
    RENEWED = 4006  # the agent renewed: reconnect with the new key
    # The portal node is stopping (a restart or an upgrade): it has answered what it owed on this connection and
    # takes no new connection, so reconnecting at once reaches another node. An agent of version 1 does not know
    # the code and reconnects after its first backoff delay (at most 1 s).
    NODE_LEAVING = 4007
    # The node is verifying as many hellos as it takes at once (a reconnect storm): reconnect after the backoff's
    # jittered delay. An older agent, which does not know the code, backs off the same way (it is not final).
    # (RFC 6455's own 1013 "try again later" is not one a server may send through Daphne: 1000 or 3000–4999.)
    TRY_LATER = 4008

    @property
    def is_final(self) -> bool:
        """The agent must stop instead of reconnecting."""
        return self in (CloseCode.REVOKED, CloseCode.UNKNOWN_CERTIFICATE, CloseCode.CERTIFICATE_EXPIRED)


# --- frames -------------------------------------------------------------------------------------------


class ProtocolError(Exception):
    """A frame that cannot be used. ``code`` goes into the error frame sent back."""

    def __init__(self, code: str, message: str, request_id: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True)
class Challenge:
    type: typing.ClassVar[str] = "challenge"
    nonce: str
    protocol: int = PROTOCOL_VERSION


# The agent has a service account and changes expired and must-change passwords (request kind PASSWORD_CHANGE).
CAPABILITY_PASSWORD_CHANGE = "password_change"
# The agent reads the user's transitive groups (AD's tokenGroups) when a request asks (Request.groups).
CAPABILITY_GROUPS = "groups"
MAX_CAPABILITIES = 16
# A short list of short names, nothing nested.
Capabilities = typing.Annotated[list[typing.Annotated[str, msgspec.Meta(max_length=64)]],
                                msgspec.Meta(max_length=MAX_CAPABILITIES)]


@dataclass(frozen=True)
class Hello:
    type: typing.ClassVar[str] = "hello"
    certificate: str
    signature: str
    version: str = ""
    hostname: str = ""
    capacity: int = 0
    # What this agent can do beyond validating passwords (CAPABILITY_*). Left off the wire when empty: an
    # older portal refuses unknown fields, and an agent without a service account announces nothing.
    capabilities: Capabilities = field(default_factory=list)
    # The agent's PROTOCOL_VERSION; sent only to a portal whose challenge says it reads it (version 2 on): left off
    # the wire at 1, so a version-1 portal, which refuses unknown fields, gets the hello it knows.
    protocol: int = 1


@dataclass(frozen=True)
class Welcome:
    type: typing.ClassVar[str] = "welcome"
    agent_id: str
    heartbeat_seconds: int = HEARTBEAT_SECONDS
    renew: bool = False


@dataclass(frozen=True)
class Heartbeat:
    type: typing.ClassVar[str] = "heartbeat"
    version: str = ""
    in_flight: int = 0
    capacity: int = 0
    dc_reachable: bool = True
    dcs: dict[str, bool] = field(default_factory=dict)  # DC URL → answered the last probe


@dataclass(frozen=True)
class Request:
    """A sign-in to validate. ``sealed`` holds the password for this agent's key only."""

    type: typing.ClassVar[str] = "request"
    request_id: str
    tenant: str
    domain: str
    username: str
    key_id: str
    expires_at: float
    sealed: dict[str, str]
    signature: str = ""
    # PASSWORD: validate the sealed password. ACCOUNT_STATE: no password (sealed is empty); is the account still
    # enabled, read with the agent's service account. PASSWORD_CHANGE: the current and the new password sealed
    # together (seal_password_change); change it with the service account's connection. Left off the wire when
    # PASSWORD, so older agents still understand (and verify the signature of) every password request.
    kind: str = "password"
    # Also read the user's transitive groups (Result.groups). Sent only to an agent that announced
    # CAPABILITY_GROUPS, and left off the wire when False: older agents refuse unknown fields.
    groups: bool = False
    # Fields of a newer portal that this version does not know, as received: never acted upon, but kept, because
    # the signature covers them and a node relaying the request passes them on. Not a field on the wire itself.
    extensions: dict[str, typing.Any] = field(default_factory=dict, metadata={"wire": False})


REQUEST_PASSWORD = "password"
REQUEST_ACCOUNT_STATE = "account_state"
REQUEST_PASSWORD_CHANGE = "password_change"
REQUEST_KINDS = frozenset({REQUEST_PASSWORD, REQUEST_ACCOUNT_STATE, REQUEST_PASSWORD_CHANGE})


@dataclass(frozen=True)
class Ack:
    type: typing.ClassVar[str] = "ack"
    request_id: str


class Group(typing.TypedDict):
    """One of the user's groups: its objectGUID (canonical form), sAMAccountName and distinguished name. A key a
    later agent adds is ignored (msgspec ignores a TypedDict's unknown keys), a missing one refuses the frame."""

    id: typing.Annotated[str, msgspec.Meta(max_length=64)]
    name: typing.Annotated[str, msgspec.Meta(max_length=256)]
    dn: typing.Annotated[str, msgspec.Meta(max_length=2048)]


# What a result's groups may take of a frame (MAX_FRAME_BYTES): a user in more groups gets the first that fit and
# groups_truncated (the portal then treats the list as incomplete: an overage in tokens).
MAX_GROUPS = 2000
GROUPS_BUDGET_BYTES = 48 * 1024
Groups = typing.Annotated[list[Group], msgspec.Meta(max_length=MAX_GROUPS)]


@dataclass(frozen=True)
class Result:
    type: typing.ClassVar[str] = "result"
    request_id: str
    outcome: str
    ad_subcode: str = ""
    latency_ms: float = 0.0
    user: dict[str, str] = field(default_factory=dict)
    detail: str = ""
    # The user's transitive groups, when the request asked (Request.groups) and the user signed in; None: not
    # read. Both left off the wire when unset, so that a portal that did not ask (an older one) gets the frame
    # it knows.
    groups: Groups | None = None
    groups_truncated: bool = False


@dataclass(frozen=True)
class Renew:
    type: typing.ClassVar[str] = "renew"


@dataclass(frozen=True)
class Renewal:
    type: typing.ClassVar[str] = "renewal"
    csr: str
    signature: str


@dataclass(frozen=True)
class Renewed:
    type: typing.ClassVar[str] = "renewed"
    certificate: str


@dataclass(frozen=True)
class Error:
    type: typing.ClassVar[str] = "error"
    code: str
    message: str
    request_id: str = ""


Frame = Challenge | Hello | Welcome | Heartbeat | Request | Ack | Result | Renew | Renewal | Renewed | Error
FRAME_TYPES: dict[str, type] = {cls.type: cls for cls in typing.get_args(Frame)}


def _wire_struct(tag: str, frame_class: type) -> type[msgspec.Struct]:
    """The msgspec Struct that decodes one frame class: its fields, types and defaults, tagged by its ``type``;
    fields it does not know are ignored (a newer peer's). Derived, so that the dataclass stays the one declaration
    of a frame (and callers keep dataclasses.replace and asdict on frames)."""
    hints = typing.get_type_hints(frame_class, include_extras=True)
    fields: list[tuple[str, typing.Any] | tuple[str, typing.Any, typing.Any]] = []
    for spec in _on_wire(frame_class):
        if spec.default is not dataclasses.MISSING:
            fields.append((spec.name, hints[spec.name], spec.default))
        elif spec.default_factory is not dataclasses.MISSING:
            fields.append((spec.name, hints[spec.name], msgspec.field(default_factory=spec.default_factory)))
        else:
            fields.append((spec.name, hints[spec.name]))
    return msgspec.defstruct(frame_class.__name__, fields, tag_field="type", tag=tag)


def _on_wire(frame_class: type) -> list[dataclasses.Field]:
    return [spec for spec in dataclasses.fields(frame_class) if spec.metadata.get("wire", True)]


_REQUEST_WIRE_FIELDS = frozenset(spec.name for spec in _on_wire(Request)) | {"type"}


_FRAME_OF_STRUCT = {_wire_struct(tag, cls): cls for tag, cls in FRAME_TYPES.items()}
# Strict: no coercion, so "32" is not an int and 1 is not a bool; every field is checked against its type.
_FRAME_DECODER = msgspec.json.Decoder(typing.Union[tuple(_FRAME_OF_STRUCT)], strict=True)  # noqa: UP007


class _Envelope(msgspec.Struct):
    """What a frame that failed validation may still tell about itself: its type and request id, when they
    are strings."""

    type: object = None
    request_id: object = None


def _wire_fields(frame: Frame) -> dict:
    data = dataclasses.asdict(frame)
    if isinstance(frame, Request):
        extensions = data.pop("extensions")
        data = {**{k: v for k, v in extensions.items() if k not in _REQUEST_WIRE_FIELDS}, **data}
    if isinstance(frame, Hello) and frame.protocol == 1:
        del data["protocol"]
    if isinstance(frame, Request) and frame.kind == REQUEST_PASSWORD:
        del data["kind"]
    if isinstance(frame, Request) and not frame.groups:
        del data["groups"]
    if isinstance(frame, Hello) and not frame.capabilities:
        del data["capabilities"]
    if isinstance(frame, Result):
        if frame.groups is None:
            del data["groups"]
        if not frame.groups_truncated:
            del data["groups_truncated"]
    return data


def groups_within_budget(groups: list[Group]) -> tuple[list[Group], bool]:
    """The groups that fit a result frame (GROUPS_BUDGET_BYTES, MAX_GROUPS), in the order given, and whether any
    was left out."""
    kept: list[Group] = []
    size = 0
    for group in groups:
        size += len(json.dumps(group, separators=(",", ":")).encode()) + 1
        if size > GROUPS_BUDGET_BYTES or len(kept) >= MAX_GROUPS:
            return kept, True
        kept.append(group)
    return kept, False


def encode(frame: Frame) -> str:
    return json.dumps({"type": frame.type, **_wire_fields(frame)}, separators=(",", ":"))


def decode(text: str | bytes) -> Frame:
    """Parse and validate one frame; anything else raises ProtocolError, never another exception. A field of
    the wrong type or a missing one is named in the error's message (msgspec's ``$.field``); a field this version
    does not know is ignored (kept in a request's ``extensions``)."""
    if isinstance(text, bytes):
        raise ProtocolError("malformed", "Frames are JSON text, not binary.")
    if len(text) > MAX_FRAME_BYTES:
        raise ProtocolError("too_large", f"Frames are limited to {MAX_FRAME_BYTES} bytes.")
    try:
        wire = _FRAME_DECODER.decode(text)
    except msgspec.ValidationError as exc:
        raise _invalid_frame(text, exc) from None
    except (msgspec.DecodeError, RecursionError, UnicodeEncodeError):
        raise ProtocolError("malformed", "Frame is not valid JSON.") from None
    frame_class = _FRAME_OF_STRUCT[type(wire)]
    values = msgspec.structs.asdict(wire)
    if frame_class is Request:
        raw = msgspec.json.decode(text)  # an object: the decoder above took it as one
        extensions = {k: v for k, v in raw.items() if k not in _REQUEST_WIRE_FIELDS}
        if extensions:
            values["extensions"] = extensions
    return frame_class(**values)


def _invalid_frame(text: str, exc: msgspec.ValidationError) -> ProtocolError:
    """The refusal of a well-formed JSON frame: an unknown type, or a known one whose fields do not fit. The
    request id, when the frame has a readable one, goes back in the error frame so that request fails fast."""
    try:
        envelope = msgspec.json.decode(text, type=_Envelope)
    except (msgspec.DecodeError, RecursionError):  # not an object
        envelope = _Envelope()
    kind = envelope.type if isinstance(envelope.type, str) else None
    if kind is not None and kind not in FRAME_TYPES:
        return ProtocolError("unknown_type", f"Unknown frame type {kind[:40]!r}.")
    request_id = envelope.request_id if isinstance(envelope.request_id, str) else ""
    return ProtocolError("malformed", f"Invalid {kind or 'untyped'} frame: {exc}"[:200], request_id)


# --- keys ---------------------------------------------------------------------------------------------


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64d(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise ProtocolError("malformed", "Invalid base64.") from None


def key_fingerprint(public_key: rsa.RSAPublicKey | ed25519.Ed25519PublicKey) -> str:
    """SHA-256 of the SubjectPublicKeyInfo: names a key in requests and in the database."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def sign_challenge(private_key: rsa.RSAPrivateKey, nonce: str) -> str:
    return b64e(private_key.sign(AUTH_CONTEXT + nonce.encode("ascii"), _PSS, hashes.SHA256()))


def verify_challenge(public_key: rsa.RSAPublicKey, nonce: str, signature: str) -> bool:
    return _verify_pss(public_key, AUTH_CONTEXT + nonce.encode("ascii"), signature)


def sign_renewal(private_key: rsa.RSAPrivateKey, csr_pem: str) -> str:
    return b64e(private_key.sign(RENEWAL_CONTEXT + csr_pem.encode("ascii"), _PSS, hashes.SHA256()))


def verify_renewal(public_key: rsa.RSAPublicKey, csr_pem: str, signature: str) -> bool:
    return _verify_pss(public_key, RENEWAL_CONTEXT + csr_pem.encode("ascii", "replace"), signature)


def _verify_pss(public_key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        public_key.verify(b64d(signature), message, _PSS, hashes.SHA256())
    except (InvalidSignature, ProtocolError, ValueError):
        return False
    return True


def new_nonce() -> str:
    return b64e(os.urandom(32))


# --- the sealed password and the signed request -------------------------------------------------------


def associated_data(*, request_id: str, tenant: str, key_id: str, expires_at: float,
                    kind: str = REQUEST_PASSWORD) -> bytes:
    """What an envelope is bound to, as the agent computes it from the request it receives: the portal gives
    these very bytes to a browser that seals (the sign-in page's script), so both seal to the agent's view."""
    # A password request keeps the original form (agents of every version open it); any other kind is bound
    # too, so that an envelope sealed for one kind never opens as another.
    suffix = "" if kind == REQUEST_PASSWORD else f"\x00{kind}"
    return f"pta-seal-v1\x00{request_id}\x00{tenant}\x00{key_id}\x00{expires_at!r}{suffix}".encode()

SEAL_ALGORITHM = "RSA-OAEP-256+A256GCM"
# An envelope's parts, decoded: RSA-OAEP of a 256-bit key with an agent's key (AGENT_KEY_BITS), GCM's 96-bit
# nonce, the ciphertext with its 16-byte tag. Bounds for a check of an envelope's form by whoever cannot open it.
SEALED_KEY_BYTES = AGENT_KEY_BITS // 8
SEALED_NONCE_BYTES = 12
GCM_TAG_BYTES = 16
MAX_PASSWORD_LENGTH = 512
# The largest plaintext: a password change's JSON (three passwords of MAX_PASSWORD_LENGTH characters, each up to
# 4 bytes in UTF-8, or 6 characters as a JSON \\u escape).
MAX_SEALED_PLAIN_BYTES = 3 * 6 * MAX_PASSWORD_LENGTH + 64


def envelope_well_formed(sealed: object) -> bool:
    """Whether ``sealed`` has an envelope's form (SEAL_ALGORITHM, base64 parts of the right sizes): what a portal
    that cannot open it (sealed in the browser) can check. Says nothing about whom it opens for."""
    if not isinstance(sealed, dict) or set(sealed) != {"alg", "key", "nonce", "data"}:
        return False
    if sealed["alg"] != SEAL_ALGORITHM or not all(isinstance(v, str) for v in sealed.values()):
        return False
    if len(sealed["data"]) > 4 * (MAX_SEALED_PLAIN_BYTES + GCM_TAG_BYTES) // 3 + 4:
        return False
    try:
        key, nonce, data = (b64d(sealed[part]) for part in ("key", "nonce", "data"))
    except ProtocolError:
        return False
    return len(key) == SEALED_KEY_BYTES and len(nonce) == SEALED_NONCE_BYTES and len(data) > GCM_TAG_BYTES


def password_refusal(password: str) -> str:
    """Why a password must reach no bind ("" when it may): empty (AD takes a simple bind without a password as
    an unauthenticated one, a "success"), over MAX_PASSWORD_LENGTH, or with a control character (AD matches
    none; NUL and friends are truncation tricks). The agent checks it whoever sealed the password; the portal
    too, when the password reaches it (no JavaScript)."""
    if not password:
        return "empty_password"
    if len(password) > MAX_PASSWORD_LENGTH:
        return "too_long"
    if any(unicodedata.category(ch) == "Cc" for ch in password):
        return "control_characters"
    return ""


def _seal(*, public_key: rsa.RSAPublicKey, plain: bytes, aad: bytes) -> dict:
    content_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    ciphertext = AESGCM(content_key).encrypt(nonce, plain, aad)
    wrapped = public_key.encrypt(content_key, _OAEP)
    return {"alg": SEAL_ALGORITHM, "key": b64e(wrapped), "nonce": b64e(nonce), "data": b64e(ciphertext)}


def seal_password(
    *, public_key: rsa.RSAPublicKey, password: str, request_id: str, tenant: str, key_id: str, expires_at: float
) -> dict:
    """RSA-OAEP-SHA256 wraps a fresh AES-256-GCM key; the associated data binds the request to its context."""
    aad = associated_data(request_id=request_id, tenant=tenant, key_id=key_id, expires_at=expires_at)
    return _seal(public_key=public_key, plain=password.encode("utf-8"), aad=aad)


def seal_password_change(
    *, public_key: rsa.RSAPublicKey, current: str, new: str, request_id: str, tenant: str, key_id: str,
    expires_at: float
) -> dict:
    """The current and the new password in one envelope (a JSON object), bound like a sign-in's and to the
    request kind PASSWORD_CHANGE."""
    aad = associated_data(request_id=request_id, tenant=tenant, key_id=key_id, expires_at=expires_at,
                           kind=REQUEST_PASSWORD_CHANGE)
    plain = json.dumps({"current": current, "new": new}, ensure_ascii=False).encode("utf-8")
    return _seal(public_key=public_key, plain=plain, aad=aad)


_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _open(*, private_key: rsa.RSAPrivateKey, request: Request, kind: str) -> str:
    sealed = request.sealed
    if not all(isinstance(sealed.get(k), str) for k in ("key", "nonce", "data")):
        raise ProtocolError("malformed", "Sealed password is incomplete.", request.request_id)
    aad = associated_data(request_id=request.request_id, tenant=request.tenant, key_id=request.key_id,
                           expires_at=request.expires_at, kind=kind)
    try:
        content_key = private_key.decrypt(b64d(sealed["key"]), _OAEP)
        plain = AESGCM(content_key).decrypt(b64d(sealed["nonce"]), b64d(sealed["data"]), aad)
        return plain.decode("utf-8")
    except (ValueError, InvalidTag, UnicodeDecodeError):
        raise ProtocolError("cannot_decrypt", "The password was not sealed for this agent.",
                            request.request_id) from None


def open_envelope(*, private_key: rsa.RSAPrivateKey, request: Request) -> str:
    """The password of a request sealed for this key; ProtocolError when it was not, or was altered."""
    return _open(private_key=private_key, request=request, kind=REQUEST_PASSWORD)


def open_password_change(*, private_key: rsa.RSAPrivateKey, request: Request) -> tuple[str, str]:
    """(current, new) of a PASSWORD_CHANGE request sealed for this key; ProtocolError otherwise."""
    current, new, _confirm = open_password_change_confirmed(private_key=private_key, request=request)
    return current, new


def open_password_change_confirmed(*, private_key: rsa.RSAPrivateKey, request: Request
                                   ) -> tuple[str, str, str | None]:
    """(current, new, confirm) of a PASSWORD_CHANGE request sealed for this key; ``confirm`` is the new password
    typed a second time when the sealer sent it (a browser does: the portal, which cannot read them, cannot
    compare them), else None. ProtocolError when it was not sealed for this key, or is malformed."""
    plain = _open(private_key=private_key, request=request, kind=REQUEST_PASSWORD_CHANGE)
    try:
        data = json.loads(plain)
    except ValueError:
        data = None
    if not (isinstance(data, dict) and isinstance(data.get("current"), str) and isinstance(data.get("new"), str)
            and isinstance(data.get("confirm", ""), str)):
        raise ProtocolError("malformed", "The sealed password change is malformed.", request.request_id)
    return data["current"], data["new"], data.get("confirm")


def _request_signing_bytes(request: Request) -> bytes:
    data = _wire_fields(request)
    data.pop("signature")
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign_request(request: Request, signing_key: ed25519.Ed25519PrivateKey) -> Request:
    return dataclasses.replace(request, signature=b64e(signing_key.sign(_request_signing_bytes(request))))


def verify_request(
    request: Request, verify_key: ed25519.Ed25519PublicKey, *, now: float | None = None
) -> None:
    """Signature first, then freshness: a forged or stale request is refused before any decryption."""
    try:
        verify_key.verify(b64d(request.signature), _request_signing_bytes(request))
    except (InvalidSignature, ProtocolError):
        raise ProtocolError("bad_signature", "Request signature does not verify.", request.request_id) from None
    now = time.time() if now is None else now
    if request.expires_at <= now:
        raise ProtocolError("expired", "Request has expired.", request.request_id)
    if request.expires_at > now + MAX_REQUEST_AGE_SECONDS + 5:
        raise ProtocolError("expired", "Request expiry is too far in the future.", request.request_id)


class ReplayGuard:
    """Remembers request ids until their expiry has passed, so a replay inside that time is refused."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def check_and_remember(self, request_id: str, expires_at: float, *, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        if len(self._seen) > 1024:
            self._seen = {rid: exp for rid, exp in self._seen.items() if exp > now}
        if request_id in self._seen:
            return False
        self._seen[request_id] = expires_at
        return True

