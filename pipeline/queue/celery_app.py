"""Celery on Redis: the app's configuration, and nothing that knows about the runtime.

Producers (the API's dispatcher, a worker's sweeper) send tasks by name with an app from
`make_celery`; the tasks themselves live in `pipeline.queue.worker`, which only worker processes
import (`imports` below). So the API never imports the worker side, and there is no import loop
between the runtime and the queue, nor a Celery app built at import time.

Tasks carry message row ids (the message itself is already stored), are acknowledged late and
rejected back to the queue if their worker dies, and retry with backoff on transient database or
broker errors. Many ids travel per task: a trivial Celery task costs about as much CPU as scoring
one message, so one-message tasks would halve throughput.
"""

from __future__ import annotations

from celery import Celery

DECIDE_TASK = "heron.decide_messages"
QUEUE = "heron"


def make_celery(redis_url: str) -> Celery:
    app = Celery("heron", broker=redis_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 120},
        task_default_queue=QUEUE,
        worker_hijack_root_logger=False,
        # A prefork child loads and warms the models before it reports up (see worker._init_child);
        # Celery's default of 4 s would kill a child still loading them.
        worker_proc_alive_timeout=300,
        imports=("pipeline.queue.worker",),
    )
    return app
