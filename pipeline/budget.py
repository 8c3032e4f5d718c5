"""The synchronous path's admission and latency budget (`POST /v1/moderate`).

The budget (`HERON_SYNC_BUDGET_MS`) bounds what a caller sees, so it is measured from the request's
arrival (stamped by the ASGI app before anything else runs), not from the start of scoring: under a
flood most of a request's time is spent queued before the handler runs, and a budget that starts at
scoring hid that (issue #17: p99 3.7 s against a 250 ms budget, and never a 202).

Before scoring, `SyncPath` predicts how long scoring would take now. When the budget's remainder
cannot cover it, the message is not scored inline: it is stored and handed to the asynchronous path
(`Outcome.SHED`, a 202; the decision follows by webhook), which costs one group-committed insert
instead of a forward pass, so a saturated process sheds work instead of queueing it. When the async
path is itself over its bound (`HERON_SHED_MAX_BACKLOG`), the answer is `Outcome.OVERLOADED` (a 429
with Retry-After): nothing is accepted that could not be decided in reasonable time. A request that
starts scoring but runs past the budget keeps the earlier behaviour (`Outcome.PENDING`, a 202; the
late decision is stored and delivered by webhook). Every 202 is therefore a stored message that ends
up decided.

The prediction is Little's law over what this process observes: the sync requests scoring now
(`in_flight`) times the recent cost per request (an EWMA of each request's scoring time divided by
the requests that were ahead of it plus itself). Under micro-batching that cost falls as load rises,
and the estimate follows within a few requests; it needs no knowledge of any scorer's queues, and it
also sees CPU taken by the embedded worker or anything else on the machine. A request that finds no
other sync request scoring is always admitted (while the budget lasts): it cannot queue behind one,
and its sample keeps the estimate fresh, so one slow outlier cannot make the path shed forever.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from pipeline.guilds import GuildConfig
from pipeline.types import Decision, DecisionStatus, Message

if TYPE_CHECKING:
    from pipeline.runtime import Runtime


class Outcome(StrEnum):
    DECIDED = "decided"  # 200: decided within the budget
    PENDING = "pending"  # 202: scoring ran past the budget; the late decision is stored and delivered
    SHED = "shed"  # 202: not scored inline (the budget could not be met); stored for the async path
    OVERLOADED = "overloaded"  # 429: the budget could not be met and the async backlog is over its bound


@dataclass(frozen=True)
class SyncAnswer:
    outcome: Outcome
    decision: Decision | None = None
    duplicate: bool = False  # SHED only: the message id was already stored
    retry_after_s: int = 0  # OVERLOADED only


class LatencyEstimate:
    """Predicted scoring time for one more sync request, from recent ones (see the module doc).

    Used from the event loop only, so plain attributes suffice."""

    ALPHA = 0.2  # weight of the newest sample: follows a load change within ~10 requests

    def __init__(self) -> None:
        self.in_flight = 0
        self.per_request_s = 0.0
        self.samples = 0

    def predict_s(self) -> float:
        return self.per_request_s * (self.in_flight + 1)

    def started(self) -> int:
        """Count a request in; returns how many were ahead of it (pass it to `finished`)."""
        ahead = self.in_flight
        self.in_flight += 1
        return ahead

    def finished(self, ahead: int, seconds: float) -> None:
        self.in_flight -= 1
        sample = seconds / (ahead + 1)
        if self.samples == 0:
            self.per_request_s = sample
        else:
            self.per_request_s += self.ALPHA * (sample - self.per_request_s)
        self.samples += 1


class SyncPath:
    """Decide inline within the budget, or shed to the async path, or refuse (see the module doc).

    One per serving process (per Runtime): the estimate describes this process's load."""

    # The async backlog is read at most this often (on Celery it is a Redis round trip, in a thread).
    BACKLOG_TTL_S = 0.25
    MAX_RETRY_AFTER_S = 60

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.budget_s = runtime.settings.sync_budget_ms / 1000
        self.max_backlog = runtime.settings.shed_max_backlog
        self.estimate = LatencyEstimate()
        self.backlog_ttl_s = self.BACKLOG_TTL_S
        self._backlog: int | None = None
        self._backlog_at = -math.inf

    async def moderate(self, tenant_id: str, message: Message, guild: GuildConfig, arrived: float) -> SyncAnswer:
        """`arrived` is the request's `time.perf_counter()` at arrival."""
        remaining = self.budget_s - (time.perf_counter() - arrived)
        if remaining <= 0 or (self.estimate.in_flight > 0 and self.estimate.predict_s() > remaining):
            return await self._shed(tenant_id, message)
        ahead = self.estimate.started()
        started = time.perf_counter()
        # Images are scored after the answer (the async path completes the decision as a revision).
        defer = {"defer_media": True} if message.attachments and self.rt.settings.sync_defer_images else {}
        task = asyncio.ensure_future(self.rt.service.decide_one_async(tenant_id, message, guild, **defer))
        task.add_done_callback(lambda _: self.estimate.finished(ahead, time.perf_counter() - started))
        try:
            decision = await asyncio.wait_for(asyncio.shield(task), remaining)
        except TimeoutError:
            await asyncio.to_thread(self.rt.store_pending, tenant_id, message)
            task.add_done_callback(lambda t: self.rt.finish_late(tenant_id, message, t))
            return SyncAnswer(Outcome.PENDING)
        self.rt.writer.record(tenant_id, decision, message)
        if decision.status is DecisionStatus.PARTIAL:
            # Images deferred: the async path scores them and stores the complete decision as the
            # next revision (delivered by webhook), see pipeline.queue.processing.
            row_id, created = await asyncio.wrap_future(self.rt.inbox.put(tenant_id, message))
            if not created:
                # A held decision's writer stores the message (for the reviewer) and may do so
                # before this put, which then finds it stored and dispatches nothing: the images
                # would never be scored. Hand the row over here; deciding is idempotent (a complete
                # decision is never decided again).
                await asyncio.to_thread(self.rt.dispatcher.submit, [row_id])
        return SyncAnswer(Outcome.DECIDED, decision)

    async def _shed(self, tenant_id: str, message: Message) -> SyncAnswer:
        backlog = await self.async_backlog()
        if backlog is not None and backlog > self.max_backlog:
            # Roughly how long the excess takes to drain at this process's recent pace.
            excess_s = (backlog - self.max_backlog) * self.estimate.per_request_s
            retry_after_s = min(self.MAX_RETRY_AFTER_S, max(1, math.ceil(excess_s)))
            return SyncAnswer(Outcome.OVERLOADED, retry_after_s=retry_after_s)
        _, created = await asyncio.wrap_future(self.rt.inbox.put(tenant_id, message))
        return SyncAnswer(Outcome.SHED, duplicate=not created)

    async def async_backlog(self) -> int | None:
        """The async path's backlog as the dispatcher reports it, cached for `backlog_ttl_s`;
        None when it cannot be read (a broker that is down accepts nothing to wait in it)."""
        now = time.monotonic()
        if now - self._backlog_at >= self.backlog_ttl_s:
            self._backlog_at = now  # concurrent callers use the previous value meanwhile
            try:
                self._backlog = await asyncio.to_thread(self.rt.dispatcher.backlog)
            except Exception:  # noqa: BLE001 - an unreadable backlog never blocks a message
                self._backlog = None
        return self._backlog
