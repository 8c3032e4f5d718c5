"""Dynamic micro-batching and the repeat cache for the text model.

Why: one message per HTTP request means batch-1 forwards, which waste the CPU's vector units;
gathering what queues up while the model is busy into batches of similar length multiplies
throughput at a small latency cost (and none when idle: a lone message goes straight through).
Work is split so nothing serialises behind the forward pass:
callers (HTTP handlers, Celery tasks) normalise, look up the cache and tokenise in their own
threads; worker threads only pad and run the forward pass (ONNX Runtime and torch release the
GIL there, so the event loop and the tokenisers keep running).

Spam waves send the same text many times: an LRU keyed by the model-ready text answers repeats
with a lookup, and identical texts already in flight share one future instead of queueing twice.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

import cachetools
import numpy as np


class LRUCache:
    """The repeat cache: a thread-safe LRU of model-ready text -> probability vector, with hit/miss counters.

    Storage and eviction are `cachetools.LRUCache`; this adds what the text scorer needs around
    it: a lock (cachetools caches are not thread-safe, and the event loop, Celery threads and
    batcher threads all read and write it), the counters exported as metrics, and `maxsize` 0
    meaning "off" (cachetools refuses every item then).
    """

    def __init__(self, maxsize: int = 50_000) -> None:
        self.maxsize = maxsize
        self._data: cachetools.LRUCache[str, np.ndarray] = cachetools.LRUCache(max(1, maxsize))
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> np.ndarray | None:
        if self.maxsize <= 0:
            return None
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
            return value

    def put(self, key: str, value: np.ndarray) -> None:
        if self.maxsize <= 0:
            return
        with self._lock:
            self._data[key] = value

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0


Waiter = tuple[asyncio.AbstractEventLoop | None, "Future[np.ndarray] | asyncio.Future[np.ndarray]"]


@dataclass
class _Job:
    """One distinct text in flight, and everyone waiting for it (repeats share the job)."""

    key: str
    ids: list[int]
    waiters: list[Waiter] = field(default_factory=list)
    queued: float = 0.0


def _resolve_many(results: list[tuple[asyncio.Future[np.ndarray], np.ndarray | None, BaseException | None]]) -> None:
    """Runs on an event loop: settle every asyncio future of one batch in one wake-up."""
    for fut, value, exc in results:
        if fut.done():  # the caller gave up (cancelled); nothing to deliver
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)


class MicroBatcher:
    """Gathers concurrent single-text requests into length-sorted batches on worker threads.

    `encode(text) -> ids` runs in the caller's thread; `forward(list_of_ids, worker) -> (n, labels)
    probabilities` runs on worker thread number `worker`. Jobs wait in one shared arrival-order
    queue; a free worker takes the oldest job plus the queued jobs closest to it in length (among
    the oldest `max_batch * group`), at most `max_batch` and at most its fair share of the queue
    (queued / workers), and runs them as one batch. Why not a
    fixed wait to fill batches: under load the queue fills while the workers are busy anyway, and
    when idle a wait only adds latency (`max_wait_ms` > 0 still allows one). Why the oldest first
    and one batch at a time: a worker that took a whole window left the other idle and made the
    last job of the window wait for all the batches before it (the p99).
    `workers` > 1 lets two forward passes run at once (two one-thread workers beat one
    two-thread worker on short batches).

    Two ways to wait: `submit` (a `concurrent.futures.Future`, for threads) and `submit_async`
    (for event loops). Why the second is not `wrap_future(submit())`: every wrapped future wakes its
    loop separately (one self-pipe write and one callback each), and the worker thread pays for that
    while holding the GIL; here a worker settles a whole batch's asyncio futures with one
    `call_soon_threadsafe` per loop, so the forward pass is back on the CPU sooner.
    """

    def __init__(self, encode: Callable[[str], list[int]],
                 forward: Callable[[Sequence[Sequence[int]], int], np.ndarray],
                 max_batch: int = 32, max_wait_ms: float = 0.0, workers: int = 1,
                 cache: LRUCache | None = None, group: int = 4, with_keys: bool = False) -> None:
        self.encode = encode
        # with_keys: `forward(ids, worker, keys)` also gets the batch's texts (keys), for models that read
        # the text besides the token ids (the taxonomy heads' lexical side).
        self.with_keys = with_keys
        self.forward = forward
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.group = max(1, group)
        self.cache = cache if cache is not None else LRUCache(0)
        self._pending: deque[_Job] = deque()  # arrival order
        self._cond = threading.Condition()
        self._inflight: dict[str, _Job] = {}
        self._inflight_lock = threading.Lock()
        self._closed = False
        self.batches = 0
        self.forwarded = 0
        self.n_workers = max(1, workers)
        self._threads = [threading.Thread(target=self._loop, args=(i,), name=f"text-batcher-{i}", daemon=True)
                         for i in range(self.n_workers)]
        for t in self._threads:
            t.start()

    def _enqueue(self, key: str, waiter: Waiter) -> None:
        """Attach `waiter` to the job for `key`, creating and queueing the job if none is in flight."""
        with self._inflight_lock:
            running = self._inflight.get(key)
            if running is not None:
                running.waiters.append(waiter)
                return
            job = _Job(key, [], [waiter])
            self._inflight[key] = job
        try:
            job.ids = self.encode(key)
        except Exception as exc:  # noqa: BLE001 - the callers get the error, the batcher keeps going
            self._settle([job], None, exc)
            return
        job.queued = time.perf_counter()
        with self._cond:
            if not self._closed:
                self._pending.append(job)
                self._cond.notify()
                return
        # close() ran between the caller's check and now: the workers may be gone, so answer here.
        self._settle([job], None, RuntimeError("MicroBatcher is closed"))

    def submit(self, key: str) -> Future[np.ndarray]:
        """Queue one model-ready text; the future resolves to its probability vector."""
        if self._closed:
            raise RuntimeError("MicroBatcher is closed")
        fut: Future[np.ndarray] = Future()
        cached = self.cache.get(key)
        if cached is not None:
            fut.set_result(cached)
            return fut
        self._enqueue(key, (None, fut))
        return fut

    async def submit_async(self, key: str) -> np.ndarray:
        """Await one model-ready text's probability vector from an event loop (FastAPI handlers)."""
        if self._closed:
            raise RuntimeError("MicroBatcher is closed")
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[np.ndarray] = loop.create_future()
        self._enqueue(key, (loop, fut))
        return await fut

    def _settle(self, jobs: Sequence[_Job], rows: np.ndarray | None, exc: BaseException | None = None) -> None:
        """Deliver one batch's results (or one error) to every waiter, one loop wake-up per event loop."""
        per_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        plain: list[tuple[Future[np.ndarray], np.ndarray | None]] = []
        with self._inflight_lock:
            for k, job in enumerate(jobs):
                if self._inflight.get(job.key) is job:
                    del self._inflight[job.key]
                row = None if rows is None else rows[k]
                if row is not None:
                    self.cache.put(job.key, row)
                for loop, fut in job.waiters:
                    if loop is None:
                        plain.append((fut, row))  # type: ignore[arg-type]
                    else:
                        per_loop.setdefault(loop, []).append((fut, row, exc))
        for loop, results in per_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve_many, results)
            except RuntimeError:  # that loop has closed; its callers are gone
                pass
        for fut, row in plain:
            try:
                if exc is not None:
                    fut.set_exception(exc)
                else:
                    fut.set_result(row)  # type: ignore[arg-type]
            except InvalidStateError:  # the caller cancelled it; the worker must not die of that
                pass

    def _take(self) -> list[_Job] | None:
        """The next batch for a worker (None once closed and drained).

        The oldest waiting job always goes next (so nobody starves), together with the waiting
        jobs closest to it in length, looked for among the oldest `max_batch * group`: each batch
        pads little, and the rest stays shared so an idle worker can take the next batch at once.
        """
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None
            if self.max_wait > 0 and len(self._pending) < self.max_batch:
                deadline = self._pending[0].queued + self.max_wait
                while len(self._pending) < self.max_batch and not self._closed:
                    left = deadline - time.perf_counter()
                    if left <= 0 or not self._pending:
                        break
                    self._cond.wait(left)
                if not self._pending:
                    return []
            # A fair share, not everything: with 3 waiting and 2 workers, one takes 2 and the other 1,
            # so a moderate backlog is cleared in parallel instead of by one long batch.
            size = min(self.max_batch, -(-len(self._pending) // self.n_workers))
            window = [self._pending.popleft() for _ in range(min(len(self._pending), self.max_batch * self.group))]
            if len(window) <= size:
                return window
            target = len(window[0].ids)
            ranked = sorted(range(1, len(window)), key=lambda k: abs(len(window[k].ids) - target))
            chosen = {0, *ranked[: size - 1]}
            for k in reversed(range(len(window))):  # the rest goes back, in arrival order, at the front
                if k not in chosen:
                    self._pending.appendleft(window[k])
            return [window[k] for k in sorted(chosen)]

    def _loop(self, worker: int) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if not batch:
                continue
            batch.sort(key=lambda j: len(j.ids))
            try:
                ids = [j.ids for j in batch]
                probs = (self.forward(ids, worker, [j.key for j in batch])  # type: ignore[call-arg]
                         if self.with_keys else self.forward(ids, worker))
            except Exception as exc:  # noqa: BLE001 - one bad batch fails its callers, not the worker
                self._settle(batch, None, exc)
                continue
            self.batches += 1
            self.forwarded += len(batch)
            self._settle(batch, probs)

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking work; jobs already queued are still answered before the workers exit."""
        if self._closed:
            return
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)
