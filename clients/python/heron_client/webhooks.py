"""Verify Heron's signed webhooks: signature, timestamp window and replays.

The scheme is the server's (`pipeline/signing.py`, docs/webhooks.md): `Heron-Signature` is
`v1=<hex HMAC-SHA256(secret, "<Heron-Timestamp>." + raw body)>`. This module is a copy written
for chat services that do not install the server; tests/integration/test_client_python.py checks
it against `pipeline.signing` in both directions so the two cannot drift.

Replays: a request older than the timestamp window is refused. Inside the window a captured
request sent again cannot be told from Heron's own resend (Heron signs each attempt with the
current second, so an attempt repeated within one second carries the very same signature), so
both are accepted and marked `duplicate`: the receiver applies each event id once, which makes a
replay harmless. Pass `refuse_replays=True` to refuse a repeated signature outright instead (it
then answers 401 to such a resend, and Heron retries it a moment later with a new signature).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping

from heron_client.errors import WebhookReplayError, WebhookVerificationError
from heron_client.models import WebhookEvent

TIMESTAMP_HEADER = "Heron-Timestamp"
SIGNATURE_HEADER = "Heron-Signature"
EVENT_HEADER = "Heron-Event-Id"
REVISION_HEADER = "Heron-Revision"
DECISION_HEADER = "Heron-Decision-Id"
SCHEME = "v1"
DEFAULT_WINDOW_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `Heron-Signature` value for `body` signed at `timestamp` (for tests and proxies)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SCHEME}={mac}"


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def verify_signature(
    secret: str, headers: Mapping[str, str], body: bytes, *, window_s: int = DEFAULT_WINDOW_S, now: float | None = None
) -> int:
    """Raise WebhookVerificationError unless `headers` carry a valid signature of the raw `body`
    made within `window_s` seconds of now. Returns the signed timestamp."""
    lower = _lower(headers)
    ts_raw = lower.get(TIMESTAMP_HEADER.lower())
    sig = lower.get(SIGNATURE_HEADER.lower())
    if not ts_raw or not sig:
        raise WebhookVerificationError("missing Heron-Timestamp or Heron-Signature header")
    try:
        ts = int(ts_raw)
    except ValueError:
        raise WebhookVerificationError("Heron-Timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - ts) > window_s:
        raise WebhookVerificationError(f"timestamp outside the {window_s}s replay window")
    expected = sign(secret, ts, body)
    # Several comma-separated signatures are accepted (a secret being rotated).
    if not any(hmac.compare_digest(expected, c.strip()) for c in sig.split(",")):
        raise WebhookVerificationError("signature mismatch")
    return ts


class WebhookVerifier:
    """Verifies deliveries for one secret and remembers what it accepted.

    Signatures are remembered for the timestamp window (after it the timestamp check refuses a
    replay anyway); event ids for `remember_events` entries, so redeliveries are flagged. The
    memory is per process: a receiver with several processes should also keep the highest applied
    revision per message in its own store, as docs/webhooks.md says.
    """

    def __init__(
        self,
        secret: str,
        *,
        window_s: int = DEFAULT_WINDOW_S,
        remember_events: int = 100_000,
        refuse_replays: bool = False,
    ) -> None:
        if not secret:
            raise ValueError("a webhook secret is required")
        self.secret = secret
        self.window_s = window_s
        self.remember_events = remember_events
        self.refuse_replays = refuse_replays
        self._signatures: dict[str, float] = {}
        self._events: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> WebhookEvent:
        """The verified event; raises WebhookVerificationError (or WebhookReplayError)."""
        current = time.time() if now is None else now
        verify_signature(self.secret, headers, body, window_s=self.window_s, now=current)
        signature = _lower(headers)[SIGNATURE_HEADER.lower()]
        try:
            data = json.loads(body)
            event = WebhookEvent.from_json(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookVerificationError(f"signed body is not a Heron event: {exc}") from None
        header_event = _lower(headers).get(EVENT_HEADER.lower())
        if header_event is not None and header_event != event.event_id:
            raise WebhookVerificationError("Heron-Event-Id does not match the signed body")
        with self._lock:
            self._forget_old(current)
            replayed = signature in self._signatures
            if replayed and self.refuse_replays:
                raise WebhookReplayError("this signed request was already accepted")
            self._signatures[signature] = current
            if replayed or event.event_id in self._events:
                event.duplicate = True
                self._events.move_to_end(event.event_id)
            else:
                self._events[event.event_id] = None
                while len(self._events) > self.remember_events:
                    self._events.popitem(last=False)
        return event

    def _forget_old(self, now: float) -> None:
        horizon = now - 2 * self.window_s
        for sig in [s for s, at in self._signatures.items() if at < horizon]:
            del self._signatures[sig]
