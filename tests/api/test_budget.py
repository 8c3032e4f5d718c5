"""The sync budget bounds what callers see: measured from arrival, shed to the async path (202) when
it cannot be met, 429 `overloaded` when the async path is full too, and every 202 ends up decided."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pipeline.budget import LatencyEstimate, SyncPath


def wait_decided(client: Any, message_id: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/v1/decisions/{message_id}")
        if r.status_code == 200:
            return r.json()  # type: ignore[no-any-return]
        assert r.json()["error"]["code"] == "decision_pending", r.text
        time.sleep(0.05)
    raise AssertionError(f"{message_id} was not decided in {timeout} s")


def metric(client: Any, series: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def sync_path(client: Any, rt: Any) -> SyncPath:
    sync = SyncPath(rt)
    client.app.state.sync_path = sync
    return sync


def test_a_budget_already_spent_on_arrival_sheds_to_the_async_path(make_api) -> None:  # type: ignore[no-untyped-def]
    # 1 µs: gone before the handler runs, as it is for a request that queued behind a flood
    client, _ = make_api(sync_budget_ms=0.001)
    before = metric(client, 'heron_sync_answer_seconds_count{outcome="shed"}')
    ids = [f"shed-{i}" for i in range(5)]
    for mid in ids:
        r = client.post("/v1/moderate", json={"id": mid, "text": f"hello {mid}"})
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["status"] == "pending" and body["message_id"] == mid and "busy" in body["detail"]
    assert metric(client, 'heron_sync_answer_seconds_count{outcome="shed"}') == before + len(ids)
    # nothing a caller sent is lost: the async path decides every shed message
    for mid in ids:
        assert wait_decided(client, mid)["message_id"] == mid
    r = client.post("/v1/moderate", json={"id": ids[0], "text": "again"})
    assert r.status_code == 202 and r.json()["duplicate"] is True


def test_a_predicted_overrun_sheds_only_when_others_are_scoring(make_api) -> None:  # type: ignore[no-untyped-def]
    client, rt = make_api()  # a 10 s budget: a loaded CI machine still answers 200 within it
    sync = sync_path(client, rt)
    sync.estimate.per_request_s = 50.0  # recent requests took far longer than the budget
    # nobody else is scoring: admitted (it cannot queue behind anyone) and its sample refreshes the estimate
    r = client.post("/v1/moderate", json={"id": "alone", "text": "hello"})
    assert r.status_code == 200, r.text
    assert sync.estimate.per_request_s < 50.0 and sync.estimate.in_flight == 0
    sync.estimate.per_request_s = 50.0
    sync.estimate.in_flight = 1  # one ahead at that pace: 100 s predicted, 10 s budget
    r = client.post("/v1/moderate", json={"id": "behind", "text": "hello"})
    assert r.status_code == 202 and "busy" in r.json()["detail"]
    sync.estimate.in_flight = 0
    assert wait_decided(client, "behind")["message_id"] == "behind"


def test_scoring_past_the_budget_still_answers_202_and_decides_late(make_api, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client, rt = make_api(sync_budget_ms=1000)  # long enough to be admitted on a loaded machine
    service = rt.service
    real = service.decide_one_async

    async def slow_scorer(*args: Any) -> Any:
        await asyncio.sleep(4.0)
        return await real(*args)

    monkeypatch.setattr(service, "decide_one_async", slow_scorer)
    before = metric(client, 'heron_sync_answer_seconds_count{outcome="pending"}')
    r = client.post("/v1/moderate", json={"id": "late", "text": "hello"})
    assert r.status_code == 202 and "budget exceeded" in r.json()["detail"]
    # answered at the budget, while scoring still runs: stored as pending, not decided yet
    assert client.get("/v1/decisions/late").json()["error"]["code"] == "decision_pending"
    assert metric(client, 'heron_sync_answer_seconds_count{outcome="pending"}') == before + 1
    assert wait_decided(client, "late")["message_id"] == "late"


def test_overloaded_when_the_async_backlog_is_full_too(make_api) -> None:  # type: ignore[no-untyped-def]
    # no embedded worker drains the queue, so every shed message adds to the backlog
    # (and no sweeper re-sends within the test, which would add duplicates to the backlog)
    client, rt = make_api(sync_budget_ms=0.001, embedded_workers=0, shed_max_backlog=2, requeue_after_s=300)
    sync_path(client, rt).backlog_ttl_s = 0  # read the backlog on every shed request
    before = metric(client, 'heron_refused_total{limit="overloaded"}')
    answers = []
    for i in range(10):
        r = client.post("/v1/moderate", json={"id": f"o-{i}", "text": "hello"})
        answers.append(r)
        if r.status_code == 429:
            break
    accepted = [r.json()["message_id"] for r in answers if r.status_code == 202]
    assert len(accepted) >= 3, [r.status_code for r in answers]
    refused = answers[-1]
    assert refused.status_code == 429, [r.status_code for r in answers]
    assert refused.json()["error"]["code"] == "overloaded"
    assert refused.headers["Retry-After"].isdigit() and int(refused.headers["Retry-After"]) >= 1
    assert metric(client, 'heron_refused_total{limit="overloaded"}') == before + 1
    # the refused message was not taken; the accepted ones are stored and wait for a worker
    refused_id = f"o-{len(answers) - 1}"
    assert client.get(f"/v1/decisions/{refused_id}").json()["error"]["code"] == "decision_not_found"
    for mid in accepted:
        assert client.get(f"/v1/decisions/{mid}").json()["error"]["code"] == "decision_pending"


def test_decided_requests_report_arrival_to_answer(make_api) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_api()
    before = metric(client, 'heron_sync_answer_seconds_count{outcome="decided"}')
    assert client.post("/v1/moderate", json={"text": "hello"}).status_code == 200
    assert metric(client, 'heron_sync_answer_seconds_count{outcome="decided"}') == before + 1
    help_line = next(line for line in client.get("/metrics").text.splitlines()
                     if line.startswith("# HELP heron_sync_decision_seconds"))
    assert "heron_sync_answer_seconds" in help_line  # says what it leaves out


def test_latency_estimate_follows_load() -> None:
    est = LatencyEstimate()
    assert est.predict_s() == 0.0  # nothing known: admit
    ahead = [est.started() for _ in range(4)]
    assert ahead == [0, 1, 2, 3] and est.in_flight == 4
    for a in ahead:  # each took (ahead + 1) x 10 ms: 10 ms per request
        est.finished(a, (a + 1) * 0.010)
    assert est.in_flight == 0
    assert abs(est.per_request_s - 0.010) < 1e-9
    est.started()
    est.started()
    assert abs(est.predict_s() - 0.030) < 1e-9  # two scoring now, one more would wait ~3 x 10 ms
    for _ in range(30):  # the load got cheaper per request (bigger batches): the estimate follows
        est.finished(0, 0.002)
        est.started()
    assert est.per_request_s < 0.0025


def test_arrival_is_stamped_before_anything_else_runs(api) -> None:  # type: ignore[no-untyped-def]
    """The budget starts when the request arrives, not when the handler runs: the stamp is taken by
    the outermost middleware, before body reading and any other layer."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from api.arrival import ArrivalStamp, arrival

    client, _ = api
    assert client.app.user_middleware[0].cls is ArrivalStamp  # outermost of the app's own layers

    async def handler(request: Request) -> JSONResponse:
        return JSONResponse({"waited": time.perf_counter() - arrival(request)})

    class SlowLayer:  # stands in for whatever runs between arrival and the handler
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await asyncio.sleep(0.2)
            await self.app(scope, receive, send)

    inner = Starlette(routes=[Route("/", handler)])
    with TestClient(ArrivalStamp(SlowLayer(inner))) as tc:
        assert tc.get("/").json()["waited"] >= 0.2
    with TestClient(inner) as tc:  # without the stamp, arrival means "now"
        assert tc.get("/").json()["waited"] < 0.2
