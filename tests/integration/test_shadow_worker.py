"""Shadow mode through a real Celery worker on Redis and PostgreSQL: the worker shadows every message
with a candidate text model and policy, records the rows, counts them in its Prometheus metrics, and
the chat service still gets exactly one signed webhook per message; `heron shadow report` reads it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from models.text.model import DEFAULT_ARTIFACT_DIR
from tests.integration.conftest import BIN, REPO, free_port

pytestmark = pytest.mark.integration

TEXTS = [
    "hello friends, see you at the raid tonight",
    "you are a complete idiot and everyone hates you",
    "thanks for the help with the quest",
    "shut up you worthless piece of garbage",
    "what time does the event start?",
    "gg well played everyone",
]


def test_a_celery_worker_shadows_each_message_beside_the_live_decision(stack: Any, receiver: Any,
                                                                        tmp_path: Path) -> None:
    policy = tmp_path / "strict.json"
    policy.write_text(json.dumps({"thresholds": {"toxicity": [{"threshold": 0.0, "action": "block"}]}}), "utf-8")
    metrics_port = free_port()
    stack.env.update({"HERON_SHADOW_TEXT_ARTIFACT": str(DEFAULT_ARTIFACT_DIR), "HERON_SHADOW_TEXT_QUANTIZE": "fp32",
                      "HERON_SHADOW_POLICY": str(policy), "HERON_WORKER_METRICS_PORT": str(metrics_port)})
    stack.start_api()
    worker = stack.start_worker("w1")
    assert "runs beside the live decisions" in worker.output()
    receiver.secret = stack.client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
    ids = [f"s-{i}" for i in range(len(TEXTS))]
    for mid, text in zip(ids, TEXTS, strict=True):
        assert stack.client.post("/v1/messages", json={"id": mid, "text": text}).status_code == 202
    stack.wait_decided(len(ids))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and stack.query("SELECT count(*) FROM shadow_decisions")[0][0] < len(ids):
        time.sleep(0.2)
    rows = stack.query("SELECT s.message_id, s.live_action, s.shadow_action, s.shadow_version, d.action "
                       "FROM shadow_decisions s JOIN decisions d ON d.id = s.decision_id")
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert all(r[1] == r[4] and r[2] == "block" for r in rows)  # recorded live action = the stored decision's
    assert all(r[3].startswith("text=minilm") and "+fp32;policy=strict.json@" in r[3] for r in rows)
    live = {r[0]: r[1] for r in rows}
    assert "allow" in live.values()  # the strict candidate would have blocked what the live model allowed

    got = receiver.wait_for(len(ids), timeout=60)
    time.sleep(1.0)
    assert {m: d["action"] for m, d in got.items()} == live  # the webhooks carry the live decisions
    assert len(receiver.events()) == len(ids) and receiver.bad_signatures == 0  # nothing from the shadow

    scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    different = sum(1 for a in live.values() if a != "block")
    assert f'heron_shadow_decisions_total{{agreement="different"}} {float(different)}' in scrape
    assert f'heron_shadow_decisions_total{{agreement="same"}} {float(len(ids) - different)}' in scrape

    out = tmp_path / "shadow.json"
    res = subprocess.run([str(BIN / "heron"), "shadow", "report", "--tenant", "chat", "--output", str(out)],
                         env=stack.env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    (section,) = json.loads(out.read_text())["shadows"]
    assert section["messages"] == len(ids) and section["agreement"]["different_action"] == different
    assert sum(t["count"] for t in section["transitions"]) == different
    assert all(t["shadow"] == "block" for t in section["transitions"])
    assert section["disagreements_by_category"]["toxicity"]["shadow_stricter"] == different
