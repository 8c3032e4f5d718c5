"""The Sink contract: prepare a batch of events, send one, and say how to retry."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.store.outbox import OutboxEvent


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: base·2^(attempt-1), capped, then scaled by U(0.5, 1)."""
    rng = rng or random  # type: ignore[assignment]
    delay = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    return delay * rng.uniform(0.5, 1.0)  # type: ignore[union-attr]


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    # No retry can help (no webhook registered any more, an address Heron may not call): dead now.
    permanent: bool = False


class Sink(Protocol):
    name: str
    max_attempts: int
    # Longest one attempt may take, all included: leases are longer than this.
    attempt_timeout_s: float

    def retry_delay(self, attempt: int) -> float: ...

    def prepare(self, events: Sequence[OutboxEvent]) -> dict[int, Any]:
        """Load what sending needs (payloads, endpoints) for a batch, in one go; runs in a thread."""
        ...

    async def send(self, event: OutboxEvent, prepared: Any) -> DeliveryResult:
        """One attempt; never raises."""
        ...

    async def aclose(self) -> None: ...
