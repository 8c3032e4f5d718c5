"""Prometheus metrics exposed at /metrics.

Besides the request and decision counters, the model scorers' own counters (micro-batches run,
messages forwarded, repeat-cache hits and misses; `pipeline.metrics.SCORER_STATS`) are read at
scrape time: they say whether batching is working under the current load (mean batch = messages
/ batches) and how much of a spam wave the cache absorbs, which request counts alone cannot show.

With `heron serve --workers N` the counters and histograms are summed over the N processes
(`pipeline.metrics`, multiprocess mode); the scorer stats and per-thread CPU describe one
process's live state, so they are exported only when one process serves.

CPU seconds per thread (Linux) say where a saturated service spends its cores: the text model's
batcher threads, the event loop (HTTP, validation, the cheap scorers, the decision), or the
decision writer. The throughput a service reaches against its bare model depends on that split.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from pipeline.metrics import SCORER_STATS as SCORER_STATS  # re-exported: api/main.py attaches the service

REQUESTS = Counter("heron_http_requests_total", "HTTP requests", ["route", "status"])
DECISIONS = Counter("heron_decisions_total", "Decisions made", ["path", "action"])
SYNC_LATENCY = Histogram(
    "heron_sync_decision_seconds",
    "Time in the POST /v1/moderate handler of requests answered with a decision (rate-limit check, guild "
    "lookup, scoring); it leaves out waiting before the handler ran, see heron_sync_answer_seconds",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
# What callers see: from the request's arrival (api/arrival.py) to the answer, by outcome: decided
# (200), pending (202, scoring ran past the budget), shed (202, not scored inline because the budget
# could not be met), overloaded (429, shed but the async backlog is full), rate_limited (429).
SYNC_ANSWER = Histogram(
    "heron_sync_answer_seconds",
    "POST /v1/moderate from arrival to answer, by outcome (decided, pending, shed, overloaded, rate_limited)",
    ["outcome"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
REFUSED = Counter(
    "heron_refused_total",
    "429 answers, by the limit that refused: per_key, per_guild, other (non-message /v1 routes), "
    "overloaded (sync budget unmeetable and async backlog full)",
    ["limit"],
)
RATE_LIMIT_FALLBACK = Counter(
    "heron_rate_limit_fallback_total",
    "Rate-limit checks counted in this process because the shared store (Redis) failed or stalled",
)

_TASKS = Path("/proc/self/task")


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds of each live thread of this process, summed by thread name.

    Read from /proc (Linux only; elsewhere empty): Python has no portable way to read another
    thread's CPU time. `schedstat` gives the thread's time on a CPU in nanoseconds; `stat`, the
    fallback where the kernel lacks schedstats, counts user + system time in clock ticks (10 ms),
    too coarse for a thread that ran a few short forward passes (it then reads 0). Threads of one
    pool share a name (AnyIO's workers) and are summed. A thread that has exited is no longer
    counted, so a sum can step down when a pool shrinks.
    """
    if not _TASKS.is_dir():
        return {}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        tid = thread.native_id
        if tid is None:
            continue
        task = _TASKS / str(tid)
        try:
            try:
                seconds = int((task / "schedstat").read_text().split()[0]) / 1e9
            except (FileNotFoundError, IndexError, ValueError):  # no schedstats in this kernel
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()  # after "pid (comm)"
                seconds = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        except OSError:  # it exited between enumerate() and now
            continue
        out[thread.name] = out.get(thread.name, 0.0) + seconds
    return out


class ThreadCpuCollector(Collector):
    """`heron_thread_cpu_seconds_total{thread=...}` at scrape time (see thread_cpu_seconds)."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("heron_thread_cpu_seconds", "CPU seconds used by each live thread of "
                                     "this API process, by thread name (Linux)", labels=["thread"])
        for name, seconds in sorted(thread_cpu_seconds().items()):
            family.add_metric([name], seconds)
        yield family


REGISTRY.register(ThreadCpuCollector())
