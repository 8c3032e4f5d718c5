"""Images through the real asynchronous path: `heron serve` as a Celery producer, a real
`heron worker`, real Redis and PostgreSQL. An image attached to a message changes its decision;
a banked image is caught again after re-encoding (JPEG quality 70, resized to half); the sync
path answers on text with the image pending and the worker's verdict arrives as revision 2.

Pictures: the staged public-domain photos (read in place), re-encoded here.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from pipeline.images.pdq import hash_frame

pytestmark = pytest.mark.integration

PHOTOS = Path("/work/shared/data/images_public_domain")


def photo(name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(PHOTOS / name), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def reencoded(rgb: np.ndarray) -> str:
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 70])
    assert ok
    return base64.b64encode(buf.tobytes()).decode()


def test_image_changes_the_decision_through_celery(stack: Any, receiver: Any) -> None:
    stack.env["HERON_SCORERS"] = '["rules", "links", "image_hash"]'
    stack.start_api()
    w = stack.start_worker("img")
    assert "image_hash pdq-1" in w.output()
    receiver.secret = stack.client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
    cat = photo("chelsea.png")
    assert (
        stack.client.post("/v1/banks", json={"name": "bad-pics", "category": "violence", "action": "block"}).status_code
        == 201
    )
    r = stack.client.post(
        "/v1/banks/bad-pics/content", json={"entries": [{"hash": hash_frame(cat)[0], "label": "fake giveaway"}]}
    )
    assert r.json()["added"] == 1

    text = "claim your prize here"
    for mid, body in [
        ("plain", {"text": text}),
        ("with-cat", {"text": text, "attachments": [{"content_base64": reencoded(cat), "content_type": "image/jpeg"}]}),
        ("with-rocket", {"text": text, "attachments": [{"content_base64": reencoded(photo("rocket.jpg"))}]}),
    ]:
        assert stack.client.post("/v1/messages", json={"id": mid, **body}).status_code == 202
    got = receiver.wait_for(3, timeout=120)
    assert got["plain"]["action"] == "allow"
    assert got["with-rocket"]["action"] == "allow" and got["with-rocket"]["model_versions"]["image_hash"] == "pdq-1"
    assert got["with-cat"]["action"] == "block" and got["with-cat"]["scores"]["violence"] == 1.0
    assert "fake giveaway" in json.dumps(got["with-cat"]["reasons"]) and "bad-pics" in json.dumps(
        got["with-cat"]["reasons"]
    )
    # the inline bytes were never in the messages table, and are gone once decided
    payloads = stack.query("SELECT payload FROM messages WHERE message_id = 'with-cat'")
    assert payloads[0][0]["attachments"][0]["content_base64"] is None
    assert stack.query("SELECT count(*) FROM media_inline")[0][0] == 0
    assert stack.query("SELECT count(*) FROM media_hashes")[0][0] == 2

    # sync: answered on text within the budget, the image verdict follows as revision 2
    r = stack.client.post(
        "/v1/moderate", json={"id": "sync-cat", "text": text, "attachments": [{"content_base64": reencoded(cat)}]}
    )
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["status"] == "partial" and first["pending_signals"] == ["image_hash"] and first["action"] == "allow"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        events = [e for e in receiver.events() if e["decision"]["message_id"] == "sync-cat"]
        if len(events) >= 2:
            break
        time.sleep(0.2)
    events.sort(key=lambda e: e["revision"])
    assert [e["revision"] for e in events] == [1, 2], events
    assert events[1]["decision"]["action"] == "block" and events[1]["decision"]["status"] == "complete"
    assert stack.query("SELECT count(*) FROM decisions WHERE message_id = 'sync-cat'")[0][0] == 1
    assert [
        r[0]
        for r in stack.query("SELECT cause FROM decision_revisions WHERE message_id = 'sync-cat' ORDER BY revision")
    ] == ["initial", "media_verdict"]
    assert receiver.bad_signatures == 0
    assert w.proc.poll() is None  # the worker is still up
