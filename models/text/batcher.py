"""Dynamic micro-batching and the repeat cache for the text model.

Why: one message per HTTP request means batch-1 forwards, which waste the CPU's vector units;
gathering whatever arrives within a few milliseconds into one length-sorted batch multiplies
throughput at a small latency cost. Work is split so nothing serialises behind the forward pass:
callers (HTTP handlers, Celery tasks) normalise, look up the cache and tokenise in their own
threads; worker threads only pad and run the forward pass (ONNX Runtime and torch release the
GIL there, so the event loop and the tokenisers keep running).

Spam waves send the same text many times: an LRU keyed by the model-ready text answers repeats
with a lookup, and identical texts already in flight share one future instead of queueing twice.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np


class LRUCache:
    """A small thread-safe LRU of text -> probability vector, with hit/miss counters."""

    def __init__(self, maxsize: int = 50_000) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()
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
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: np.ndarray) -> None:
        if self.maxsize <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0


@dataclass
class _Job:
    key: str
    ids: list[int]
    future: Future[np.ndarray]


class MicroBatcher:
    """Gathers concurrent single-text requests into length-sorted batches on worker threads.

    `encode(text) -> ids` runs in the caller's thread; `forward(list_of_ids, worker) -> (n, labels)
    probabilities` runs on worker thread number `worker`. A worker takes the first waiting job, then keeps collecting
    until it has `max_batch` jobs or `max_wait_ms` has passed since the first one, also takes
    whatever else is already queued (up to `group` batches), sorts everything by length and runs
    it as batches of at most `max_batch`, so each batch pads only to similar lengths.
    `workers` > 1 lets two forward passes run at once (two one-thread workers beat one
    two-thread worker on short batches).
    """

    def __init__(self, encode: Callable[[str], list[int]],
                 forward: Callable[[Sequence[Sequence[int]], int], np.ndarray],
                 max_batch: int = 32, max_wait_ms: float = 2.0, workers: int = 1,
                 cache: LRUCache | None = None, group: int = 4) -> None:
        self.encode = encode
        self.forward = forward
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.group = max(1, group)
        self.cache = cache if cache is not None else LRUCache(0)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._inflight: dict[str, Future[np.ndarray]] = {}
        self._inflight_lock = threading.Lock()
        self._closed = False
        self.batches = 0
        self.forwarded = 0
        self._threads = [threading.Thread(target=self._loop, args=(i,), name=f"text-batcher-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for t in self._threads:
            t.start()

    def submit(self, key: str) -> Future[np.ndarray]:
        """Queue one model-ready text; the future resolves to its probability vector."""
        if self._closed:
            raise RuntimeError("MicroBatcher is closed")
        fut: Future[np.ndarray] = Future()
        cached = self.cache.get(key)
        if cached is not None:
            fut.set_result(cached)
            return fut
        with self._inflight_lock:
            running = self._inflight.get(key)
            if running is not None:
                return running
            self._inflight[key] = fut
        try:
            ids = self.encode(key)
        except Exception as exc:
            self._finish(key, fut, exc=exc)
            return fut
        self._queue.put(_Job(key, ids, fut))
        return fut

    async def submit_async(self, key: str) -> np.ndarray:
        """`await` form of `submit` for asyncio callers (FastAPI handlers)."""
        return await asyncio.wrap_future(self.submit(key))

    def _finish(self, key: str, fut: Future[np.ndarray], result: np.ndarray | None = None,
                exc: BaseException | None = None) -> None:
        with self._inflight_lock:
            if self._inflight.get(key) is fut:
                del self._inflight[key]
        if exc is not None:
            fut.set_exception(exc)
        else:
            assert result is not None
            self.cache.put(key, result)
            fut.set_result(result)

    def _collect(self, first: _Job) -> list[_Job]:
        jobs = [first]
        deadline = time.perf_counter() + self.max_wait
        while len(jobs) < self.max_batch:
            remaining = deadline - time.perf_counter()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:  # close(): let the other workers see the sentinel too
                self._queue.put(None)
                break
            jobs.append(job)
        # Under load more is already waiting: take up to `group` batches' worth without waiting,
        # so that sorting by length can group short messages with short ones.
        while len(jobs) < self.max_batch * self.group:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)
                break
            jobs.append(job)
        return jobs

    def _loop(self, worker: int) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                self._queue.put(None)
                return
            jobs = self._collect(first)
            jobs.sort(key=lambda j: len(j.ids))
            for start in range(0, len(jobs), self.max_batch):
                batch = jobs[start:start + self.max_batch]
                try:
                    probs = self.forward([j.ids for j in batch], worker)
                except Exception as exc:  # one bad batch fails its callers, not the worker
                    for j in batch:
                        self._finish(j.key, j.future, exc=exc)
                    continue
                self.batches += 1
                self.forwarded += len(batch)
                for j, row in zip(batch, probs, strict=True):
                    self._finish(j.key, j.future, result=row)

    def close(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        for t in self._threads:
            t.join(timeout)
