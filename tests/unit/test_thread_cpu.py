"""Per-thread CPU accounting behind `heron_thread_cpu_seconds_total`."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from api.metrics import thread_cpu_seconds


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="read from /proc")
def test_a_thread_that_ran_a_few_milliseconds_shows_them() -> None:
    """A thread that spent ~20 ms on the CPU reads about that, not 0: the clock-tick counters of
    /proc/<tid>/stat round a few short forward passes down to nothing (a CI run saw both text
    batcher threads at 0.0 after eight requests)."""
    done = threading.Event()
    release = threading.Event()

    def burn() -> None:
        end = time.thread_time() + 0.02
        while time.thread_time() < end:
            pass
        done.set()
        release.wait(10)

    worker = threading.Thread(target=burn, name="cpu-burner")
    worker.start()
    try:
        assert done.wait(10)
        seconds = thread_cpu_seconds()["cpu-burner"]
    finally:
        release.set()
        worker.join()
    assert 0.015 <= seconds < 1.0, seconds
    assert "MainThread" in thread_cpu_seconds()
