"""The review queue over real processes: a message held by a Celery worker (PostgreSQL, Redis)
reaches the queue through that worker's review drainer, is resolved through `heron serve` with the
tenant's key, and the chat service receives the signed revision."""

from __future__ import annotations

import time
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_a_held_message_from_a_worker_is_queued_resolved_and_revised(stack: Any, receiver: Any) -> None:
    stack.start_api()
    stack.start_worker("w1")
    receiver.secret = stack.client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
    stack.client.put("/v1/guilds/g1", json={
        "lists": {"keywords": {"toxicity": ["idiot"]}},
        "policy": {"thresholds": {"toxicity": [{"threshold": 0.5, "action": "hold_for_review"}]}}})
    r = stack.client.post("/v1/messages", json={"id": "m-1", "guild_id": "g1", "text": "you absolute idiot"})
    assert r.status_code == 202
    deadline = time.monotonic() + 90
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not items:
        items = stack.client.get("/v1/review/items", params={"guild_id": "g1"}).json()["items"]
        time.sleep(0.2)
    assert [i["message_id"] for i in items] == ["m-1"] and items[0]["action"] == "hold_for_review"
    detail = stack.client.get(f"/v1/review/items/{items[0]['id']}").json()
    assert detail["message"]["text"] == "you absolute idiot"
    r = stack.client.post(f"/v1/review/items/{items[0]['id']}/resolve",
                          json={"verdict": "overturn", "categories": {"toxicity": False}, "note": "banter"})
    assert r.status_code == 200, r.text
    assert r.json()["decision"]["revision"] == 2 and r.json()["decision"]["action"] == "allow"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(receiver.events()) < 2:
        time.sleep(0.1)
    events = receiver.events()
    assert [e["revision"] for e in events] == [1, 2] and events[1]["cause"] == "review"
    assert receiver.bad_signatures == 0
    want = [("review", 1, "delivered"), ("webhook", 1, "delivered"), ("webhook", 2, "delivered")]
    deadline = time.monotonic() + 20  # the drainer records the attempt just after the receiver answers
    rows: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline and rows != want:
        rows = [tuple(r) for r in stack.query(
            "SELECT sink, revision, status FROM outbox WHERE message_id = 'm-1' ORDER BY sink, revision")]
        time.sleep(0.1)
    assert rows == want  # the reviewer's revision went to the chat service, not back into the queue
