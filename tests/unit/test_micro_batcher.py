"""MicroBatcher as its callers see it: answers, sharing, errors, cancellation (no model needed).

The forward function here is a stand-in computed from the token ids, so every answer is checkable;
the real model's batching is covered in test_text_model.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from models.text.batcher import LRUCache, MicroBatcher


def encode(text: str) -> list[int]:
    if text == "unreadable":
        raise ValueError("cannot tokenise this")
    return [ord(c) for c in text]


class Forward:
    """Answer = (length, sum of ids); records batch sizes; fails on a batch holding 'boom'."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # set when a forward pass has started

    def __call__(self, seqs: Sequence[Sequence[int]], worker: int) -> np.ndarray:
        self.entered.set()
        self.gate.wait(10)
        with self.lock:
            self.batches.append(len(seqs))
        if any(list(s) == encode("boom") for s in seqs):
            raise RuntimeError("forward failed")
        return np.array([[len(s), sum(s)] for s in seqs], dtype=np.float32)


def expected(text: str) -> list[float]:
    ids = encode(text)
    return [len(ids), sum(ids)]


@pytest.fixture
def forward() -> Forward:
    return Forward()


@pytest.fixture
def batcher(forward: Forward):
    b = MicroBatcher(encode, forward, max_batch=8, max_wait_ms=2, workers=2, cache=LRUCache(100), group=4)
    yield b
    b.close()


def test_many_coroutine_callers_each_get_their_own_answer_in_few_batches(batcher: MicroBatcher,
                                                                         forward: Forward) -> None:
    texts = [f"message number {i} " + "x" * (i % 13) for i in range(200)]

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.submit_async(t) for t in texts))

    got = asyncio.run(main())
    for t, row in zip(texts, got, strict=True):
        assert row.tolist() == expected(t)
    assert sum(forward.batches) == 200
    assert len(forward.batches) < 100, forward.batches  # batched, not one forward per caller


def test_repeats_in_flight_share_one_forward_and_later_repeats_come_from_the_cache(
        batcher: MicroBatcher, forward: Forward) -> None:
    forward.gate.clear()  # hold the first batch so the repeats arrive while it is in flight

    async def main() -> list[np.ndarray]:
        tasks = [asyncio.ensure_future(batcher.submit_async("free nitro here")) for _ in range(50)]
        await asyncio.sleep(0.05)
        forward.gate.set()
        first = await asyncio.gather(*tasks)
        again = await batcher.submit_async("free nitro here")
        return [*first, again]

    got = asyncio.run(main())
    assert all(r.tolist() == expected("free nitro here") for r in got)
    assert sum(forward.batches) == 1


def test_thread_and_coroutine_callers_mix(batcher: MicroBatcher) -> None:
    thread_futs = [batcher.submit(f"thread {i}") for i in range(20)]

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.submit_async(f"loop {i}") for i in range(20)))

    loop_rows = asyncio.run(main())
    assert [f.result(10).tolist() for f in thread_futs] == [expected(f"thread {i}") for i in range(20)]
    assert [r.tolist() for r in loop_rows] == [expected(f"loop {i}") for i in range(20)]


def test_errors_reach_only_their_callers(batcher: MicroBatcher) -> None:
    async def main() -> list[object]:
        return await asyncio.gather(batcher.submit_async("unreadable"), batcher.submit_async("fine"),
                                    return_exceptions=True)

    bad, good = asyncio.run(main())
    assert isinstance(bad, ValueError)
    assert good.tolist() == expected("fine")

    async def boom() -> object:
        return await asyncio.gather(batcher.submit_async("boom"), return_exceptions=True)

    (err,) = asyncio.run(boom())
    assert isinstance(err, RuntimeError) and "forward failed" in str(err)

    async def after() -> np.ndarray:  # the worker survived the failed batch
        return await batcher.submit_async("still here")

    assert asyncio.run(after()).tolist() == expected("still here")


def test_a_caller_that_gives_up_does_not_break_the_others(batcher: MicroBatcher, forward: Forward) -> None:
    forward.gate.clear()

    async def main() -> np.ndarray:
        impatient = asyncio.ensure_future(batcher.submit_async("same text"))
        patient = asyncio.ensure_future(batcher.submit_async("same text"))
        await asyncio.sleep(0.02)
        impatient.cancel()
        forward.gate.set()
        return await patient

    assert asyncio.run(main()).tolist() == expected("same text")


def test_closed_batcher_refuses_new_work(forward: Forward) -> None:
    b = MicroBatcher(encode, forward)
    b.close()
    with pytest.raises(RuntimeError):
        b.submit("x")

    async def main() -> None:
        await b.submit_async("x")

    with pytest.raises(RuntimeError):
        asyncio.run(main())


def test_a_thread_caller_that_cancels_does_not_kill_the_worker(forward: Forward) -> None:
    b = MicroBatcher(encode, forward, workers=1)  # one worker: if it died, nobody would answer
    try:
        forward.gate.clear()
        gone = b.submit("cancel me")
        assert forward.entered.wait(10)  # the worker is running its batch
        assert gone.cancel()
        forward.gate.set()
        time.sleep(0.1)  # the worker settles the cancelled future
        assert b.submit("next one").result(10).tolist() == expected("next one")
    finally:
        b.close()


def test_jobs_queued_before_close_are_still_answered(forward: Forward) -> None:
    b = MicroBatcher(encode, forward, workers=1)
    forward.gate.clear()
    futs = [b.submit(f"late {i}") for i in range(5)]
    threading.Timer(0.1, forward.gate.set).start()
    b.close()
    assert [f.result(10).tolist() for f in futs] == [expected(f"late {i}") for i in range(5)]
