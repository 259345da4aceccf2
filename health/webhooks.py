"""The webhook signature: HMAC-SHA256 with the tenant's secret over ``"<unix time>." + body``, sent as
``PTA-Signature: t=<unix time>,v1=<hex>``. The time is signed so a receiver can refuse a replayed request, and
the raw body is signed so a receiver checks exactly the bytes it got. Plain Python, no Django."""

import hashlib
import hmac

SIGNATURE_HEADER = "PTA-Signature"


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"
