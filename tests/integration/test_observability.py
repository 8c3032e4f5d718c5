"""Metrics and logs across real processes: `heron serve --workers 2` and a `heron worker` with a
metrics endpoint, over the real PostgreSQL and Redis."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import BIN, Proc, Stack, free_port, wait_port

pytestmark = pytest.mark.integration

CHEAP_SCORERS = '["rules", "links"]'  # two API processes with the text model each would only slow this down


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called `name` in a Prometheus exposition, keyed by its sorted labels."""
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples if s.name == name}


def json_lines(log: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def start_api(stack: Stack, workers: int, env: dict[str, str]) -> Proc:
    api = Proc([str(BIN / "heron"), "serve", "--port", str(stack.port), "--no-migrate", "--log-level", "info",
                "--workers", str(workers)], {**stack.env, **env}, stack.tmp / "api.log")
    stack.api = api
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if stack.client.get("/healthz").status_code == 200:
                return api
        except httpx.HTTPError:
            pass
        assert api.proc.poll() is None, api.output()
        time.sleep(0.2)
    raise AssertionError("API did not start:\n" + api.output())


def moderate_on_a_new_connection(base_url: str, key: str, n: int) -> int:
    # a new connection per request, so the kernel hands requests to both API processes
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        r = c.post("/v1/moderate", json={"text": f"hello friends {n}"}, headers={"Connection": "close"})
    assert r.status_code == 200, r.text
    return 1


def deciding_processes(metrics_dir: Path) -> int:
    """How many processes' counter files hold a heron_decisions_total sample."""
    from prometheus_client.mmap_dict import MmapedDict

    count = 0
    for path in metrics_dir.glob("counter_*.db"):
        values = MmapedDict.read_all_values_from_file(str(path))
        count += any(key.startswith('["heron_decisions"') for key, *_ in values)
    return count


def test_metrics_of_two_api_processes_add_up(stack: Stack, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    api = start_api(stack, 2, {"HERON_SCORERS": CHEAP_SCORERS, "HERON_LOG_FORMAT": "json", "TMPDIR": str(tmp)})
    (metrics_dir,) = tmp.glob("heron-serve-metrics-*")  # made by `heron serve` for this run
    base = f"http://127.0.0.1:{stack.port}"
    sent = 0
    with ThreadPoolExecutor(8) as pool:
        # until both processes have counted a decision (each writes its own counter_<pid>.db; a
        # file alone proves nothing, since unlabelled counters create theirs at import)
        while deciding_processes(metrics_dir) < 2 and sent < 400:
            sent += sum(pool.map(lambda n: moderate_on_a_new_connection(base, stack.key, n), range(sent, sent + 16)))
    assert deciding_processes(metrics_dir) == 2, f"one process took all {sent} requests"
    for _ in range(6):  # whichever process answers the scrape reports the sum over both
        r = httpx.get(f"{base}/metrics", headers={"Connection": "close"})
        decided = samples(r.text, "heron_decisions_total")
        assert decided == {(("action", "allow"), ("path", "sync")): float(sent)}, r.text[:2000]
        latency = samples(r.text, "heron_sync_decision_seconds_count")
        assert latency == {(): float(sent)}

    started = [rec for rec in json_lines(api.output()) if rec["message"].startswith("Started server process")]
    assert len(started) >= 2 and all(rec["level"] == "INFO" for rec in started)  # JSON from both processes
    api.stop()
    stack.api = None
    assert not metrics_dir.exists()  # removed at exit, so a later run starts from zero


def test_a_worker_serves_its_metrics_and_counts_what_it_decided(stack: Stack) -> None:
    stack.env["HERON_SCORERS"] = CHEAP_SCORERS
    stack.start_api()
    port = free_port()
    worker = Proc([str(BIN / "heron"), "worker", "--hostname", "m1@%h", "--loglevel", "INFO"],
                  {**stack.env, "HERON_WORKER_METRICS_PORT": str(port), "HERON_LOG_FORMAT": "json"},
                  stack.tmp / "m1.log")
    stack.workers.append(worker)
    deadline = time.monotonic() + 120
    while " ready." not in worker.output():
        assert worker.proc.poll() is None and time.monotonic() < deadline, worker.output()
        time.sleep(0.2)
    wait_port(port)
    before = httpx.get(f"http://127.0.0.1:{port}/metrics")
    assert before.status_code == 200 and samples(before.text, "heron_worker_messages_decided_total") == {}

    stack.client.put("/v1/guilds/g1", json={"lists": {"keywords": {"toxicity": ["idiot"]}}})
    texts = ["you absolute 1d10t" if i % 3 == 0 else "lovely weather today" for i in range(12)]
    for i, text in enumerate(texts):
        r = stack.client.post("/v1/messages", json={"id": f"o-{i}", "guild_id": "g1", "text": text})
        assert r.status_code == 202, r.text
    stack.wait_decided(len(texts))

    in_db = {action: float(n) for action, n in stack.query("SELECT action, count(*) FROM decisions GROUP BY action")}
    assert in_db == {"block": 4.0, "allow": 8.0}
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    decided = samples(text, "heron_worker_messages_decided_total")
    assert {dict(k)["action"]: v for k, v in decided.items()} == in_db
    tasks = samples(text, "heron_worker_tasks_total")
    ok = tasks.get((("outcome", "succeeded"), ("task", "heron.decide_messages")), 0)
    assert ok >= 1 and not any(dict(k)["outcome"] == "failed" for k in tasks), tasks
    assert samples(text, "heron_worker_task_seconds_count")[(("task", "heron.decide_messages"),)] == ok

    logs = json_lines(worker.output())
    assert any(" ready." in rec["message"] for rec in logs), worker.output()[-3000:]
    assert any(rec["message"].startswith("metrics on http://") for rec in logs)
