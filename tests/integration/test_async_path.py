"""The asynchronous path end to end over real PostgreSQL, Redis and Celery worker processes."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def send(stack: Any, ids: list[str], text: str = "hello friends") -> None:
    for mid in ids:
        r = stack.client.post("/v1/messages", json={"id": mid, "text": f"{text} {mid}"})
        assert r.status_code == 202, r.text


def assert_each_decided_once(stack: Any, receiver: Any, ids: list[str]) -> None:
    rows = stack.query("SELECT message_id, count(*) FROM decisions GROUP BY message_id")
    assert {r[0] for r in rows} == set(ids)
    assert all(r[1] == 1 for r in rows)
    got = receiver.wait_for(len(ids), timeout=60)
    assert set(got) == set(ids)
    # at-least-once over HTTP, but every copy of a decision is the same decision
    by_id: dict[str, set[str]] = {}
    for r in receiver.received:
        d = r["body"]["decision"]
        by_id.setdefault(d["message_id"], set()).add(json.dumps(d, sort_keys=True))
    assert all(len(v) == 1 for v in by_id.values())
    assert receiver.bad_signatures == 0


def test_async_message_ends_in_a_signed_webhook(stack, receiver) -> None:  # type: ignore[no-untyped-def]
    stack.start_api()
    w1 = stack.start_worker("w1")
    # "ready" means ready: the models are loaded and warm before the worker takes its first task
    # (before, the first task loaded them, and a fresh worker's first messages waited for that).
    log = w1.output()
    assert "scorers loaded and warmed" in log and log.index("scorers loaded and warmed") < log.index(" ready.")
    assert "text minilm6" in log
    receiver.secret = stack.client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
    stack.client.put("/v1/guilds/g1", json={"lists": {"keywords": {"toxicity": ["idiot"]}}})
    r = stack.client.post("/v1/messages", json={"id": "m-1", "guild_id": "g1", "text": "you absolute 1d10t"})
    assert r.status_code == 202
    got = receiver.wait_for(1)
    assert got["m-1"]["action"] == "block"
    assert any("idiot" in reason["text"] for reason in got["m-1"]["reasons"])
    hdrs = receiver.received[0]["headers"]
    assert hdrs["Heron-Decision-Id"] == r.json()["decision_id"]
    assert stack.client.get("/v1/decisions/m-1").json()["action"] == "block"
    audit = stack.query("SELECT actor, event, details FROM audit_log WHERE event = 'decision'")
    assert audit and audit[0][0] == "system:pipeline" and "model_versions" in audit[0][2]


def test_worker_sigkilled_mid_task_still_leads_to_one_decision_each(stack, receiver) -> None:  # type: ignore[no-untyped-def]
    stack.start_api()
    receiver.secret = stack.client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
    ids = [f"k-{i}" for i in range(300)]
    send(stack, ids)  # no worker yet: the tasks wait in Redis
    w1 = stack.start_worker("w1")
    caught_mid_task = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # a task has started (attempts bumped) but not yet stored its decisions
        if stack.query("SELECT count(*) FROM messages WHERE attempts > 0 AND status = 'pending'")[0][0] > 0:
            w1.kill()
            caught_mid_task = True
            break
        time.sleep(0.005)
    assert caught_mid_task, "never saw a task in flight"
    undecided = stack.query("SELECT count(*) FROM messages WHERE status = 'pending'")[0][0]
    assert undecided > 0
    stack.start_worker("w2")
    stack.wait_decided(len(ids))
    assert_each_decided_once(stack, receiver, ids)


def test_redis_restart_loses_nothing(stack, receiver) -> None:  # type: ignore[no-untyped-def]
    stack.start_api()
    receiver.secret = stack.client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
    queued = [f"q-{i}" for i in range(40)]
    send(stack, queued)  # tasks sit in Redis, no worker running
    time.sleep(0.3)
    stack.redis.stop()  # Redis dies without persistence: the queued tasks are gone
    offline = [f"o-{i}" for i in range(30)]
    send(stack, offline)  # accepted while Redis is down: stored, not lost
    stack.redis.start()
    stack.start_worker("w1")
    stack.wait_decided(len(queued) + len(offline))
    # and a restart under a running worker: it reconnects and carries on
    stack.redis.restart()
    later = [f"l-{i}" for i in range(20)]
    send(stack, later)
    everything = queued + offline + later
    stack.wait_decided(len(everything))
    assert_each_decided_once(stack, receiver, everything)


def test_several_workers_share_the_queue(stack, receiver) -> None:  # type: ignore[no-untyped-def]
    stack.start_api()
    receiver.secret = stack.client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
    stack.start_worker("w1")
    stack.start_worker("w2")
    ids = [f"s-{i}" for i in range(200)]
    send(stack, ids)
    stack.wait_decided(len(ids))
    assert_each_decided_once(stack, receiver, ids)
    hosts = {w.log.name for w in stack.workers if "heron.decide_messages" in w.output()}
    assert len(hosts) == 2, "both workers should have taken tasks"


def test_worker_refuses_a_database_without_the_schema(pg_url: str, tmp_path: Any) -> None:
    """A worker on an unmigrated database says what to do and exits, instead of failing every task."""
    import os
    import subprocess

    from tests.integration.conftest import BIN, REPO

    env = {**os.environ, "HERON_DATABASE_URL": pg_url, "HERON_REDIS_URL": "redis://127.0.0.1:6379/15"}
    done = subprocess.run([str(BIN / "heron"), "worker", "--hostname", "nodb@%h"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "has no Heron schema" in done.stderr and "heron migrate" in done.stderr


def test_a_request_id_follows_the_message_from_api_to_worker_to_webhook(stack, receiver) -> None:  # type: ignore[no-untyped-def]
    """An operator greps one id across processes: the worker's decision and the sink's delivery
    log lines (JSON, since the logs are files) carry the request id the chat service sent."""
    stack.start_api()
    w1 = stack.start_worker("w1")
    receiver.secret = stack.client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
    r = stack.client.post("/v1/messages", json={"id": "traced-1", "text": "hello"},
                          headers={"X-Request-Id": "req-trace-42"})
    assert r.status_code == 202 and r.headers["X-Request-Id"] == "req-trace-42"
    receiver.wait_for(1)
    deadline = time.monotonic() + 20
    mine: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        lines = [json.loads(x) for x in w1.output().splitlines() if x.startswith("{")]
        mine = [x for x in lines if x.get("request_id") == "req-trace-42"]
        if any("delivered" in x["message"] for x in mine):
            break
        time.sleep(0.2)
    assert any(x["message"].startswith("decided") and x["message_id"] == "traced-1" for x in mine), mine
    assert any("delivered" in x["message"] and x["message_id"] == "traced-1" for x in mine), mine
