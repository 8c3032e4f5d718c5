"""Celery on Redis: thin tasks over pipeline.queue.processing.

Tasks carry message row ids (the message itself is already stored), are acknowledged late and
rejected back to the queue if their worker dies, and retry with backoff on transient database or
broker errors. Many ids travel per task: a trivial Celery task costs about as much CPU as scoring
one message, so one-message tasks would halve throughput.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from pipeline.settings import get_settings

log = logging.getLogger(__name__)

DECIDE_TASK = "heron.decide_messages"


def make_celery(redis_url: str) -> Celery:
    app = Celery("heron", broker=redis_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 120},
        task_default_queue="heron",
        worker_hijack_root_logger=False,
        # A prefork child loads and warms the models before it reports up (see `_init_child`);
        # Celery's default of 4 s would kill a child still loading them.
        worker_proc_alive_timeout=300,
    )
    return app


celery_app = make_celery(get_settings().redis_url or os.environ.get("HERON_REDIS_URL", "redis://127.0.0.1:6379/0"))

_runtime: Any = None
_runtime_lock = threading.Lock()


def worker_runtime() -> Any:
    """The worker's store/service/sink, built once per process (after fork)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            from pipeline.runtime import Runtime

            _runtime = Runtime.build(role="worker")
        return _runtime


def preload_runtime() -> Any:
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


@celery_app.task(
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

    from pipeline.queue.processing import decide_stored_messages

    rt = worker_runtime()
    try:
        return len(decide_stored_messages(rt.store, rt.service, rt.sink, [int(i) for i in row_ids]))
    except OperationalError as exc:
        raise self.retry(exc=exc, countdown=2) from exc


@worker_process_init.connect
def _init_child(**_: Any) -> None:
    global _runtime
    _runtime = None  # never share a parent's engine or model threads across fork
    preload_runtime()


_maintenance: Any = None


@worker_ready.connect
def _start_maintenance(**_: Any) -> None:
    """Each worker node sweeps for lost messages and sends due webhook deliveries."""
    global _maintenance
    from pipeline.runtime import Maintenance

    rt = worker_runtime()
    _maintenance = Maintenance(rt)
    _maintenance.start()


@worker_shutdown.connect
def _stop_maintenance(**_: Any) -> None:
    if _maintenance is not None:
        _maintenance.stop()
