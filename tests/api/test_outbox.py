"""The outbox and revisions as a chat service sees them: deliveries never stall decisions, every
revision of a decision arrives once per (message, revision), in order, and the history is kept."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from pipeline.signing import verify
from tests.conftest import Receiver


def wait(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def second_tenant(rt: Any, client: Any, name: str = "globex") -> dict[str, str]:
    _, key = rt.store.tenants.create_api_key(name)
    return {"Authorization": f"Bearer {key}"}


def test_a_hung_receiver_stalls_neither_decisions_nor_other_tenants(make_api) -> None:  # type: ignore[no-untyped-def]
    """Tenant A's chat service accepts connections and never answers; tenant B's messages are still
    decided and delivered at once, and A's in-flight deliveries are not re-sent meanwhile."""
    client, rt = make_api(webhook_timeout_s=3.0, webhook_tenant_concurrency=2)
    hung, healthy = Receiver(), Receiver()
    try:
        hung.secret = client.put("/v1/webhook", json={"url": hung.url}).json()["secret"]
        hung.hang()
        other = second_tenant(rt, client)
        healthy.secret = client.put("/v1/webhook", json={"url": healthy.url}, headers=other).json()["secret"]
        for i in range(20):
            assert client.post("/v1/messages", json={"id": f"a{i}", "text": f"hello {i}"}).status_code == 202
        wait(lambda: hung.hung_requests >= 2)
        started = time.monotonic()
        for i in range(20):
            r = client.post("/v1/messages", json={"id": f"b{i}", "text": f"hi {i}"}, headers=other)
            assert r.status_code == 202
        got = healthy.wait_for(20, timeout=10)
        took = time.monotonic() - started
        assert set(got) == {f"b{i}" for i in range(20)}
        # decided while A's receiver hangs: all of A's messages have decisions too
        assert rt.store.decisions.count() == 40
        # A holds at most its concurrency cap of connections, each attempt bounded, none duplicated
        assert hung.hung_requests <= 2 + 2 * int(took / 3.0 + 1)
        print(f"\ntenant B: 20 decisions delivered {took:.2f}s after sending, while tenant A's receiver hung")
    finally:
        hung.close()
        healthy.close()


def test_revisions_are_delivered_in_order_once_each_and_kept(api, receiver) -> None:  # type: ignore[no-untyped-def]
    client, rt = api
    receiver.secret = client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
    client.put("/v1/guilds/g1", json={"lists": {"keywords": {"toxicity": ["idiot"]}}})
    first = client.post("/v1/moderate", json={"id": "m1", "guild_id": "g1", "text": "you idiot"}).json()
    assert first["action"] == "block" and first["revision"] == 1
    wait(lambda: len(receiver.events()) >= 1)  # sync decisions reach the sinks too
    r = client.post(f"/v1/decisions/{first['id']}/revisions",
                    json={"action": "allow", "reason": "quoting a film", "actor": "mod-7"})
    assert r.status_code == 201, r.text
    assert r.json()["revision"] == 2 and r.json()["action"] == "allow"
    r = client.post("/v1/decisions/m1/revisions", json={"action": "flag", "reason": "second look", "actor": "mod-8"})
    assert r.json()["revision"] == 3
    events = wait(lambda: (e := receiver.events()) and len(e) >= 3 and e)
    assert [e["revision"] for e in events] == [1, 2, 3]
    assert [e["decision"]["action"] for e in events] == ["block", "allow", "flag"]
    assert [e["type"] for e in events] == ["decision", "decision.revised", "decision.revised"]
    assert events[1]["cause"] == "override"
    assert [e["event_id"] for e in events] == [f"{first['id']}.{n}" for n in (1, 2, 3)]
    headers = [rec["headers"] for rec in receiver.received]
    assert [h["Heron-Revision"] for h in headers] == ["1", "2", "3"]
    for rec in receiver.received:
        verify(receiver.secret, rec["headers"], json.dumps(rec["body"], separators=(",", ":")).encode())
    history = client.get("/v1/decisions/m1/revisions").json()
    assert [(h["revision"], h["cause"], h["action"]) for h in history] == [
        (1, "initial", "block"), (2, "override", "allow"), (3, "override", "flag")]
    assert history[1]["actor"].endswith(":mod-7")
    assert client.get("/v1/decisions/m1").json()["revision"] == 3
    audit = [e for e in client.get("/v1/audit").json() if e["subject"] == "m1"]
    assert sorted(e["details"]["revision"] for e in audit) == [1, 2, 3]
    time.sleep(0.3)
    assert len(receiver.received) == 3  # once each
    assert client.post("/v1/decisions/nope/revisions", json={"action": "allow", "reason": "x"}).status_code == 404


def test_dead_letters_show_no_future_attempt_and_redelivery_keeps_the_history(make_api, receiver) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_api(webhook_max_attempts=2)
    receiver.secret = client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
    receiver.fail_next = 3
    decision_id = client.post("/v1/messages", json={"id": "d1", "text": "hi"}).json()["decision_id"]
    dead = wait(lambda: client.get("/v1/webhook/deliveries", params={"status": "dead"}).json())
    assert dead[0]["attempts"] == 2 and dead[0]["next_attempt_at"] is None and dead[0]["dead_at"]
    r = client.post(f"/v1/webhook/deliveries/{decision_id}/redeliver")
    assert r.status_code == 202 and r.json()["attempts"] == 2  # not reset
    # one more failure (fail_next had 3), then delivered
    wait(lambda: receiver.decisions().get("d1"))
    detail = wait(lambda: (d := client.get(f"/v1/webhook/deliveries/{decision_id}").json()) and
                  d[0]["status"] == "delivered" and d)
    history = detail[0]["history"]
    assert [a["attempt"] for a in history] == [1, 2, 3, 4]
    assert [a["ok"] for a in history] == [False, False, False, True]
    assert detail[0]["attempts"] == 4 and detail[0]["next_attempt_at"] is None
    assert client.get("/v1/webhook/deliveries/nope").status_code == 404


def test_decisions_list_filters_and_pages_for_reconciliation(api) -> None:  # type: ignore[no-untyped-def]
    client, rt = api
    client.put("/v1/guilds/g1", json={"lists": {"keywords": {"toxicity": ["idiot"]}}})
    client.put("/v1/guilds/g2", json={})
    for i in range(7):
        client.post("/v1/moderate", json={"id": f"g1-{i}", "guild_id": "g1", "text": "idiot" if i % 2 else "hi"})
    for i in range(3):
        client.post("/v1/moderate", json={"id": f"g2-{i}", "guild_id": "g2", "text": "hello"})
    rt.writer.flush()
    wait(lambda: rt.store.decisions.count() == 10)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"guild_id": "g1", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/decisions", params=params).json()
        seen += [d["message_id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(f"g1-{i}" for i in range(7)) and len(seen) == len(set(seen))
    blocked = client.get("/v1/decisions", params={"action": "block"}).json()["items"]
    assert sorted(d["message_id"] for d in blocked) == ["g1-1", "g1-3", "g1-5"]
    future = client.get("/v1/decisions", params={"since": "2999-01-01T00:00:00Z"}).json()
    assert future == {"items": [], "next_cursor": None}
    bad = client.get("/v1/decisions", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_cursor"
    other = second_tenant(rt, client)
    assert client.get("/v1/decisions", headers=other).json()["items"] == []


@pytest.mark.parametrize("threshold", [2])
def test_a_circuit_breaker_stops_hammering_a_failing_receiver(make_api, receiver, threshold: int) -> None:  # type: ignore[no-untyped-def]
    """After consecutive failures the tenant's events wait out a cooldown instead of burning their
    attempts, so an outage shorter than the cooldown schedule does not dead-letter anything."""
    client, rt = make_api(webhook_max_attempts=4, webhook_breaker_threshold=threshold, webhook_breaker_base_s=1.5,
                          webhook_backoff_base_s=0.01, webhook_backoff_max_s=0.02)
    receiver.secret = client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
    receiver.fail_next = 10_000
    for i in range(10):
        client.post("/v1/messages", json={"id": f"c{i}", "text": f"hello {i}"})
    time.sleep(2.0)
    attempts_during_outage = sum(d["attempts"] for d in client.get("/v1/webhook/deliveries").json())
    # without the breaker: 10 events x 4 attempts within milliseconds, all dead
    assert attempts_during_outage < 10
    assert client.get("/v1/webhook/deliveries", params={"status": "dead"}).json() == []
    receiver.fail_next = 0
    got = receiver.wait_for(10, timeout=30)
    assert len(got) == 10
    assert client.get("/v1/webhook/deliveries", params={"status": "dead"}).json() == []


def test_a_webhook_that_now_points_inward_is_refused_at_send_time(make_api, receiver) -> None:  # type: ignore[no-untyped-def]
    """A URL that passed registration and later resolves to a loopback address (DNS rebinding, an
    edited row) is refused when the drainer connects: dead at once, nothing reaches the address."""
    client, rt = make_api(allow_private_webhooks=False)
    r = client.put("/v1/webhook", json={"url": receiver.url})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unsafe_webhook_url"
    tenant = rt.store.tenants.tenant_for_key(client.headers["Authorization"].split()[1])
    rt.store.webhooks.set(tenant, receiver.url)  # as if its name had been re-pointed after registration
    decision_id = client.post("/v1/messages", json={"id": "ssrf1", "text": "hi"}).json()["decision_id"]
    dead = wait(lambda: client.get("/v1/webhook/deliveries", params={"status": "dead"}).json())
    assert dead[0]["decision_id"] == decision_id and dead[0]["attempts"] == 1
    assert "refused" in dead[0]["last_error"] and "loopback" in dead[0]["last_error"]
    assert receiver.received == []


def test_decision_list_times_are_iso_only(api) -> None:  # type: ignore[no-untyped-def]
    """Found by schemathesis: `until=0.5` was read as half a second after 1970."""
    client, _ = api
    r = client.get("/v1/decisions", params={"until": "0.5"})
    assert r.status_code == 422 and "ISO 8601" in r.json()["error"]["message"]
    assert client.get("/v1/decisions", params={"until": "2026-12-03T10:00:00Z"}).status_code == 200
