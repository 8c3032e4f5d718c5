"""The review sink: puts each held or flagged decision revision into the review queue.

Why a sink and not a call in the deciding code: the sync path's write-behind, the async workers
and every later revision (an image verdict) all store decisions through the outbox, so one route
(`pipeline.store.review.ReviewRoute`) sees them all, in the decision's own transaction, and this
sink turns each into a queue item with the outbox's retries if the database blinks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from pipeline import db
from pipeline.sinks.base import DeliveryResult, backoff_delay
from pipeline.store import OutboxEvent, Store
from pipeline.types import Decision


class ReviewSink:
    name = "review"
    max_attempts = 20
    attempt_timeout_s = 10.0

    def __init__(self, store: Store) -> None:
        self.store = store

    def retry_delay(self, attempt: int) -> float:
        return backoff_delay(attempt, 0.5, 60.0)

    def prepare(self, events: Sequence[OutboxEvent]) -> dict[int, Any]:
        r = db.decision_revisions.c
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(r.decision_id, r.revision, r.payload).where(
                    r.decision_id.in_(list({e.decision_id for e in events}))
                )
            ).all()
        found = {(row.decision_id, row.revision): dict(row.payload) for row in rows}
        return {e.id: found.get((e.decision_id, e.revision)) for e in events}

    async def send(self, event: OutboxEvent, prepared: Any) -> DeliveryResult:
        if prepared is None:
            return DeliveryResult(False, error="decision revision not found", permanent=True)
        try:
            await asyncio.to_thread(self.store.review.enqueue_decision, event.tenant_id,
                                    Decision.model_validate(prepared))
        except Exception as exc:  # noqa: BLE001 - never raises: the drainer retries
            return DeliveryResult(False, error=f"{type(exc).__name__}: {exc}"[:500])
        return DeliveryResult(True)

    async def aclose(self) -> None:
        return None
