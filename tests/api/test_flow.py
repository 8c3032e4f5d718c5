"""The moderation flow through the API on the embedded runtime: what a chat service sees."""

from __future__ import annotations

import time
from typing import Any

from pipeline.scorers.base import Modality, Scorer
from pipeline.signing import verify
from pipeline.types import Signal


class SlowScorer(Scorer):
    """A scorer slower than the latency budget, as a cold or overloaded model would be."""

    name = "slow"
    modality = Modality.TEXT
    labels = ("spam",)

    def score(self, items):  # type: ignore[no-untyped-def]
        time.sleep(0.4)
        return [Signal(scorer=self.name, version="1", scores={"spam": 0.1}) for _ in items]


def wait_decision(client: Any, message_id: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/v1/decisions/{message_id}")
        if r.status_code == 200:
            return r.json()  # type: ignore[no-any-return]
        assert r.json()["error"]["code"] in ("decision_pending", "decision_not_found")
        time.sleep(0.05)
    raise AssertionError(f"no decision for {message_id}")


def test_guild_word_list_blocks_an_evasive_insult_with_a_readable_reason(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    r = client.put("/v1/guilds/g1", json={"lists": {"keywords": {"toxicity": ["idiot"]}}})
    assert r.status_code == 200, r.text
    r = client.post("/v1/moderate", json={"id": "m1", "guild_id": "g1", "text": "you are an 1d1οt"})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["action"] == "block"
    assert d["scores"]["toxicity"] == 1.0
    assert any("idiot" in reason["text"] for reason in d["reasons"])
    assert set(d["scores"]) == {"toxicity", "harassment", "hate", "sexual", "violence", "self_harm", "spam", "scam"}
    r = client.post("/v1/moderate", json={"id": "m2", "guild_id": "g1", "text": "have a lovely day"})
    assert r.json()["action"] == "allow"


def test_policy_changes_are_versioned_and_decisions_name_the_version(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    client.put("/v1/guilds/g1", json={"lists": {"keywords": {"spam": ["buy now"]}}})
    flag_only = {"thresholds": {"spam": [{"threshold": 0.5, "action": "flag"}]}}
    assert client.put("/v1/guilds/g1/policy", json=flag_only).json()["policy_version"] == 1
    d = client.post("/v1/moderate", json={"guild_id": "g1", "text": "BUY NOW cheap"}).json()
    assert d["action"] == "flag" and d["policy_version"] == 1
    blocking = {"thresholds": {"spam": [{"threshold": 0.5, "action": "block"}]}, "exempt_roles": ["mod"]}
    assert client.put("/v1/guilds/g1/policy", json=blocking).json()["policy_version"] == 2
    d = client.post("/v1/moderate", json={"guild_id": "g1", "text": "BUY NOW cheap"}).json()
    assert d["action"] == "block" and d["policy_version"] == 2
    d = client.post("/v1/moderate", json={"guild_id": "g1", "text": "BUY NOW", "author": {"roles": ["mod"]}}).json()
    assert d["action"] == "allow" and "exempt" in d["reasons"][-1]["text"]
    history = client.get("/v1/guilds/g1/history").json()
    assert [(h["kind"], h["version"]) for h in history] == [("lists", 1), ("policy", 1), ("policy", 2)]


def test_async_message_is_decided_once_and_delivered_signed(api, receiver) -> None:  # type: ignore[no-untyped-def]
    client, rt = api
    hook = client.put("/v1/webhook", json={"url": receiver.url}).json()
    receiver.secret = hook["secret"]
    assert client.get("/v1/webhook").json()["secret"] is None  # shown once only
    r = client.post("/v1/messages", json={"id": "a1", "text": "hello there"})
    assert r.status_code == 202 and r.json()["status"] == "accepted"
    again = client.post("/v1/messages", json={"id": "a1", "text": "hello there"})
    assert again.status_code == 202 and again.json()["duplicate"] is True
    got = receiver.wait_for(1)
    assert got["a1"]["action"] == "allow"
    assert receiver.bad_signatures == 0
    first = receiver.received[0]
    verify(hook["secret"], first["headers"], __import__("json").dumps(first["body"], separators=(",", ":")).encode())
    assert first["headers"]["Heron-Decision-Id"] == r.json()["decision_id"]
    assert wait_decision(client, "a1")["id"] == r.json()["decision_id"]
    time.sleep(0.5)
    assert len(receiver.received) == 1 and rt.store.decisions.count() == 1
    events = [e["event"] for e in client.get("/v1/audit").json()]
    assert "decision" in events and "webhook_registered" in events


def test_failed_deliveries_retry_then_dead_letter_then_redeliver(make_api, receiver) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_api(webhook_max_attempts=3)
    receiver.secret = client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
    receiver.fail_next = 3
    r = client.post("/v1/messages", json={"id": "d1", "text": "hi"})
    decision_id = r.json()["decision_id"]
    deadline = time.monotonic() + 15
    dead: list[Any] = []
    while time.monotonic() < deadline and not dead:
        dead = client.get("/v1/webhook/deliveries", params={"status": "dead"}).json()
        time.sleep(0.1)
    assert dead and dead[0]["decision_id"] == decision_id and dead[0]["attempts"] == 3
    assert "HTTP 500" in dead[0]["last_error"]
    assert receiver.received == []
    r = client.post(f"/v1/webhook/deliveries/{decision_id}/redeliver")
    assert r.status_code == 202
    assert receiver.wait_for(1)["d1"]["id"] == decision_id
    assert client.get("/v1/webhook/deliveries", params={"status": "dead"}).json() == []


def test_latency_budget_overrun_answers_202_and_the_decision_follows_by_webhook(make_api, receiver) -> None:  # type: ignore[no-untyped-def]
    client, rt = make_api(sync_budget_ms=50)
    rt.service.scorers.append(SlowScorer())
    receiver.secret = client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
    r = client.post("/v1/moderate", json={"id": "slow1", "text": "hello " * 500})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending"
    assert receiver.wait_for(1)["slow1"]["id"] == r.json()["decision_id"]
    assert wait_decision(client, "slow1")["action"] == "allow"


def test_tenants_never_see_each_other(api) -> None:  # type: ignore[no-untyped-def]
    client, rt = api
    client.put("/v1/guilds/g1", json={})
    mine = client.post("/v1/moderate", json={"id": "secret-msg", "guild_id": "g1", "text": "hi"}).json()
    rt.writer.flush()
    time.sleep(0.2)
    _, other_key = rt.store.tenants.create_api_key("globex")
    other = {"Authorization": f"Bearer {other_key}"}
    assert client.get(f"/v1/decisions/{mine['id']}", headers=other).status_code == 404
    assert client.get("/v1/decisions/secret-msg", headers=other).status_code == 404
    assert client.get("/v1/guilds/g1", headers=other).status_code == 404
    r = client.post("/v1/moderate", json={"guild_id": "g1", "text": "hi"}, headers=other)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_guild"
    assert client.get(f"/v1/decisions/{mine['id']}").status_code == 200


def test_readiness_reports_each_dependency_and_model_and_metrics_count(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    body = client.get("/readyz").json()
    assert body["checks"]["database"]["ok"] and body["checks"]["queue"]["backend"] == "embedded"
    assert set(body["checks"]["scorers"]) == {"rules", "links"}
    client.post("/v1/moderate", json={"text": "hi"})
    assert 'heron_decisions_total{action="allow",path="sync"}' in client.get("/metrics").text


def test_metrics_show_the_text_models_batching_and_repeat_cache(make_api) -> None:  # type: ignore[no-untyped-def]
    """An operator reads mean batch size (messages / batches) and the cache's share off /metrics."""
    client, _ = make_api(scorers=["rules", "links", "text"])

    def counters() -> dict[str, float]:
        out = {}
        for line in client.get("/metrics").text.splitlines():
            if line.startswith("heron_scorer_") and 'scorer="text"' in line:
                name, value = line.rsplit(" ", 1)
                out[name.split("{")[0]] = float(value)
        return out

    before = counters()
    for text in ("first distinct message", "second distinct message", "first distinct message"):
        assert client.post("/v1/moderate", json={"text": text}).status_code == 200
    after = counters()
    assert after["heron_scorer_batched_messages_total"] - before["heron_scorer_batched_messages_total"] == 2
    assert after["heron_scorer_batches_total"] - before["heron_scorer_batches_total"] >= 1
    assert after["heron_scorer_cache_hits_total"] - before["heron_scorer_cache_hits_total"] == 1
    assert after["heron_scorer_cache_entries"] >= 2


def test_metrics_show_where_the_cpu_goes_by_thread(make_api) -> None:  # type: ignore[no-untyped-def]
    """The text model's batcher threads, having run forward passes, show CPU seconds of their own."""
    client, _ = make_api(scorers=["rules", "text"])
    for i in range(8):
        assert client.post("/v1/moderate", json={"text": f"message number {i} to score"}).status_code == 200
    cpu: dict[str, float] = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("heron_thread_cpu_seconds_total{"):
            name, value = line.rsplit(" ", 1)
            cpu[name.split('thread="')[1].split('"')[0]] = float(value)
    batchers = {k: v for k, v in cpu.items() if k.startswith("text-batcher-")}
    assert batchers, cpu
    assert sum(batchers.values()) > 0  # warm-up and these requests ran forward passes there
    assert "MainThread" in cpu


def test_a_scorer_that_fails_to_load_makes_readiness_fail_and_decisions_fail_closed(make_api) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_api(scorers=["rules", "no_such_scorer"])
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["scorers"]["no_such_scorer"]["ok"] is False
    d = client.post("/v1/moderate", json={"text": "hello"}).json()
    assert d["action"] == "hold_for_review" and d["missing_signals"] == ["no_such_scorer"]


def test_a_message_stored_but_never_dispatched_is_still_decided(api) -> None:  # type: ignore[no-untyped-def]
    """As after a crash between storing a message and queueing it: the sweeper finds it."""
    from pipeline.types import Message

    client, rt = api
    tenant = rt.store.tenants.tenant_for_key(client.headers["Authorization"].split()[1])
    rt.store.messages.insert(tenant, Message(id="orphan", text="hello"))
    assert wait_decision(client, "orphan", timeout=20)["action"] == "allow"


def test_docs_work_offline_with_examples(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    html = client.get("/docs", headers={"Authorization": ""}).text
    assert "/docs-static/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    assert client.get("/docs-static/swagger-ui-bundle.js", headers={"Authorization": ""}).status_code == 200
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/moderate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("MessageCreate")
    assert spec["components"]["schemas"]["MessageCreate"]["examples"][0]["text"]


def test_a_queued_message_reads_as_pending_by_its_decision_id_too(api) -> None:  # type: ignore[no-untyped-def]
    """`POST /v1/messages` answers with a decision id; polling that id before the worker decides
    must say "pending", not "not found" (a client would give up on a message still queued)."""
    from pipeline.types import Message, decision_id_for

    client, rt = api
    tenant = rt.store.tenants.ensure("acme")
    rt.store.messages.insert(tenant, Message(id="queued-1", text="hello"))  # stored, not dispatched
    r = client.get(f"/v1/decisions/{decision_id_for(tenant, 'queued-1')}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "decision_pending", r.text
    assert client.get("/v1/decisions/queued-1").json()["error"]["code"] == "decision_pending"
    unknown = client.get(f"/v1/decisions/{decision_id_for(tenant, 'never-sent')}")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "decision_not_found"
