"""The webhook sink: each decision revision, signed, POSTed to the tenant's chat service.

At-least-once over HTTP (an answer can be lost after the receiver acted), so every request says
which event it is (`Heron-Event-Id` = decision id + revision) and receivers dedupe on it. Redirects
are never followed (a 3xx is a failed attempt), and, unless `HERON_ALLOW_PRIVATE_WEBHOOKS` is set,
the connection itself refuses loopback, private, link-local and metadata addresses after DNS
resolution (`pipeline.netguard`), so a URL that passed registration cannot be re-pointed inward.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa

from pipeline import db
from pipeline.netguard import RefusedConnection, safe_async_transport
from pipeline.settings import Settings
from pipeline.signing import event_id, signed_headers
from pipeline.sinks.base import DeliveryResult, backoff_delay
from pipeline.store import OutboxEvent, Store, Webhook


def needs_support(decision_payload: dict[str, Any]) -> bool:
    """True when the decision is `support`, or any of its reasons is (a stricter action won)."""
    if decision_payload.get("action") == "support":
        return True
    return any(r.get("action") == "support" for r in decision_payload.get("reasons") or [] if isinstance(r, dict))


def webhook_body(decision_payload: dict[str, Any], cause: str | None = None,
                 support_resources: str | None = None) -> bytes:
    """The event a receiver gets: the decision as of one revision, with that revision's id, and
    for a decision that calls for support, the resources to show the author (HERON_SUPPORT_RESOURCES)."""
    decision_id = str(decision_payload.get("id", ""))
    revision = int(decision_payload.get("revision", 1) or 1)
    body: dict[str, Any] = {
        "type": "decision" if revision == 1 else "decision.revised",
        "event_id": event_id(decision_id, revision),
        "revision": revision,
        "decision": decision_payload,
    }
    if cause:
        body["cause"] = cause
    if support_resources and needs_support(decision_payload):
        body["support"] = {"category": "self_harm", "resources": support_resources}
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class _Prepared:
    hook: Webhook | None
    payload: dict[str, Any] | None
    cause: str | None


class WebhookSink:
    name = "webhook"

    def __init__(self, store: Store, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.store = store
        self.settings = settings
        self.max_attempts = settings.webhook_max_attempts
        self.attempt_timeout_s = settings.webhook_timeout_s
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def retry_delay(self, attempt: int) -> float:
        return backoff_delay(attempt, self.settings.webhook_backoff_base_s, self.settings.webhook_backoff_max_s)

    def _make_client(self) -> httpx.AsyncClient:
        # The connection itself re-checks the resolved address (DNS rebinding cannot pass);
        # with HERON_ALLOW_PRIVATE_WEBHOOKS only metadata and unspecified addresses stay refused.
        transport = self._transport or safe_async_transport(allow_private=self.settings.allow_private_webhooks)
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.attempt_timeout_s),
            follow_redirects=False,
            transport=transport,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    def prepare(self, events: Sequence[OutboxEvent]) -> dict[int, Any]:
        """Webhooks and revision payloads for a batch of events: two queries, not two per event."""
        hooks = self.store.webhooks.get_many(list({e.tenant_id for e in events}))
        r = db.decision_revisions.c
        wanted = {(e.decision_id, e.revision) for e in events}
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(r.decision_id, r.revision, r.payload, r.cause).where(
                    r.decision_id.in_(list({d for d, _ in wanted}))
                )
            ).all()
        found = {(row.decision_id, row.revision): (dict(row.payload), row.cause) for row in rows}
        out: dict[int, Any] = {}
        for e in events:
            payload, cause = found.get((e.decision_id, e.revision), (None, None))
            out[e.id] = _Prepared(hooks.get(e.tenant_id), payload, cause)
        return out

    async def send(self, event: OutboxEvent, prepared: Any) -> DeliveryResult:
        assert isinstance(prepared, _Prepared)
        if prepared.hook is None:
            return DeliveryResult(False, error="no webhook registered", permanent=True)
        if prepared.payload is None:
            return DeliveryResult(False, error="decision revision not found", permanent=True)
        if self._client is None:
            self._client = self._make_client()
        body = webhook_body(prepared.payload, prepared.cause if event.revision > 1 else None,
                            self.settings.support_resources)
        headers = signed_headers(prepared.hook.secret, body, event.decision_id, event.attempts + 1,
                                 revision=event.revision)
        try:
            # The whole attempt (connect, send, a receiver that trickles its answer) is bounded,
            # not just each socket read: the lease is sized on this bound.
            response = await asyncio.wait_for(
                self._client.post(prepared.hook.url, content=body, headers=headers), self.attempt_timeout_s
            )
        except TimeoutError:
            return DeliveryResult(False, error=f"timed out after {self.attempt_timeout_s:g}s")
        except RefusedConnection as exc:  # an address Heron may not call: no retry can help
            return DeliveryResult(False, error=f"refused: {exc}"[:500], permanent=True)
        except httpx.HTTPError as exc:
            return DeliveryResult(False, error=f"{type(exc).__name__}: {exc}"[:500])
        status = response.status_code
        if 200 <= status < 300:
            return DeliveryResult(True, status)
        if 300 <= status < 400:
            return DeliveryResult(False, status, f"HTTP {status}: redirects are not followed "
                                                 f"(to {response.headers.get('location', '?')[:200]})")
        return DeliveryResult(False, status, f"HTTP {status}: {response.text[:200]}")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


