"""Rate limits across processes: two `heron serve` processes on one real Redis share one allowance,
and a Redis outage never fails or blocks a request (each process counts on its own meanwhile)."""

from __future__ import annotations

import itertools
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import BIN, REPO, Proc, free_port

pytestmark = pytest.mark.integration


def start_second_api(stack: Any, tmp: Path) -> tuple[Proc, httpx.Client]:
    port = free_port()
    proc = Proc([str(BIN / "heron"), "serve", "--port", str(port), "--no-migrate", "--log-level", "warning"],
                stack.env, tmp / "api2.log")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=stack.client.headers, timeout=30)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if client.get("/healthz").status_code == 200:
                return proc, client
        except httpx.HTTPError:
            pass
        assert proc.proc.poll() is None, proc.output()
        time.sleep(0.2)
    raise AssertionError("second API did not start:\n" + proc.output())


def new_key(stack: Any, tenant: str) -> dict[str, str]:
    out = subprocess.run([str(BIN / "heron"), "keys", "create", "--tenant", tenant], env=stack.env, cwd=REPO,
                         check=True, capture_output=True, text=True)
    return {"Authorization": f"Bearer {out.stdout.strip()}"}


def metric(client: httpx.Client, series: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def test_two_api_processes_share_the_limits_through_redis(stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    stack.env.update({
        "HERON_SCORERS": '["rules", "links"]',  # the limits are under test, not the model
        "HERON_RATE_LIMIT_PER_KEY": "12/minute",
        "HERON_RATE_LIMIT_PER_GUILD": "4/minute",
    })
    stack.start_api()
    proc2, api2 = start_second_api(stack, tmp_path)
    try:
        apis = [stack.client, api2]
        # per key: 16 requests alternating between the processes; 12 pass in all, not 12 per process
        statuses = [api.post("/v1/moderate", json={"text": f"hello {i}"}).status_code
                    for i, api in zip(range(16), itertools.cycle(apis), strict=False)]
        assert statuses == [200] * 12 + [429] * 4, statuses
        refused = api2.post("/v1/messages", json={"text": "queued"})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1

        # per guild, for another tenant: its key is fresh, and its guild "g1" is its own
        other = new_key(stack, "other")
        assert stack.client.put("/v1/guilds/g1", json={}, headers=other).status_code == 200
        statuses = [api.post("/v1/moderate", json={"guild_id": "g1", "text": f"raid {i}"}, headers=other).status_code
                    for i, api in zip(range(8), itertools.cycle(apis), strict=False)]
        assert statuses == [200] * 4 + [429] * 4, statuses
        assert all(metric(api, 'heron_refused_total{limit="per_key"}') >= 1 for api in apis)

        # Redis dies: both processes keep answering, counting on their own, and say so in /metrics
        stack.redis.stop()
        third = new_key(stack, "third")
        for i, api in zip(range(6), itertools.cycle(apis), strict=False):
            r = api.post("/v1/moderate", json={"text": f"during the outage {i}"}, headers=third)
            assert r.status_code == 200, r.text
        assert all(metric(api, "heron_rate_limit_fallback_total") >= 1 for api in apis)
        # each process now allows 12 a minute on its own: the 7th through process 2 is refused there
        statuses = [api2.post("/v1/moderate", json={"text": f"more {i}"}, headers=third).status_code
                    for i in range(10)]
        assert statuses == [200] * 9 + [429], statuses
        stack.redis.start()
    finally:
        api2.close()
        proc2.stop()
