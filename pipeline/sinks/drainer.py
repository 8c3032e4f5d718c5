"""OutboxDrainer: lease due events, send them concurrently, record each attempt.

Why a drainer of its own (and not delivery inside the decide task): a receiver that accepts the
connection and never answers used to hold a decide task for its whole timeout, one delivery after
another, and so stalled decisions for every tenant. Here deciding only writes outbox rows; this
loop, on its own thread and asyncio event loop, runs the attempts, with:

- a per-tenant concurrency cap: a tenant's slow receiver holds at most `per_tenant` connections,
  and a claim never takes events of a tenant that has no free slot, so its backlog cannot starve
  anyone else's;
- a per-tenant circuit breaker: after `breaker_threshold` consecutive failures the tenant's events
  are not attempted for a cooldown (doubling up to `breaker_max_s`), then one probe goes out
  (half-open); an outage therefore spends few attempts, and events do not dead-letter while the
  receiver is merely down for a while;
- leases longer than the worst attempt (each attempt is bounded as a whole), so no other drainer
  re-sends an event that is still in flight.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from pipeline.logs import log_context
from pipeline.sinks.base import DeliveryResult, Sink
from pipeline.store.outbox import AttemptOutcome, OutboxEvent
from pipeline.store.protocols import DrainingStore

log = logging.getLogger(__name__)

ATTEMPTS = Counter("heron_outbox_attempts", "Delivery attempts by sink and outcome", ["sink", "outcome"])
ATTEMPT_SECONDS = Histogram(
    "heron_outbox_attempt_seconds", "Duration of one delivery attempt", ["sink"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
DELIVERY_LAG = Histogram(
    "heron_outbox_delivery_lag_seconds", "From the event's creation (the decision's commit) to its delivery",
    ["sink"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
INFLIGHT = Gauge("heron_outbox_inflight", "Delivery attempts in flight in this process", ["sink"])
OPEN_CIRCUITS = Gauge("heron_outbox_open_circuits", "Tenants whose circuit breaker is open", ["sink"])


@dataclass
class _Circuit:
    failures: int = 0
    open_until: float = 0.0
    cooldown_s: float = 0.0
    probing: bool = False
    probe_event: int | None = None


class CircuitBreakers:
    """Per-tenant breakers (per process: each drainer learns on its own, which is enough to stop
    an outage from burning attempts and needs no shared state)."""

    def __init__(self, threshold: int = 5, base_s: float = 5.0, max_s: float = 300.0) -> None:
        self.threshold = threshold
        self.base_s = base_s
        self.max_s = max_s
        self._circuits: dict[str, _Circuit] = {}

    def state(self, tenant: str, now: float) -> str:
        c = self._circuits.get(tenant)
        if c is None or c.failures < self.threshold:
            return "closed"
        return "open" if now < c.open_until or c.probing else "half_open"

    def slots(self, tenant: str, cap: int, now: float) -> int:
        """How many attempts the tenant may have in flight now."""
        state = self.state(tenant, now)
        return cap if state == "closed" else (1 if state == "half_open" else 0)

    def started(self, tenant: str, now: float, event_id: int) -> None:
        if self.state(tenant, now) == "half_open":
            c = self._circuits[tenant]
            c.probing, c.probe_event = True, event_id

    def holds(self, tenant: str, event_id: int, now: float) -> bool:
        """Whether an event waiting its turn must not be attempted now (open, and it is not the probe)."""
        c = self._circuits.get(tenant)
        return self.state(tenant, now) == "open" and (c is None or c.probe_event != event_id)

    def release(self, tenant: str, event_id: int) -> None:
        """The probe ended without an outcome (deferred, crashed): let the next one go."""
        c = self._circuits.get(tenant)
        if c is not None and c.probe_event == event_id:
            c.probing, c.probe_event = False, None

    def record(self, tenant: str, ok: bool, now: float) -> None:
        c = self._circuits.setdefault(tenant, _Circuit())
        was_probe = c.probing
        c.probing, c.probe_event = False, None
        if ok:
            self._circuits.pop(tenant, None)
            return
        c.failures += 1
        # Open on reaching the threshold; afterwards only a failed probe extends the cooldown (the
        # stragglers that were in flight when it opened say nothing new about the receiver).
        if c.failures == self.threshold or (was_probe and c.failures > self.threshold):
            c.cooldown_s = self.base_s if c.cooldown_s == 0 else min(self.max_s, c.cooldown_s * 2)
            c.open_until = now + c.cooldown_s
            log.warning("circuit open for tenant %s for %.0fs after %d consecutive failures",
                        tenant, c.cooldown_s, c.failures)

    def blocked(self, now: float) -> list[str]:
        return [t for t in self._circuits if self.state(t, now) == "open"]

    def known(self) -> list[str]:
        return list(self._circuits)

    def open_count(self, now: float) -> int:
        return len(self.blocked(now))


class OutboxDrainer:
    def __init__(
        self,
        store: DrainingStore,
        sink: Sink,
        *,
        per_tenant: int = 4,
        max_inflight: int = 64,
        poll_s: float = 0.5,
        breaker_threshold: int = 5,
        breaker_base_s: float = 5.0,
        breaker_max_s: float = 300.0,
        prefetch: int = 4,
    ) -> None:
        self.store = store
        self.sink = sink
        self.per_tenant = per_tenant
        self.max_inflight = max_inflight
        self.poll_s = poll_s
        # Events claimed ahead of sending, per send slot: the next attempt is ready when one ends,
        # without a database round trip in between.
        self.prefetch = prefetch
        self.breakers = CircuitBreakers(breaker_threshold, breaker_base_s, breaker_max_s)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Longer than the worst wait: a claimed event waits for at most `prefetch` attempts of its
        # tenant ahead of it, each bounded as a whole by the sink, then its own, then its record.
        self.lease_s = sink.attempt_timeout_s * (prefetch + 2) + 30
        self._outstanding: dict[int, str] = {}  # claimed, not yet recorded: event id -> tenant
        self._tenant_slots: dict[str, asyncio.Semaphore] = {}
        self._send_slots: asyncio.Semaphore | None = None
        self._results: asyncio.Queue[AttemptOutcome] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # ---- lifecycle (thread) ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"heron-outbox-{self.sink.name}", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:  # noqa: BLE001 - logged; the next process start drains what is left
            log.exception("outbox drainer for %s stopped", self.sink.name)

    def wake(self) -> None:
        """Something new is due (a decision was just stored in this process): look now, not at the next poll."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop closed in between
                pass

    def stop(self, timeout_s: float | None = None) -> None:
        self._stopping = True
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s if timeout_s is not None else self.sink.attempt_timeout_s + 5)
            self._thread = None

    def _begin(self) -> asyncio.Task[None]:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._send_slots = asyncio.Semaphore(self.max_inflight)
        self._results = asyncio.Queue()
        return asyncio.create_task(self._recorder())

    async def _finish(self, recorder: asyncio.Task[None], wait_s: float) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=wait_s)
        assert self._results is not None
        await self._results.join()
        recorder.cancel()
        await self.sink.aclose()

    async def _main(self) -> None:
        recorder = self._begin()
        self._ready.set()
        try:
            while not self._stopping:
                try:
                    await self.fill()
                except Exception:  # noqa: BLE001 - the database may be down; try again next round
                    log.exception("outbox round for %s failed", self.sink.name)
                assert self._wake is not None
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                except TimeoutError:
                    pass
                self._wake.clear()
                if self._outstanding:
                    await asyncio.sleep(0.005)  # let a few more attempts finish: one claim for them all
        finally:
            await self._finish(recorder, self.sink.attempt_timeout_s + 2)

    # ---- one round ---------------------------------------------------------------------------------
    def _outstanding_by_tenant(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for tenant in self._outstanding.values():
            counts[tenant] = counts.get(tenant, 0) + 1
        return counts

    async def fill(self) -> int:
        """Claim due events up to each tenant's room (prefetch × its send slots) and start them."""
        free = self.max_inflight * self.prefetch - len(self._outstanding)
        if free <= 0:
            return 0
        now = time.monotonic()
        busy = self._outstanding_by_tenant()
        tenants = set(busy) | set(self.breakers.known())
        room = {
            t: max(0, self.breakers.slots(t, self.per_tenant, now) * self.prefetch - busy.get(t, 0))
            for t in tenants
        }
        half_open = {t for t in tenants if self.breakers.state(t, now) == "half_open"}
        room.update({t: max(0, 1 - busy.get(t, 0)) for t in half_open})
        exclude = [t for t, n in room.items() if n <= 0]
        events = await asyncio.to_thread(
            self.store.outbox.claim_due, self.sink.name, owner=self.owner, lease_s=self.lease_s,
            limit=min(free, 500), exclude_tenants=exclude, per_tenant=room,
            default_per_tenant=self.per_tenant * self.prefetch,
        )
        if not events:
            return 0
        try:
            prepared = await asyncio.to_thread(self.sink.prepare, events)
        except Exception:  # noqa: BLE001 - give the leases back; the next round retries
            log.exception("preparing %d %s events failed", len(events), self.sink.name)
            await asyncio.to_thread(self.store.outbox.defer, events, owner=self.owner, until=datetime.now(UTC))
            return 0
        for event in events:
            self._outstanding[event.id] = event.tenant_id
            self.breakers.started(event.tenant_id, now, event.id)
            task = asyncio.create_task(self._attempt(event, prepared.get(event.id)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        INFLIGHT.labels(self.sink.name).set(len(self._outstanding))
        return len(events)

    async def _attempt(self, event: OutboxEvent, prepared: Any) -> None:
        # Each task runs in its own copy of the context: these ids are this event's alone.
        with log_context(request_id=event.request_id, message_id=event.message_id, tenant_id=event.tenant_id):
            try:
                await self._attempt_in_context(event, prepared)
            except Exception:  # noqa: BLE001 - the lease expires and the event is retried
                log.exception("%s event %s: attempt failed to run", self.sink.name, event.event_id)
                self._done(event)

    def _done(self, event: OutboxEvent) -> None:
        self._outstanding.pop(event.id, None)
        self.breakers.release(event.tenant_id, event.id)
        INFLIGHT.labels(self.sink.name).set(len(self._outstanding))
        OPEN_CIRCUITS.labels(self.sink.name).set(self.breakers.open_count(time.monotonic()))
        if self._wake is not None:
            self._wake.set()

    async def _attempt_in_context(self, event: OutboxEvent, prepared: Any) -> None:
        tenant_slots = self._tenant_slots.setdefault(event.tenant_id, asyncio.Semaphore(self.per_tenant))
        assert self._send_slots is not None and self._results is not None
        async with tenant_slots, self._send_slots:
            if self.breakers.holds(event.tenant_id, event.id, time.monotonic()):
                # The circuit opened while this event waited its turn: no attempt, due again later.
                until = datetime.now(UTC) + timedelta(seconds=self.breakers.base_s)
                await asyncio.to_thread(self.store.outbox.defer, [event], owner=self.owner, until=until)
                self._done(event)
                return
            started = time.perf_counter()
            try:
                result = await self.sink.send(event, prepared)
            except Exception as exc:  # noqa: BLE001 - a sink bug is a failed attempt, not a lost event
                log.exception("sink %s raised", self.sink.name)
                result = DeliveryResult(False, error=f"{type(exc).__name__}: {exc}"[:500])
            duration = time.perf_counter() - started
        attempt = event.attempts_this_round + 1
        retry_at: datetime | None = None
        if not result.ok and not result.permanent and attempt < self.sink.max_attempts:
            retry_at = datetime.now(UTC) + timedelta(seconds=self.sink.retry_delay(attempt))
        if not result.permanent:
            self.breakers.record(event.tenant_id, result.ok, time.monotonic())
        outcome = "delivered" if result.ok else ("retry" if retry_at else "dead")
        ATTEMPTS.labels(self.sink.name, outcome).inc()
        ATTEMPT_SECONDS.labels(self.sink.name).observe(duration)
        if result.ok:
            log.info("%s event %s delivered (attempt %d)", self.sink.name, event.event_id, event.attempts + 1)
            lag = (datetime.now(UTC) - event.created_at).total_seconds()
            DELIVERY_LAG.labels(self.sink.name).observe(max(0.0, lag))
        else:
            log.warning("%s event %s attempt %d failed (%s): %s", self.sink.name, event.event_id,
                        event.attempts + 1, outcome, result.error)
        await self._results.put(AttemptOutcome(event, result.ok, result.status_code, result.error,
                                               round(duration * 1000, 3), retry_at))

    async def _recorder(self) -> None:
        """Write finished attempts in batches: one transaction for whatever finished meanwhile."""
        assert self._results is not None
        while True:
            batch = [await self._results.get()]
            while len(batch) < 500 and not self._results.empty():
                batch.append(self._results.get_nowait())
            try:
                await asyncio.to_thread(self.store.outbox.record_attempts, batch, owner=self.owner)
            except Exception:  # noqa: BLE001 - unrecorded: the leases expire and the events go again
                log.exception("recording %d %s attempts failed", len(batch), self.sink.name)
            finally:
                for outcome in batch:
                    self._done(outcome.event)
                    self._results.task_done()

    # ---- synchronous use (CLI, tests) ------------------------------------------------------------------
    def drain(self, timeout_s: float = 30.0) -> int:
        """Deliver everything due now, on the caller's thread; returns attempts made."""

        async def _go() -> int:
            recorder = self._begin()
            made = 0
            deadline = time.monotonic() + timeout_s
            try:
                while time.monotonic() < deadline:
                    started = await self.fill()
                    made += started
                    if self._tasks:
                        await asyncio.wait(self._tasks, timeout=max(0.0, deadline - time.monotonic()))
                        assert self._results is not None
                        await self._results.join()
                    elif not started:
                        break
            finally:
                await self._finish(recorder, 1.0)
            return made

        return asyncio.run(_go())
