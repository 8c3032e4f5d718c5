"""The embedded queue: worker threads inside the service process. No server needed.

Accepted messages are already in the store, so this queue only carries row ids; if the process
dies, the sweeper of the next start finds the pending rows and decides them.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from pipeline.queue.batching import take_batch

log = logging.getLogger(__name__)


class EmbeddedDispatcher:
    def __init__(self, handle: Callable[[list[int]], object], workers: int = 1, max_batch: int = 64) -> None:
        self._handle = handle
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._workers = workers
        self._max_batch = max_batch
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self._workers):
            t = threading.Thread(target=self._loop, name=f"heron-embedded-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, row_ids: list[int]) -> bool:
        for rid in row_ids:
            self._queue.put(rid)
        return True

    def _loop(self) -> None:
        while True:
            batch, stop = take_batch(self._queue, self._max_batch)
            if batch:
                try:
                    self._handle(batch)
                except Exception:  # noqa: BLE001 - the sweeper retries what failed here
                    log.exception("embedded worker failed on %d messages; the sweeper will retry", len(batch))
            if stop:
                self._queue.put(None)  # let the other worker threads see it too
                return

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()

    def backlog(self) -> int:
        return self._queue.qsize()
