"""Take whatever has queued up, as one batch: the shape of every background writer and worker here."""

from __future__ import annotations

import queue
from typing import TypeVar

T = TypeVar("T")


def take_batch(q: queue.Queue[T | None], max_items: int) -> tuple[list[T], bool]:
    """Block for one item, then drain up to `max_items` without waiting.

    Returns (batch, stop): `None` in the queue is the stop sentinel; it ends the batch and is
    reported so the caller can finish after handling what it already took.
    """
    first = q.get()
    if first is None:
        return [], True
    batch = [first]
    while len(batch) < max_items:
        try:
            nxt = q.get_nowait()
        except queue.Empty:
            break
        if nxt is None:
            return batch, True
        batch.append(nxt)
    return batch, False
