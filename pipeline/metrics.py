"""Prometheus metrics of the moderation work itself, and how they add up across processes.

The API's HTTP metrics live in api/metrics.py; these are the ones every process that decides
messages has (a Celery worker, or the API's embedded worker), so they live in pipeline/, which
knows nothing about HTTP:

- `heron_worker_messages_decided_total{action}`: messages decided from the queue;
- `heron_worker_queue_lag_seconds`: a message's arrival at the API to its decision;
- `heron_worker_tasks_total{task,outcome}` and `heron_worker_task_seconds{task}`: Celery tasks run
  and how long each took (`task="heron.decide_messages"` is one decide batch);
- `heron_scorer_*`: the scorers' own counters (micro-batches, repeat-cache hits), read at scrape.

The queue code reports through `observe_decided(decisions, lag_seconds)`; task counts come from
Celery's signals once `install_celery_task_metrics()` has run (`heron worker` does that).

Several processes, one view: Prometheus scrapes one endpoint, but `heron serve --workers N` runs
N API processes and a prefork Celery worker several children, each with its own counters. There
`PROMETHEUS_MULTIPROC_DIR` names a fresh folder (made by `heron serve --workers N` and
`heron worker --pool prefork` before anything imports `prometheus_client`, which picks its value
store at import) where every process writes its values, and a scrape sums them
(`prometheus_client`'s multiprocess mode). Collectors that read one process's live state
(scorer stats, per-thread CPU) are left out of that sum: they would describe whichever process
happened to answer. Gauges added later need a `multiprocess_mode`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from pipeline.types import Decision

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

MESSAGES_DECIDED = Counter("heron_worker_messages_decided", "Messages decided from the queue, by action", ["action"])
QUEUE_LAG = Histogram(
    "heron_worker_queue_lag_seconds",
    "Seconds from a message's arrival at the API to its decision by a queue worker",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
TASKS = Counter("heron_worker_tasks", "Celery tasks run, by task and outcome (succeeded, failed, retried)",
                ["task", "outcome"])
TASK_SECONDS = Histogram(
    "heron_worker_task_seconds",
    "Run time of one Celery task (heron.decide_messages: one decide batch)",
    ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def observe_decided(decisions: Iterable[Decision], lag_seconds: Iterable[float] = ()) -> None:
    """Count decisions made by a queue worker, by action, and record each message's queue lag.

    `lag_seconds`: for each decided message, its decision time minus the time the API stored it
    (received_at); empty when the caller does not know it.
    """
    for d in decisions:
        MESSAGES_DECIDED.labels(action=d.action.value).inc()
    for lag in lag_seconds:
        QUEUE_LAG.observe(max(0.0, lag))


_OUTCOMES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried", "REJECTED": "failed"}
_task_started: dict[str, float] = {}
_task_lock = threading.Lock()
_installed = False


def _task_prerun(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        with _task_lock:
            _task_started[task_id] = time.perf_counter()


def _task_postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    with _task_lock:
        started = _task_started.pop(task_id or "", None)
    name = str(getattr(task, "name", "unknown"))
    TASKS.labels(task=name, outcome=_OUTCOMES.get(state or "", str(state).lower())).inc()
    if started is not None:
        TASK_SECONDS.labels(task=name).observe(time.perf_counter() - started)


def install_celery_task_metrics() -> None:
    """Count and time every Celery task this process (and its prefork children) runs."""
    global _installed
    if _installed:
        return
    from celery.signals import task_postrun, task_prerun

    task_prerun.connect(_task_prerun, weak=False)
    task_postrun.connect(_task_postrun, weak=False)
    _installed = True


# name in a scorer's stats() -> (metric name, help, counter?)
_SCORER_STATS: dict[str, tuple[str, str, bool]] = {
    "batches": ("heron_scorer_batches", "Forward passes (micro-batches) run by the scorer", True),
    "batched_messages": ("heron_scorer_batched_messages", "Messages that went through a forward pass", True),
    "cache_hits": ("heron_scorer_cache_hits", "Messages answered from the repeat cache", True),
    "cache_misses": ("heron_scorer_cache_misses", "Cache lookups that found nothing", True),
    "cache_size": ("heron_scorer_cache_entries", "Entries in the repeat cache", False),
}


class ScorerStatsCollector(Collector):
    """Reads `stats()` of this process's scorers at scrape time.

    Why at scrape time: the counters (mean batch = messages / batches, how much of a spam wave
    the cache absorbs) already live in the scorers; copying them into metric objects on every
    batch would cost the hot path. One process serves one service, so the collector follows the
    service most recently attached (tests that build several apps in one process see the latest).
    """

    def __init__(self) -> None:
        self.service: Any = None
        self._source: Callable[[], Any] | None = None

    def attach(self, service: Any) -> None:
        self.service = service
        self._source = None

    def follow(self, source: Callable[[], Any]) -> None:
        """Read the service from `source()` at each scrape (None: nothing to report yet).

        For a process whose service is replaced after start-up, as a Celery worker's is when its
        pool initialises."""
        self._source = source

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for key, (name, doc, counter) in _SCORER_STATS.items():
            cls = CounterMetricFamily if counter else GaugeMetricFamily
            families[key] = cls(name, doc, labels=["scorer"])
        service = self._source() if self._source is not None else self.service
        for scorer in service.scorers if service is not None else ():
            stats = scorer.stats()  # the Scorer contract: {} for scorers without counters
            for key, family in families.items():
                value = stats.get(key)
                if isinstance(value, int | float):
                    family.add_metric([scorer.name], float(value))
        yield from families.values()


SCORER_STATS = ScorerStatsCollector()
REGISTRY.register(SCORER_STATS)


def multiprocess_dir() -> str | None:
    """The folder the processes of this deployment write their metrics to, when there are several."""
    return os.environ.get(MULTIPROC_ENV) or None


def scrape_registry() -> CollectorRegistry:
    """What a scrape reads: every process's values summed in multiprocess mode, else this process's."""
    if multiprocess_dir() is None:
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def render_latest() -> tuple[bytes, str]:
    """The Prometheus text exposition of `scrape_registry()` and its content type."""
    return generate_latest(scrape_registry()), CONTENT_TYPE_LATEST


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> Any:
    """Serve /metrics on `port` from a background thread (a worker has no HTTP server of its own)."""
    from prometheus_client import start_http_server

    return start_http_server(port, addr=addr, registry=scrape_registry())



# ---- review desk (docs/review.md) -----------------------------------------------------------------
REVIEW_VERDICTS = Counter("heron_review_verdicts", "Reviewer verdicts, by verdict and stage (first, second, bulk, "
                          "final, escalate)", ["verdict", "stage"])
REVIEW_SECONDS = Histogram(
    "heron_review_time_to_verdict_seconds", "Seconds from a reviewer's claim to their verdict",
    buckets=(5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0),
)


def observe_review_verdict(verdict: str, stage: str, seconds: float) -> None:
    REVIEW_VERDICTS.labels(verdict=verdict, stage=stage).inc()
    REVIEW_SECONDS.observe(max(0.0, seconds))


class ReviewQualityCollector(Collector):
    """Reviewer quality read from the store at scrape time (it is shared by every process, so any
    one answers for all): agreement per category on double-reviewed items, verdicts per reviewer,
    median time to verdict, open and overdue items, per tenant."""

    def __init__(self) -> None:
        self.store: Any = None

    def attach(self, store: Any) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        agreement = GaugeMetricFamily("heron_review_agreement_rate", "Share of double-reviewed items on which both "
                                      "reviewers gave the same label, per category ('verdict': the verdict itself)",
                                      labels=["tenant", "category"])
        per_reviewer = GaugeMetricFamily("heron_review_reviewer_verdicts", "Verdicts given, per reviewer",
                                         labels=["tenant", "reviewer"])
        median = GaugeMetricFamily("heron_review_median_seconds_to_verdict", "Median seconds from claim to verdict",
                                   labels=["tenant"])
        open_items = GaugeMetricFamily("heron_review_open_items", "Open review items", labels=["tenant"])
        overdue = GaugeMetricFamily("heron_review_overdue_items", "Open review items past their SLA",
                                    labels=["tenant"])
        if self.store is not None:
            try:
                rows = self.store.review.quality_all()
            except Exception:  # noqa: BLE001 - a scrape must not fail because the database blinked
                rows = []
            for r in rows:
                t = r["tenant"]
                if r["verdict_agreement"] is not None:
                    agreement.add_metric([t, "verdict"], r["verdict_agreement"])
                for cat, a in r["category_agreement"].items():
                    agreement.add_metric([t, cat], a["rate"])
                for name, x in r["reviewers"].items():
                    per_reviewer.add_metric([t, name], x["verdicts"])
                if r["median_seconds_to_verdict"] is not None:
                    median.add_metric([t], r["median_seconds_to_verdict"])
                open_items.add_metric([t], r["open"])
                overdue.add_metric([t], r["overdue"])
        yield from (agreement, per_reviewer, median, open_items, overdue)


REVIEW_QUALITY = ReviewQualityCollector()
REGISTRY.register(REVIEW_QUALITY)
