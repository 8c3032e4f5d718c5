"""Sinks: where decisions go. The webhook sink delivers signed decisions to the chat service.

Delivery state lives in the store (the `deliveries` table), not in the broker: a retry scheduled
for ten minutes from now survives a Redis restart or a worker crash. Each attempt is leased, so
several workers can run `deliver_due()` side by side without sending one delivery twice at once;
a receiver still dedupes by the Heron-Decision-Id header, because at-least-once is the honest
promise over HTTP.
"""

from __future__ import annotations

import json
import logging
import random
from datetime import timedelta

import httpx

from pipeline.settings import Settings
from pipeline.signing import signed_headers
from pipeline.store import Delivery, Store, now

log = logging.getLogger(__name__)


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: base·2^(attempt-1), capped, then scaled by U(0.5, 1)."""
    rng = rng or random
    delay = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    return delay * rng.uniform(0.5, 1.0)


def webhook_body(decision_payload: dict[str, object]) -> bytes:
    return json.dumps({"type": "decision", "decision": decision_payload}, separators=(",", ":")).encode()


class WebhookSink:
    def __init__(self, store: Store, settings: Settings, client: httpx.Client | None = None) -> None:
        self.store = store
        self.settings = settings
        self.client = client or httpx.Client(timeout=settings.webhook_timeout_s)

    def send(self, delivery: Delivery) -> bool:
        """One attempt; records the outcome (delivered, retry later, or dead-lettered)."""
        hook = self.store.get_webhook(delivery.tenant_id)
        payload = self.store.decision_payload(delivery.decision_id)
        attempt = delivery.attempts + 1
        if hook is None or payload is None:
            reason = "no webhook registered" if hook is None else "decision not found"
            self.store.record_attempt(delivery.id, ok=False, status_code=None, error=reason, next_attempt_at=None)
            return False
        body = webhook_body(payload)
        headers = signed_headers(hook.secret, body, delivery.decision_id, attempt)
        status: int | None = None
        try:
            response = self.client.post(hook.url, content=body, headers=headers)
            status = response.status_code
            ok = 200 <= status < 300
            error = None if ok else f"HTTP {status}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}"
        next_at = None
        if not ok and attempt < self.settings.webhook_max_attempts:
            delay = backoff_delay(attempt, self.settings.webhook_backoff_base_s, self.settings.webhook_backoff_max_s)
            next_at = now() + timedelta(seconds=delay)
        self.store.record_attempt(delivery.id, ok=ok, status_code=status, error=error, next_attempt_at=next_at)
        if not ok:
            log.warning("webhook delivery %s attempt %d failed: %s", delivery.decision_id, attempt, error)
        return ok

    def deliver_due(self, limit: int = 50) -> int:
        """Send every delivery whose time has come; returns how many were attempted."""
        due = self.store.claim_due_deliveries(limit=limit, lease_s=self.settings.webhook_timeout_s * 4 + 5)
        for delivery in due:
            self.send(delivery)
        return len(due)

    def close(self) -> None:
        self.client.close()
