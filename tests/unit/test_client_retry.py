"""heron-client's retry rules, on a scripted transport (a 5xx cannot be provoked from a healthy
`heron serve` on demand; the 429 path runs against the real server in
tests/integration/test_client_python.py)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from heron_client import AsyncHeronClient, HeronAPIError, HeronClient, Message, RetryPolicy
from heron_client._core import retry_after_s

DECISION = {"id": "dec_1", "message_id": "m1", "action": "allow", "scores": {"toxicity": 0.1}}


def scripted(statuses: list[int], seen: list[dict[str, object]]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content) if request.content else {})
        status = statuses[min(len(seen) - 1, len(statuses) - 1)]
        if status == 200:
            return httpx.Response(200, json=DECISION)
        headers = {"Retry-After": "0"} if status == 429 else {}
        return httpx.Response(status, json={"error": {"code": f"e{status}", "message": "scripted"}}, headers=headers)

    return httpx.MockTransport(handler)


FAST = RetryPolicy(max_retries=3, base_delay_s=0.001, max_delay_s=0.01)


@pytest.mark.parametrize("first", [500, 502, 503, 504, 429])
def test_retries_5xx_and_429_with_the_same_message_id(first: int) -> None:
    seen: list[dict[str, object]] = []
    with HeronClient("http://heron", "k", retry=FAST, transport=scripted([first, first, 200], seen)) as c:
        result = c.moderate(Message(text="hi"))
    assert result.decision is not None and result.decision.action == "allow"
    assert len(seen) == 3 and len({s["id"] for s in seen}) == 1  # idempotent by message id


def test_gives_up_after_max_retries_with_the_error_code() -> None:
    seen: list[dict[str, object]] = []
    with HeronClient("http://heron", "k", retry=FAST, transport=scripted([503], seen)) as c:
        with pytest.raises(HeronAPIError) as err:
            c.moderate({"text": "hi"})
    assert err.value.status_code == 503 and err.value.code == "e503" and len(seen) == 4
    assert len({s["id"] for s in seen}) == 1  # a dict without an id got one, kept across retries


def test_4xx_and_overrides_are_not_retried() -> None:
    seen: list[dict[str, object]] = []
    with HeronClient("http://heron", "k", retry=FAST, transport=scripted([422], seen)) as c:
        with pytest.raises(HeronAPIError):
            c.moderate(Message(text="hi"))
    assert len(seen) == 1
    seen.clear()
    with HeronClient("http://heron", "k", retry=FAST, transport=scripted([503, 200], seen)) as c:
        with pytest.raises(HeronAPIError):
            c.revise("dec_1", "allow", "r")  # a second override would be a second revision
    assert len(seen) == 1


def test_async_client_retries_too() -> None:
    seen: list[dict[str, object]] = []

    async def run() -> None:
        async with AsyncHeronClient("http://heron", "k", retry=FAST, transport=scripted([502, 200], seen)) as c:
            r = await c.moderate(Message(text="hi"))
            assert r.decision is not None

    asyncio.run(run())
    assert len(seen) == 2


def test_retry_after_forms() -> None:
    assert retry_after_s(httpx.Response(429, headers={"Retry-After": "7"})) == 7.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (retry_after_s(httpx.Response(429, headers={"Retry-After": later})) or 0) <= 30
    assert retry_after_s(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    assert RetryPolicy(max_delay_s=5).delay(1, httpx.Response(429, headers={"Retry-After": "60"})) == 5
