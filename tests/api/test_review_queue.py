"""The review desk over the API: held decisions reach the queue (sync and async), claims lock,
verdicts become signed revisions, reports and appeals, bulk action, double review, audit."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import Receiver

HELD = "you are a complete idiot"  # the guild word list below holds it for review


def wait(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def setup_guild(client: Any, guild: str = "g1") -> None:
    policy = {"thresholds": {"toxicity": [{"threshold": 0.5, "action": "hold_for_review"}],
                             "self_harm": [{"threshold": 0.5, "action": "hold_for_review"}],
                             "spam": [{"threshold": 0.5, "action": "flag"}]}}
    lists = {"keywords": {"toxicity": ["idiot"], "self_harm": ["hurt myself"], "spam": ["buy followers"]}}
    r = client.put(f"/v1/guilds/{guild}", json={"policy": policy, "lists": lists})
    assert r.status_code in (200, 201), r.text


def queue(client: Any, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/v1/review/items", params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]


def test_held_messages_from_both_paths_enter_the_queue_by_priority(api: Any) -> None:
    client, rt = api
    setup_guild(client)
    assert client.post("/v1/moderate", json={"id": "s1", "guild_id": "g1", "text": HELD}).json()["action"] == \
        "hold_for_review"
    assert client.post("/v1/messages", json={"id": "a1", "guild_id": "g1", "text": "I want to hurt myself"}) \
        .status_code == 202
    assert client.post("/v1/moderate", json={"id": "f1", "guild_id": "g1", "text": "buy followers here"}) \
        .json()["action"] == "flag"
    assert client.post("/v1/moderate", json={"id": "ok", "guild_id": "g1", "text": "hello friends"}) \
        .json()["action"] == "allow"
    items = wait(lambda: (q := queue(client)) and len(q) >= 3 and q)
    assert [i["message_id"] for i in items][0] == "a1"  # self_harm first
    assert {i["message_id"] for i in items} == {"s1", "a1", "f1"}  # the allowed one is not queued
    assert all(i["queue"] == "guild" and i["guild_id"] == "g1" and i["status"] == "open" for i in items)
    assert items[0]["self_harm"] is True and items[0]["sla_s"] == 3600.0
    # the sync path kept the held message's text for the reviewer
    detail = client.get(f"/v1/review/items/{items[1]['id']}").json()
    assert detail["message"]["text"] in (HELD, "buy followers here")
    assert detail["decision"]["policy_version"] == 1 and detail["decision"]["reasons"]


def test_claim_lock_resolve_revision_webhook_and_audit(api: Any, receiver: Receiver) -> None:
    client, rt = api
    receiver.secret = client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
    setup_guild(client)
    rt.store.reviewers.create(rt.store.tenants.ensure("acme"), "mod-a", "correct horse battery", "moderator", ["g1"])
    rt.store.reviewers.create(rt.store.tenants.ensure("acme"), "mod-b", "correct horse battery", "moderator", ["g1"])
    client.post("/v1/moderate", json={"id": "m1", "guild_id": "g1", "text": HELD})
    item = wait(lambda: queue(client))[0]

    a, b = login_client(client, "mod-a"), login_client(client, "mod-b")
    r = a.post(f"/v1/review/items/{item['id']}/claim", headers=a.csrf)
    assert r.status_code == 200 and r.json()["claimed_by"] == "reviewer:mod-a"
    r = b.post(f"/v1/review/items/{item['id']}/claim", headers=b.csrf)
    assert r.status_code == 409 and r.json()["error"]["code"] == "review_item_claimed"
    r = b.post(f"/v1/review/items/{item['id']}/resolve", json={"verdict": "overturn"}, headers=b.csrf)
    assert r.status_code == 409
    # no CSRF token: refused before anything happens
    r = a.post(f"/v1/review/items/{item['id']}/resolve", json={"verdict": "uphold"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    r = a.post(f"/v1/review/items/{item['id']}/resolve", headers=a.csrf,
               json={"verdict": "uphold", "categories": {"toxicity": True, "hate": False}, "note": "direct insult",
                     "author_action": "timeout"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["stage"] in ("first",) and body["decision"]["revision"] == 2
    assert body["decision"]["action"] == "timeout_author"
    events = wait(lambda: (e := receiver.events()) and len(e) >= 2 and e)
    assert [e["revision"] for e in events] == [1, 2] and events[1]["cause"] == "review"
    assert events[1]["decision"]["reasons"][-1]["source"] == "review"
    assert "recommends timeout" in events[1]["decision"]["reasons"][-1]["text"]
    assert receiver.bad_signatures == 0
    audit = client.get("/v1/audit", params={"limit": 50}).json()
    kinds = [e["event"] for e in (audit["items"] if isinstance(audit, dict) else audit)]
    assert "review_claim" in kinds and "review_verdict" in kinds and "decision_revised" in kinds
    # the revision made by a person does not re-enter the queue
    time.sleep(0.5)
    assert queue(client) == []
    resolved = queue(client, status="resolved")
    assert resolved[0]["verdict"] == "uphold" and resolved[0]["resolved_by"] == "reviewer:mod-a"


def login_client(client: Any, username: str, password: str = "correct horse battery") -> Any:
    """A second TestClient on the same app, signed in through the login form."""
    from fastapi.testclient import TestClient

    c = TestClient(client.app)
    page = c.get("/review/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    r = c.post("/review/login", data={"username": username, "password": password, "csrf_token": token,
                                      "next": "/review"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    session = c.get("/review")
    csrf = session.text.split('name="csrf_token" value="')[1].split('"')[0]
    c.csrf = {"X-CSRF-Token": csrf}  # type: ignore[attr-defined]
    return c


def test_reports_appeals_bulk_and_double_review(make_api: Any, receiver: Receiver) -> None:
    client, rt = make_api(review_double_share=1.0)
    receiver.secret = client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
    setup_guild(client)
    tenant = rt.store.tenants.ensure("acme")
    rt.store.reviewers.create(tenant, "mod-a", "correct horse battery", "moderator", ["g1"])
    rt.store.reviewers.create(tenant, "mod-b", "correct horse battery", "moderator", ["g1"])
    # a report on an allowed message, with the text the sync path did not keep
    client.post("/v1/moderate", json={"id": "r1", "guild_id": "g1", "text": "meet me later"})
    wait(lambda: rt.store.decisions.get(tenant, "r1"))
    r = client.post("/v1/reports", json={"message_id": "r1", "reporter": "u7", "reason": "creepy",
                                         "message": {"id": "r1", "guild_id": "g1", "text": "meet me later"}})
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "report" and r.json()["reach"] == 1
    r = client.post("/v1/reports", json={"message_id": "r1", "reporter": "u8", "reason": "creepy too"})
    assert r.json()["reach"] == 2
    assert client.post("/v1/reports", json={"message_id": "nope", "reporter": "u7", "reason": "x"}).status_code == 404

    # double review: the first verdict goes out, a second reviewer decides blind, agreement is measured
    report_id = r.json()["id"]
    a, b = login_client(client, "mod-a"), login_client(client, "mod-b")
    a.post(f"/v1/review/items/{report_id}/claim", headers=a.csrf)
    r = a.post(f"/v1/review/items/{report_id}/resolve", headers=a.csrf,
               json={"verdict": "uphold", "categories": {"harassment": True}, "reason": "targeted_harassment"})
    assert r.json()["item"]["status"] == "second_review" and r.json()["decision"]["action"] == "block"
    assert a.post(f"/v1/review/items/{report_id}/claim", headers=a.csrf).json()["error"]["code"] == \
        "second_review_blind"
    seen_by_b = b.get(f"/v1/review/items/{report_id}").json()
    assert seen_by_b["verdicts"] == [] and seen_by_b["item"]["verdict"] is None  # blind
    b.post(f"/v1/review/items/{report_id}/claim", headers=b.csrf)
    r = b.post(f"/v1/review/items/{report_id}/resolve", headers=b.csrf,
               json={"verdict": "uphold", "categories": {"harassment": False}, "reason": "violates_policy"})
    assert r.json()["item"]["status"] == "resolved" and r.json()["decision"] is None
    stats = client.get("/v1/review/stats").json()
    assert stats["double_reviewed"] == 1 and stats["verdict_agreement"] == 1.0
    assert stats["category_agreement"]["harassment"] == {"rate": 0.0, "pairs": 1}
    assert stats["reviewers"]["reviewer:mod-a"]["verdicts"] == 1
    metrics = client.get("/metrics").text
    assert f'heron_review_agreement_rate{{category="harassment",tenant="{tenant}"}} 0.0' in metrics
    assert f'heron_review_agreement_rate{{category="verdict",tenant="{tenant}"}} 1.0' in metrics
    assert f'heron_review_reviewer_verdicts{{reviewer="reviewer:mod-b",tenant="{tenant}"}} 1.0' in metrics
    assert 'heron_review_verdicts_total{stage="second",verdict="uphold"}' in metrics
    assert "heron_review_time_to_verdict_seconds_count" in metrics
    page = b.get("/review/stats")
    assert page.status_code == 200 and "harassment" in page.text and "0 %" in page.text

    # an appeal goes to the platform queue; the API key (admin) overturns it; the webhook says so
    r = client.post("/v1/appeals", json={"decision_id": "r1", "appellant": "author-1", "reason": "it was a joke"})
    assert r.status_code == 201 and r.json()["queue"] == "platform"
    assert client.post("/v1/appeals", json={"decision_id": "r1", "appellant": "x", "reason": "again"}) \
        .json()["error"]["code"] == "appeal_exists"
    assert [i for i in queue(a) if i["kind"] == "appeal"] == []  # moderators do not see the platform queue
    r = client.post(f"/v1/review/items/{r.json()['id']}/resolve",
                    json={"verdict": "overturn", "reason": "acceptable_in_context"})
    assert r.status_code == 200 and r.json()["decision"]["action"] == "allow"
    events = wait(lambda: (e := [x for x in receiver.events() if x["decision"]["message_id"] == "r1"])
                  and len(e) >= 3 and e)
    assert events[-1]["cause"] == "appeal" and events[-1]["decision"]["action"] == "allow"

    # bulk over a spam-wave cluster
    for i in range(3):
        client.post("/v1/moderate", json={"id": f"w{i}", "guild_id": "g1", "text": f"buy followers {i}"})
    wait(lambda: len([i for i in queue(client) if i["message_id"].startswith("w")]) == 3)
    assert client.put("/v1/review/clusters/wave-1", json={"message_ids": ["w0", "w1", "w2"]}).json()["items"] == 3
    a.post(f"/v1/review/items/{queue(client, cluster_id='wave-1')[0]['id']}/claim", headers=a.csrf)
    r = b.post("/v1/review/bulk", headers=b.csrf, json={"cluster_id": "wave-1", "verdict": "uphold",
                                                       "reason": "spam_wave", "categories": {"spam": True}})
    assert r.status_code == 200 and r.json()["resolved"] == 2  # the item mod-a holds is skipped
    assert [x["error"]["code"] for x in r.json()["results"] if not x["ok"]] == ["review_item_claimed"]


def test_bad_input_is_a_clear_4xx(api: Any) -> None:
    client, rt = api
    setup_guild(client)
    client.post("/v1/moderate", json={"id": "m1", "guild_id": "g1", "text": HELD})
    item = wait(lambda: queue(client))[0]
    r = client.post(f"/v1/review/items/{item['id']}/resolve", json={"verdict": "maybe"})
    assert r.status_code == 422
    r = client.post(f"/v1/review/items/{item['id']}/resolve", json={"verdict": "uphold", "reason": "false_positive"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_review_reason"
    r = client.post(f"/v1/review/items/{item['id']}/resolve", json={"verdict": "uphold", "categories": {"nsfw": True}})
    assert r.status_code == 422
    assert client.get("/v1/review/items/999999").json()["error"]["code"] == "review_item_not_found"
    assert client.get("/v1/review/items/abc").status_code == 422
    assert client.get("/v1/review/items", headers={"Authorization": ""}).status_code == 401
