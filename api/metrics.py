"""Prometheus metrics exposed at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter("heron_http_requests_total", "HTTP requests", ["route", "status"])
DECISIONS = Counter("heron_decisions_total", "Decisions made", ["path", "action"])
SYNC_LATENCY = Histogram(
    "heron_sync_decision_seconds",
    "Latency of POST /v1/moderate",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
