"""A decision keeps each scorer's own scores, and `heron labels export` carries them to the stacking
trainer: through the real API (embedded runtime), a reviewer's verdict, the export, and the trainer's
reading of it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from api.main import create_app
from pipeline.labels import export, read
from pipeline.migrate import upgrade
from pipeline.runtime import Runtime
from pipeline.settings import override_settings, reset_settings
from training.stacking import examples


def test_exported_labels_carry_the_per_scorer_signals(tmp_path: Path) -> None:
    settings = override_settings(database_url=f"sqlite:///{tmp_path}/h.db", redis_url=None, scorers=["rules", "links"],
                                 review_double_share=0.0, rate_limit_per_key="", rate_limit_per_guild="",
                                 rate_limit_other="", sync_budget_ms=10_000)
    upgrade(settings.database_url)
    rt = Runtime.build("api", settings)
    try:
        with TestClient(create_app(rt)) as client:
            tenant, key = rt.store.tenants.create_api_key("acme")
            client.headers["Authorization"] = f"Bearer {key}"
            policy = {"thresholds": {"toxicity": [{"threshold": 0.5, "action": "hold_for_review"}]}}
            lists = {"keywords": {"toxicity": ["idiot"]}}
            assert client.put("/v1/guilds/g1", json={"policy": policy, "lists": lists}).status_code in (200, 201)
            d = client.post("/v1/moderate", json={"id": "m1", "guild_id": "g1", "text": "you idiot"}).json()
            assert d["action"] == "hold_for_review"
            assert d["signals"] == {"rules": {"scores": {"toxicity": 1.0}, "definitive": True}}
            deadline = time.monotonic() + 20
            items: list[Any] = []
            while not items and time.monotonic() < deadline:
                items = client.get("/v1/review/items").json()["items"]
                time.sleep(0.05)
            r = client.post(f"/v1/review/items/{items[0]['id']}/resolve",
                            json={"verdict": "overturn", "categories": {"toxicity": False}})
            assert r.status_code == 200, r.text
            # the revision a reviewer made keeps the signals the model decided with
            assert r.json()["decision"]["signals"] == d["signals"]
        out = tmp_path / "labels.jsonl"
        assert export(rt.store.engine, tenant, out)["labels"] == 1
    finally:
        reset_settings()
    (row,) = read(out)
    assert row["decision"]["signals"] == {"rules": {"scores": {"toxicity": 1.0}, "definitive": True}}
    (ex,), counts = examples([row])
    assert counts == {"labels": 1, "without_signals": 0, "duplicates": 0, "examples": 1}
    assert ex.labels["toxicity"] is False and ex.labels["hate"] is False  # overturned: violates nothing
    assert [(s.scorer, s.scores, s.definitive) for s in ex.signals] == [("rules", {"toxicity": 1.0}, True)]
