"""The worker side of the Celery queue: the tasks and the worker process's runtime.

Thin tasks over pure functions in `pipeline.queue.processing`; imported by worker processes only
(through the Celery app's `imports`), never by the API.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import shared_task
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from pipeline.queue.celery_app import DECIDE_TASK
from pipeline.runtime import Maintenance, Runtime

log = logging.getLogger(__name__)

_runtime: Runtime | None = None
_runtime_pid: int | None = None
_runtime_lock = threading.Lock()
_maintenance: Maintenance | None = None


def worker_runtime() -> Runtime:
    """The worker's store/service/sinks, built once per process (after fork)."""
    global _runtime, _runtime_pid
    with _runtime_lock:
        if _runtime is None or _runtime_pid != os.getpid():
            _runtime = Runtime.build(role="worker")
            _runtime_pid = os.getpid()
        return _runtime


def current_runtime() -> Runtime | None:
    """This process's worker runtime if it has been built (metrics read its scorers' stats)."""
    return _runtime if _runtime_pid == os.getpid() else None


def preload_runtime() -> Runtime:
    """Build the worker's runtime and load and warm its scorers now, before any task is taken.

    Why: `Runtime.service` is built on first use, so without this the first task of a fresh
    worker paid for importing transformers, loading the text model and ONNX Runtime's slow first
    runs (about 15 s on a slow 2-core machine), while its messages waited and the worker already
    counted as ready. Called by `heron worker` before Celery starts consuming (solo and threads
    pools) and in each prefork child before it reports up.
    """
    started = time.perf_counter()
    rt = worker_runtime()
    rt.service.warm_up()
    log.info("scorers loaded and warmed in %.1f s: %s", time.perf_counter() - started,
             ", ".join(f"{k} {v}" for k, v in rt.service.versions().items()))
    return rt


@shared_task(
    name=DECIDE_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OSError, ConnectionError),
    retry_backoff=True,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=10,
)
def decide_messages(self: Any, row_ids: list[int]) -> int:
    from sqlalchemy.exc import OperationalError

    rt = worker_runtime()
    try:
        return rt.process([int(i) for i in row_ids])
    except OperationalError as exc:
        raise self.retry(exc=exc, countdown=2) from exc


@worker_process_init.connect
def _init_child(**_: Any) -> None:
    """A prefork child builds its own runtime: never a parent's engine or model threads across fork.

    The solo pool fires this signal in the process that already preloaded its runtime; the pid
    check in `worker_runtime` keeps that one instead of loading the models a second time."""
    preload_runtime()


@worker_ready.connect
def _start_background(**_: Any) -> None:
    """Each worker node sweeps for lost messages and drains the outbox (deliveries)."""
    global _maintenance
    rt = worker_runtime()
    _maintenance = Maintenance(rt)
    _maintenance.start()
    rt.drainer.start()
    rt.review_drainer.start()


@worker_shutdown.connect
def _stop_background(**_: Any) -> None:
    if _maintenance is not None:
        _maintenance.stop()
    if _runtime is not None:
        _runtime.drainer.stop()
        _runtime.review_drainer.stop()
        if _runtime.shadow is not None:  # finish the queued shadow rows (bounded wait)
            _runtime.shadow.stop()
