"""Webhook signatures: HMAC-SHA256 over "<timestamp>.<body>", sent in headers.

Receivers verify with `verify()` (or the stand-alone snippet in docs/webhooks.md): recompute the
HMAC with the tenant's secret, compare in constant time, and reject timestamps outside the replay
window so that a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "Heron-Timestamp"
SIGNATURE_HEADER = "Heron-Signature"
DECISION_HEADER = "Heron-Decision-Id"
DELIVERY_HEADER = "Heron-Delivery-Attempt"
REVISION_HEADER = "Heron-Revision"
EVENT_HEADER = "Heron-Event-Id"
SCHEME = "v1"


class SignatureError(ValueError):
    """The request is not a genuine, fresh Heron delivery."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SCHEME}={mac}"


def event_id(decision_id: str, revision: int) -> str:
    """What a receiver dedupes on: one id per (decision, revision), the same on every attempt."""
    return f"{decision_id}.{revision}"


def signed_headers(
    secret: str, body: bytes, decision_id: str, attempt: int, timestamp: int | None = None, revision: int = 1
) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: sign(secret, ts, body),
        DECISION_HEADER: decision_id,
        REVISION_HEADER: str(revision),
        EVENT_HEADER: event_id(decision_id, revision),
        DELIVERY_HEADER: str(attempt),
    }


def verify(secret: str, headers: dict[str, str], body: bytes, window_s: int = 300, now: float | None = None) -> None:
    """Raise SignatureError unless the headers carry a valid, fresh signature of `body`."""
    lower = {k.lower(): v for k, v in headers.items()}
    ts_raw = lower.get(TIMESTAMP_HEADER.lower())
    sig = lower.get(SIGNATURE_HEADER.lower())
    if not ts_raw or not sig:
        raise SignatureError("missing Heron-Timestamp or Heron-Signature header")
    try:
        ts = int(ts_raw)
    except ValueError:
        raise SignatureError("Heron-Timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - ts) > window_s:
        raise SignatureError(f"timestamp outside the {window_s}s replay window")
    expected = sign(secret, ts, body)
    candidates = [s.strip() for s in sig.split(",")]
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("signature mismatch")
