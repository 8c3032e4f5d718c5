"""A raid through the embedded API: behaviour reasons on the decision, the spam wave readable by id."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _raid_message(i: int, raider: int, k: int) -> dict[str, Any]:
    ts = T0 + timedelta(seconds=i)
    return {
        "id": f"r{raider}_{k}",
        "guild_id": "g1",
        "channel_id": f"c{(raider + k) % 3}",
        "author": {
            "id": f"raider{raider}",
            "created_at": (ts - timedelta(minutes=20)).isoformat(),
            "joined_at": (ts - timedelta(minutes=2)).isoformat(),
        },
        "text": "hi all" + "!" * (k % 2),
        "timestamp": ts.isoformat(),
    }


def test_raid_is_held_and_its_cluster_is_readable(make_api) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_api(scorers=["rules", "links", "behaviour"])
    assert client.put("/v1/guilds/g1", json={}).status_code == 200
    actions: dict[str, str] = {}
    reasons: list[str] = []
    i = 0
    for k in range(3):
        for raider in range(8):
            body = _raid_message(i, raider, k)
            r = client.post("/v1/moderate", json=body)
            assert r.status_code == 200, r.text
            actions[body["id"]] = r.json()["action"]
            reasons += [x["text"] for x in r.json()["reasons"]]
            i += 1
    third = [actions[f"r{raider}_2"] for raider in range(8)]
    assert all(a in ("hold_for_review", "block", "timeout_author") for a in third), third
    waves = {m for text in reasons for m in re.findall(r"spam wave (cl_[0-9a-f]{16})", text)}
    assert len(waves) == 1, reasons
    cluster = client.get(f"/v1/behaviour/clusters/{waves.pop()}")
    assert cluster.status_code == 200, cluster.text
    body = cluster.json()
    assert body["author_count"] == 8 and body["message_count"] == 24 and body["sample_text"].startswith("hi all")
    assert {m["message_id"] for m in body["members"]} == set(actions)
    missing = client.get("/v1/behaviour/clusters/cl_0000000000000000")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "cluster_not_found"
