"""Wires settings into a store, the scoring service, the outbox drainer and a dispatcher.

The same Runtime serves `heron serve` (API + embedded worker and drainer, or API as a Celery
producer), and `heron worker` (Celery consumer and drainer).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property
from typing import Any, Protocol

from pipeline.logs import request_id as current_request_id
from pipeline.queue.batching import take_batch
from pipeline.queue.celery_app import DECIDE_TASK, QUEUE, make_celery
from pipeline.queue.embedded import EmbeddedDispatcher
from pipeline.queue.processing import decide_stored_messages, sweep
from pipeline.review import wants_review
from pipeline.service import ModerationService
from pipeline.settings import Settings, get_settings
from pipeline.sinks import OutboxDrainer, WebhookSink
from pipeline.sinks.review import ReviewSink
from pipeline.store import Store
from pipeline.types import Decision, DecisionStatus, Message
from pipeline.waves import WaveReviser

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    def start(self) -> None: ...
    def submit(self, row_ids: list[int]) -> bool: ...
    def backlog(self) -> int | None: ...
    def stop(self) -> None: ...


class CeleryDispatcher:
    """Sends row ids to Celery, many per task.

    Why many: a Celery task costs 1-2 CPU-ms across producer, Redis and worker, and each task
    also costs the worker a few database round trips, as much as scoring several messages; and
    a worker sorts a task's messages by length before the forward pass, which only pays off with
    enough of them. So under load the dispatcher gathers ids for up to `max_wait_s` (or
    `max_batch` ids) per task. When idle, the first id goes out at once (Nagle-style), so a lone
    message is not held back.

    If Redis is down the ids stay pending in the store and the sweeper re-sends them later: the
    caller's 202 already means "stored", not "queued".
    """

    def __init__(self, store: Store, redis_url: str, max_batch: int = 128, max_wait_s: float = 0.1) -> None:
        self.store = store
        self.redis_url = redis_url
        self.app = make_celery(redis_url)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._buf: list[int] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._redis: Any = None
        self._last_send = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="heron-celery-producer", daemon=True)
        self._thread.start()

    def submit(self, row_ids: list[int]) -> bool:
        with self._cond:
            self._buf.extend(row_ids)
            self._cond.notify()
        return True

    def send_now(self, row_ids: list[int]) -> bool:
        try:
            self.app.send_task(DECIDE_TASK, args=[row_ids], retry=False, queue=QUEUE)
        except Exception as exc:  # noqa: BLE001 - broker down: the sweeper re-sends later
            log.warning("could not enqueue %d messages (%s); they stay pending", len(row_ids), exc)
            return False
        try:
            self.store.messages.mark_enqueued(row_ids)
        except Exception:  # noqa: BLE001
            log.exception("mark_enqueued failed")
        return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._buf and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._buf:
                    return
                # Idle (nothing sent for a window): send at once. Busy: gather for one window.
                deadline = max(time.monotonic(), self._last_send + self.max_wait_s)
                while len(self._buf) < self.max_batch and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch, self._buf = self._buf[: self.max_batch], self._buf[self.max_batch :]
                self._last_send = time.monotonic()
            self.send_now(batch)

    def backlog(self) -> int | None:
        """Tasks waiting in the broker queue, or None when Redis cannot be asked."""
        import redis

        if self._redis is None:
            self._redis = redis.Redis.from_url(self.redis_url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return int(self._redis.llen(QUEUE))
        except redis.RedisError:  # broker down: nothing can be sent anyway
            return None

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread:
            self._thread.join(timeout=5)


class Runtime:
    def __init__(self, settings: Settings, role: str) -> None:
        self.settings = settings
        self.role = role
        self.store = Store.from_url(settings.database_url, settings.api_key_pepper)
        self.sink = WebhookSink(self.store, settings)
        self.drainer = OutboxDrainer(
            self.store,
            self.sink,
            per_tenant=settings.webhook_tenant_concurrency,
            max_inflight=settings.outbox_max_inflight,
            poll_s=settings.outbox_poll_s,
            breaker_threshold=settings.webhook_breaker_threshold,
            breaker_base_s=settings.webhook_breaker_base_s,
            breaker_max_s=settings.webhook_breaker_max_s,
        )
        # The review queue is a sink too: held and flagged decisions reach it through the outbox.
        self.store.review.double_share = settings.review_double_share
        self.store.review.claim_s = settings.review_claim_s
        self.review_drainer = OutboxDrainer(self.store, ReviewSink(self.store), poll_s=settings.outbox_poll_s)
        self.dispatcher: Dispatcher
        if settings.use_celery:
            assert settings.redis_url is not None
            self.dispatcher = CeleryDispatcher(self.store, settings.redis_url)
        else:
            self.dispatcher = EmbeddedDispatcher(self.process, workers=settings.embedded_workers)
        self.maintenance: Maintenance | None = None
        self._late_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="heron-late")
        self.writer = DecisionWriter(self.store, on_saved=self.wake_drainers, after_saved=self.after_sync_saved)
        self.inbox = MessageInbox(self.store, self.dispatcher.submit)
        # Shadow mode (pipeline/shadow.py): set when `service` is built, where this process decides
        # the async path (a worker, or an API with the embedded worker).
        self.shadow: Any = None

    @classmethod
    def build(cls, role: str = "api", settings: Settings | None = None) -> Runtime:
        return cls(settings or get_settings(), role)

    @cached_property
    def service(self) -> ModerationService:
        from pipeline.images.keeper import MediaKeeper

        service = ModerationService.from_settings(self.settings)
        service.on_media = MediaKeeper(self.store.banks, self.settings.image_thumbnail_px)
        if self.role == "worker" or not self.settings.use_celery:
            from pipeline.shadow import attach

            self.shadow = attach(self.settings, service, self.store.engine)
        return service

    def wake_drainers(self) -> None:
        """New outbox events were committed in this process: every sink's drainer looks now."""
        self.drainer.wake()
        self.review_drainer.wake()

    @cached_property
    def waves(self) -> WaveReviser | None:
        """Holds a recognised spam wave's earlier members (pipeline/waves.py); None without the
        behaviour scorer, whose state names the waves."""
        from pipeline.features.behaviour import find_extractor

        extractor = find_extractor(self.service.features)
        return WaveReviser(self.store, extractor.cluster) if extractor is not None else None

    def after_sync_saved(self, decisions: list[tuple[str, Decision]]) -> None:
        """The write-behind stored these sync decisions: a recognised wave holds its earlier members."""
        waves = self.waves
        if waves is None:
            return
        by_tenant: dict[str, list[Decision]] = {}
        for tenant_id, d in decisions:
            by_tenant.setdefault(tenant_id, []).append(d)
        if any([waves.after_decided(t, ds) for t, ds in by_tenant.items()]):
            self.wake_drainers()

    def process(self, row_ids: list[int]) -> int:
        return len(decide_stored_messages(self.store, self.service, row_ids, on_decided=self.wake_drainers,
                                          waves=self.waves))

    def store_pending(self, tenant_id: str, message: Message) -> None:
        """The sync budget ran out: keep the message durably as pending (claimed as enqueued now),
        so that if the late computation is lost with this process, the sweeper decides it."""
        row_id, _ = self.store.messages.insert(tenant_id, message)
        self.store.messages.mark_enqueued([row_id])

    def finish_late(
        self, tenant_id: str, message: Message, outcome: Future[Decision] | asyncio.Future[Decision]
    ) -> None:
        """Store a late sync decision (its outbox events deliver it by webhook), off the event loop."""
        rid = current_request_id.get()

        def _save() -> None:
            if outcome.cancelled() or outcome.exception() is not None:
                log.error("late decision for %s failed; the sweeper will retry", message.id)
                return
            try:
                decision = outcome.result()
                if self.store.decisions.save_many([(tenant_id, decision)], path="sync-late",
                                                  request_ids={decision.message_id: rid}):
                    self.wake_drainers()
                    self.after_sync_saved([(tenant_id, decision)])
                if decision.status is DecisionStatus.PARTIAL:  # images deferred: the async path completes it
                    row_id, _ = self.store.messages.insert(tenant_id, message)
                    self.dispatcher.submit([row_id])
            except Exception:  # noqa: BLE001 - the sweeper retries a message left pending
                log.exception("storing late decision for %s failed", message.id)

        self._late_pool.submit(_save)

    def start(self) -> None:
        """Start the dispatcher and, where this process owns the queue, the maintenance loop and
        the outbox drainer (with Celery, workers run those)."""
        self.dispatcher.start()
        if not self.settings.use_celery:
            self.maintenance = Maintenance(self)
            self.maintenance.start()
            self.drainer.start()
            self.review_drainer.start()

    def stop(self) -> None:
        if self.maintenance:
            self.maintenance.stop()
        self.inbox.stop()
        self.dispatcher.stop()
        if self.shadow is not None:
            self.shadow.stop()
        self.writer.stop()
        self._late_pool.shutdown(wait=True)
        self.drainer.stop()
        self.review_drainer.stop()
        self.store.dispose()


class MessageInbox:
    """Group commit for `POST /v1/messages`: concurrent requests are stored in one transaction.

    A 202 still means "stored": each caller's future resolves only after the commit that holds
    its message. Only the number of transactions changes (one per burst instead of one per
    message), which is most of the accept path's cost.
    """

    def __init__(self, store: Store, on_stored: Any, max_batch: int = 256) -> None:
        self.store = store
        self.on_stored = on_stored
        self.max_batch = max_batch
        self._queue: queue.Queue[tuple[str, Message, str | None, Future[tuple[int, bool]]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="heron-inbox", daemon=True)
        self._thread.start()

    def put(self, tenant_id: str, message: Message) -> Future[tuple[int, bool]]:
        fut: Future[tuple[int, bool]] = Future()
        self._queue.put((tenant_id, message, current_request_id.get(), fut))
        return fut

    def _loop(self) -> None:
        while True:
            batch, stop = take_batch(self._queue, self.max_batch)
            if batch:
                self._store(batch)
            if stop:
                return

    def _store(self, batch: list[tuple[str, Message, str | None, Future[tuple[int, bool]]]]) -> None:
        try:
            results = self.store.messages.insert_many([(t, m) for t, m, _, _ in batch], [r for _, _, r, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every caller gets the error; nothing is half-stored
            for _, _, _, fut in batch:
                fut.set_exception(exc)
            return
        for (_, _, _, fut), res in zip(batch, results, strict=True):
            fut.set_result(res)
        new_ids = [rid for rid, created in results if created]
        if new_ids:
            self.on_stored(new_ids)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)


class DecisionWriter:
    """Write-behind for sync decisions: the caller already holds its answer, so the stored copy
    (with its audit row and outbox events: sync decisions reach the sinks too) is written off the
    request path, batched by a background thread."""

    def __init__(self, store: Store, on_saved: Any = None, after_saved: Any = None) -> None:
        self.store = store
        self.on_saved = on_saved
        self.after_saved = after_saved  # (tenant id, decision) pairs just stored, on the writer thread
        self._queue: queue.Queue[tuple[str, Decision, str | None] | None] = queue.Queue()
        # Messages whose decision goes to a person: the sync path stores no message otherwise, and
        # a reviewer must see the text and its context (keyed like `_unsaved`).
        self._review_messages: dict[tuple[str, str], Message] = {}
        self._pending = 0  # recorded but not yet committed (approximate across threads; for flush)
        # The same, readable: a caller that got its decision and reads it back at once must find
        # it, committed or not (keyed by tenant and by decision and message id).
        self._unsaved: dict[tuple[str, str], Decision] = {}
        self._unsaved_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="heron-decision-writer", daemon=True)
        self._thread.start()

    def record(self, tenant_id: str, decision: Decision, message: Message | None = None) -> None:
        self._pending += 1
        with self._unsaved_lock:
            if message is not None and wants_review(decision):
                self._review_messages[(tenant_id, message.id)] = message
            self._unsaved[(tenant_id, decision.id)] = decision
            self._unsaved[(tenant_id, decision.message_id)] = decision
        self._queue.put((tenant_id, decision, current_request_id.get()))

    def unsaved(self, tenant_id: str, decision_or_message_id: str) -> Decision | None:
        """A decision answered but not yet committed, by decision or message id."""
        with self._unsaved_lock:
            return self._unsaved.get((tenant_id, decision_or_message_id))

    def _loop(self) -> None:
        while True:
            batch, stop = take_batch(self._queue, 500)
            if batch:
                try:
                    with self._unsaved_lock:
                        keep = [(t, m) for t, d, _ in batch
                                if (m := self._review_messages.pop((t, d.message_id), None)) is not None]
                    if keep:  # stored before the decision marks them decided
                        self.store.messages.insert_many(keep)
                    saved = self.store.decisions.save_many(
                        [(t, d) for t, d, _ in batch], path="sync", request_ids={d.message_id: r for _, d, r in batch}
                    )
                    if saved and self.on_saved is not None:
                        self.on_saved()
                    if saved and self.after_saved is not None:
                        self.after_saved(saved)
                except Exception:  # noqa: BLE001
                    log.exception("could not store %d sync decisions", len(batch))
                finally:
                    self._pending -= len(batch)
                    with self._unsaved_lock:
                        for t, d, _ in batch:
                            self._unsaved.pop((t, d.id), None)
                            self._unsaved.pop((t, d.message_id), None)
            if stop:
                return

    def flush(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self._pending > 0 and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join(timeout=5)


class Maintenance:
    """Periodic: re-enqueue messages left pending (a lost task, a dead worker, Redis restarted)."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heron-maintenance", daemon=True)
        self._dispatcher: Dispatcher = runtime.dispatcher
        if runtime.role == "worker" and runtime.settings.redis_url:
            self._dispatcher = CeleryDispatcher(runtime.store, runtime.settings.redis_url)

    def start(self) -> None:
        self._thread.start()

    # Only re-send stale messages when the queue is (nearly) drained: with a long backlog, old
    # pending messages are merely waiting their turn, and re-sending them would multiply work.
    MAX_BACKLOG_FOR_SWEEP = 4

    PURGE_EVERY_S = 3600.0
    _purged_at = float("-inf")

    def purge_media_hashes(self) -> None:
        """Forget image hashes older than HERON_IMAGE_HASH_RETENTION_DAYS (hourly)."""
        if time.monotonic() - self._purged_at < self.PURGE_EVERY_S:
            return
        self._purged_at = time.monotonic()
        n = self.rt.store.banks.purge_seen(self.rt.settings.image_hash_retention_days)
        if n:
            log.info("forgot %d image hashes past the retention window", n)

    def run_once(self) -> None:
        self.purge_media_hashes()
        backlog = self._dispatcher.backlog()
        if backlog is not None and backlog <= self.MAX_BACKLOG_FOR_SWEEP:
            submit = getattr(self._dispatcher, "send_now", self._dispatcher.submit)
            sweep(self.rt.store, self.rt.settings.requeue_after_s, submit)

    def _loop(self) -> None:
        while not self._stop.wait(self.rt.settings.sweep_interval_s):
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("maintenance round failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
