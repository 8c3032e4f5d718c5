"""Shadow mode on the embedded runtime, through the real API: a candidate text model (the committed
artifact run in fp32) and a candidate policy decide every async message beside the live path, on
SQLite and PostgreSQL; the live decisions and webhooks are the same as without a shadow; a broken
candidate or a store that refuses the rows costs the shadow, never the live decisions."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from api.main import create_app
from models.text.model import CONFIG_FILE, DEFAULT_ARTIFACT_DIR
from pipeline.migrate import upgrade
from pipeline.runtime import Runtime
from pipeline.settings import override_settings, reset_settings
from pipeline.store.shadow import ShadowDecisions
from tests.conftest import Receiver

TEXTS = {
    "m1": "hello friends, see you at the raid tonight",
    "m2": "you are a complete idiot and everyone hates you",
    "m3": "thanks for the help with the quest",
    "m4": "shut up you worthless piece of garbage",
    "m5": "what time does the event start?",
}
# Every message the text model scores has a toxicity score >= 0.0: this candidate policy blocks all.
STRICT = {"thresholds": {"toxicity": [{"threshold": 0.0, "action": "block"}]}}

needs_model = pytest.mark.skipif(not (DEFAULT_ARTIFACT_DIR / CONFIG_FILE).is_file(), reason="no committed text model")


@pytest.fixture
def runtimes(tmp_path: Path) -> Iterator[Any]:
    made: list[tuple[TestClient, Runtime]] = []

    def _make(database_url: str | None = None, **overrides: Any) -> tuple[TestClient, Runtime]:
        values: dict[str, Any] = {
            "database_url": database_url or f"sqlite:///{tmp_path}/heron-{len(made)}.db",
            "redis_url": None, "scorers": ["rules", "links", "text"], "sweep_interval_s": 0.2,
            "sync_budget_ms": 10_000, "allow_private_webhooks": True, "webhook_backoff_base_s": 0.05,
            "rate_limit_per_key": "", "rate_limit_per_guild": "", "rate_limit_other": "",
            "text_workers": 1, "text_threads": 1,
        }
        values.update(overrides)
        settings = override_settings(**values)
        upgrade(settings.database_url)
        rt = Runtime.build("api", settings)
        client = TestClient(create_app(rt))
        client.__enter__()
        made.append((client, rt))
        _, key = rt.store.tenants.create_api_key("acme")
        client.headers["Authorization"] = f"Bearer {key}"
        return client, rt

    yield _make
    for client, _ in made:
        client.__exit__(None, None, None)
    reset_settings()


def strict_policy(tmp_path: Path) -> Path:
    path = tmp_path / "strict.json"
    path.write_text(json.dumps(STRICT), "utf-8")
    return path


def send_and_wait(client: TestClient, texts: dict[str, str]) -> dict[str, dict[str, Any]]:
    for mid, text in texts.items():
        assert client.post("/v1/messages", json={"id": mid, "text": text}).status_code == 202
    deadline = time.monotonic() + 60
    got: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and len(got) < len(texts):
        for mid in texts:
            if mid not in got:
                r = client.get(f"/v1/decisions/{mid}")
                if r.status_code == 200:
                    got[mid] = r.json()
        time.sleep(0.05)
    assert len(got) == len(texts), f"decided {len(got)} of {len(texts)}"
    return got


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@needs_model
def test_shadow_decisions_are_recorded_beside_the_live_ones(runtimes: Any, database_url: str, tmp_path: Path) -> None:
    client, rt = runtimes(database_url, shadow_text_artifact=DEFAULT_ARTIFACT_DIR, shadow_text_quantize="fp32",
                          shadow_policy=strict_policy(tmp_path))
    assert rt.service.after_batch is rt.shadow  # built with the service: the async path is shadowed
    before = metric("heron_shadow_decisions_total", agreement="different")
    live = send_and_wait(client, TEXTS)
    assert rt.shadow.flush(60)
    different = sum(1 for d in live.values() if d["action"] != "block")
    assert metric("heron_shadow_decisions_total", agreement="different") == before + different
    assert "heron_shadow_decisions_total" in client.get("/metrics").text  # what Prometheus scrapes
    rows = {r["message_id"]: r for r in ShadowDecisions.for_engine(rt.store.engine).rows()}
    assert set(rows) == set(TEXTS)
    for mid, row in rows.items():
        decision = live[mid]
        assert row["shadow_version"].startswith("text=minilm") and "+fp32;policy=strict.json@" in row["shadow_version"]
        assert row["shadow_model_versions"]["text"].endswith("+fp32")  # the candidate, not the serving model
        assert decision["model_versions"]["text"] != row["shadow_model_versions"]["text"]
        assert row["live_action"] == decision["action"] and row["decision_id"] == decision["id"]
        assert row["shadow_action"] == "block" and row["shadow_categories"] == {"toxicity": "block"}
        assert "toxicity" in row["shadow_reasons"][0]["text"]
        # the same weights in fp32: close to the served int8 scores, but its own computation
        assert abs(row["shadow_scores"]["toxicity"] - decision["scores"]["toxicity"]) < 0.05
        assert row["live_scores"] == decision["scores"]
        # the live decision keeps each scorer's own scores (what stacking learns from)
        assert decision["signals"]["text"]["scores"]["toxicity"] == decision["scores"]["toxicity"]
    assert sum(1 for r in rows.values() if r["live_action"] == "allow") >= 2  # the friendly ones stayed allowed live
    # one row per message and candidate: deciding a message again records nothing new
    again = {k: v for k, v in rows["m1"].items() if k != "id"}
    assert ShadowDecisions.for_engine(rt.store.engine).save_many([again]) == 0


@needs_model
def test_live_decisions_and_webhooks_are_the_same_with_a_shadow(runtimes: Any, tmp_path: Path) -> None:
    outcomes = []
    for shadow in (False, True):
        receiver = Receiver()
        try:
            extra = {"shadow_text_artifact": DEFAULT_ARTIFACT_DIR, "shadow_policy": strict_policy(tmp_path)} \
                if shadow else {}
            # fp32: the int8 paths' last decimals depend on batch-mates (pipeline/scorers/text.py), and
            # the two runs batch differently; fp32 scores do not, so any difference would be the shadow's.
            client, rt = runtimes(text_quantize="fp32", **extra)
            assert (rt.shadow is not None) is shadow
            receiver.secret = client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
            live = send_and_wait(client, TEXTS)
            got = receiver.wait_for(len(TEXTS))
            if shadow:
                assert rt.shadow.flush(60)
            time.sleep(0.5)  # anything extra (a shadow's event) would arrive now
            events = receiver.events()
            outcomes.append((live, got, events))
        finally:
            receiver.close()
    (live_a, hooks_a, events_a), (live_b, hooks_b, events_b) = outcomes

    def essence(d: dict[str, Any]) -> tuple[Any, ...]:
        return (d["action"], [(r["category"], r["action"], r["source"]) for r in d["reasons"]], d["model_versions"],
                sorted(d["signals"]))

    def close(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> bool:
        """Scores equal up to float summation order (padding differs with the batch), at 4 decimals."""
        return all(abs((a[m]["scores"][c] or 0) - (b[m]["scores"][c] or 0)) <= 2e-4 for m in a for c in a[m]["scores"])

    assert {m: essence(d) for m, d in live_a.items()} == {m: essence(d) for m, d in live_b.items()}
    assert {m: essence(d) for m, d in hooks_a.items()} == {m: essence(d) for m, d in hooks_b.items()}
    diffs = {(m, c): (live_a[m]["scores"][c], live_b[m]["scores"][c]) for m in live_a for c in live_a[m]["scores"]
             if live_a[m]["scores"][c] != live_b[m]["scores"][c]}
    assert close(live_a, live_b) and close(hooks_a, hooks_b), diffs
    assert len(events_a) == len(events_b) == len(TEXTS)  # one event per message; none from the shadow
    assert all(d["action"] != "block" for d in live_b.values())  # the strict candidate acted on nothing


def test_a_broken_candidate_leaves_the_live_path_alone(runtimes: Any, tmp_path: Path) -> None:
    broken = tmp_path / "broken_artifact"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", "utf-8")
    before = metric("heron_shadow_failures_total", stage="load")
    client, rt = runtimes(scorers=["rules", "links"], shadow_text_artifact=broken)
    live = send_and_wait(client, {"b1": "hello", "b2": "good morning"})
    assert {d["action"] for d in live.values()} == {"allow"}
    assert rt.shadow is None and rt.service.after_batch is None
    assert metric("heron_shadow_failures_total", stage="load") == before + 1
    assert ShadowDecisions.for_engine(rt.store.engine).rows() == []


def test_a_store_that_refuses_shadow_rows_costs_the_shadow_only(runtimes: Any, tmp_path: Path) -> None:
    client, rt = runtimes(scorers=["rules", "links"], shadow_policy=strict_policy(tmp_path))
    with rt.store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE shadow_decisions"))
    before = metric("heron_shadow_failures_total", stage="store")
    live = send_and_wait(client, {"s1": "hello", "s2": "good morning"})
    assert rt.shadow.flush(30)
    assert {d["action"] for d in live.values()} == {"allow"}
    assert metric("heron_shadow_failures_total", stage="store") >= before + 1


def test_a_policy_file_that_does_not_validate_disables_the_shadow(runtimes: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"thresholds": {"toxicity": [{"threshold": 2, "action": "block"}]}}), "utf-8")
    before = metric("heron_shadow_failures_total", stage="load")
    client, rt = runtimes(scorers=["rules", "links"], shadow_policy=bad)
    live = send_and_wait(client, {"p1": "hello"})
    assert live["p1"]["action"] == "allow" and rt.shadow is None
    assert metric("heron_shadow_failures_total", stage="load") == before + 1


def test_only_the_sampled_share_is_shadowed(runtimes: Any, tmp_path: Path) -> None:
    from pipeline.shadow import sampled

    client, rt = runtimes(scorers=["rules", "links"], shadow_policy=strict_policy(tmp_path), shadow_sample=0.5)
    texts = {f"x{i}": f"hello number {i}" for i in range(24)}
    send_and_wait(client, texts)
    assert rt.shadow.flush(30)
    tenant = rt.store.tenants.ensure("acme")
    rows = ShadowDecisions.for_engine(rt.store.engine).rows(tenant)
    expected = {m for m in texts if sampled(tenant, m, 0.5)}
    assert {r["message_id"] for r in rows} == expected and 0 < len(expected) < len(texts)


def test_a_stacking_shadow_recombines_the_live_signals(tmp_path: Path) -> None:
    """No model runs again: the live batch's signals go through the candidate's learned weights."""
    from pipeline.guilds import PLATFORM_GUILD
    from pipeline.service import ModerationService, ScoredBatch
    from pipeline.settings import Settings
    from pipeline.shadow import Shadow, ShadowSpec
    from pipeline.stacking import load
    from pipeline.types import Message, Signal

    path = tmp_path / "stacking.json"
    # toxicity = sigmoid(2 + 1 * logit(text toxicity)): a stricter reading of the same score
    path.write_text(json.dumps({"schema": "heron.ensemble-stacking/1", "version": "stk-test", "categories": {
        "toxicity": {"intercept": 2.0, "weights": {"text/toxicity": 1.0}, "requires": ["text"]}}}), "utf-8")
    live = ModerationService([])
    shadow = Shadow.load(ShadowSpec(stacking=path), Settings(), live)
    messages = [Message(id="a", text="x"), Message(id="b", text="y")]
    signals = [[Signal(scorer="text", version="t", scores={"toxicity": s})] for s in (0.3, 0.6)]
    decisions = [live._assemble("acme", m, None, sig, 1.0, complete=True) for m, sig in zip(messages, signals,
                                                                                            strict=True)]
    rows = shadow.decide(ScoredBatch("acme", [(m, PLATFORM_GUILD) for m in messages], [], signals, decisions))
    assert [d.action.value for d in decisions] == ["allow", "flag"]  # platform default: flag from 0.5
    stack = load(path)
    assert [r["shadow_scores"]["toxicity"] for r in rows] == [
        round(stack.predict("toxicity", {"text": {"toxicity": s}}), 4) for s in (0.3, 0.6)]  # type: ignore[arg-type]
    assert [r["shadow_action"] for r in rows] == ["flag", "hold_for_review"]  # 0.76 and 0.92
    assert rows[0]["shadow_version"] == "stacking=stk-test"
    assert rows[0]["shadow_model_versions"] == {"text": "t", "ensemble": "stacking:stk-test"}
