"""heron-client against a real `heron serve`, and its webhook verifier against the server's
signing code (pipeline/signing.py) and the server's real deliveries."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from heron_client import (
    AsyncHeronClient,
    Author,
    HeronAPIError,
    HeronClient,
    HeronUnavailable,
    Message,
    RetryPolicy,
    WebhookReplayError,
    WebhookVerificationError,
    WebhookVerifier,
    sign,
    verify_signature,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import signing
from tests.integration.conftest import free_port
from tests.integration.synapse_harness import HeronServer

pytestmark = pytest.mark.integration

LISTS = {"keywords": {"toxicity": ["zzblockword"]}, "blocked_links": ["phish.example"]}


@pytest.fixture(scope="module")
def heron(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeronServer]:
    # The word and link lists decide these tests, so the text model is not loaded.
    server = HeronServer(tmp_path_factory.mktemp("heron"), scorers='["rules", "links"]')
    server.start()
    yield server
    server.stop()


def test_sync_client_every_route(heron: HeronServer) -> None:
    with HeronClient(heron.url, heron.key) as c:
        g = c.put_guild("g-sync", lists=LISTS)
        assert g.guild_id == "g-sync" and g.lists_version == 1 and g.uses_platform_default

        blocked = c.moderate(Message(text="you zzblockword", guild_id="g-sync", author=Author(id="u1", roles=["m"])))
        assert blocked.is_decided and blocked.decision is not None
        assert blocked.decision.action == "block" and blocked.decision.removes
        assert any("zzblockword" in r.text for r in blocked.decision.reasons)
        phish = c.moderate({"text": "free stuff https://phish.example/x", "guild_id": "g-sync"})
        assert phish.decision is not None and phish.decision.action == "timeout_author"

        benign = Message(
            text="hello friends",
            guild_id="g-sync",
            channel_id="c1",
            author=Author(id="u2", created_at=datetime(2026, 1, 1, tzinfo=UTC)),
        )
        allowed = c.moderate(benign)
        assert allowed.decision is not None and allowed.decision.action == "allow"
        # Idempotent by message id: the same message sent again is the same decision.
        again = c.moderate(benign)
        assert again.decision is not None and again.decision.id == allowed.decision.id
        assert c.get_decision(benign.id).id == allowed.decision.id

        queued = c.submit(Message(text="later zzblockword", guild_id="g-sync"))
        assert queued.status == "accepted" and not queued.duplicate
        assert c.submit(Message(id=queued.message_id, text="later zzblockword", guild_id="g-sync")).duplicate
        deadline = time.monotonic() + 60
        while True:
            try:
                d = c.get_decision(queued.decision_id)
                break
            except HeronAPIError as exc:
                assert exc.code == "decision_pending" and time.monotonic() < deadline
                time.sleep(0.2)
        assert d.action == "block" and d.message_id == queued.message_id

        # Sync answers are stored write-behind (a moment after the answer), so the listing may lag
        # the answers briefly; it must hold them all within a few seconds.
        want = {blocked.decision.id, allowed.decision.id, d.id}
        deadline = time.monotonic() + 30
        while True:
            page = c.list_decisions(guild_id="g-sync", limit=2)
            assert len(page.items) == 2
            rest = c.list_decisions(guild_id="g-sync", cursor=page.next_cursor) if page.next_cursor else page
            ids = {x.id for x in page.items + rest.items}
            if want <= ids or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert page.next_cursor and want <= ids

        revised = c.revise(
            allowed.decision.id, "hold_for_review", "a moderator read it again", actor="mod-1"
        )  # written by now: get_decision above
        assert revised.revision == 2 and revised.action == "hold_for_review"
        history = c.revisions(allowed.decision.id)
        assert [(h.revision, h.cause) for h in history] == [(1, "initial"), (2, "override")]

        policy = {"thresholds": {"toxicity": [{"threshold": 0.5, "action": "hold_for_review"}]}}
        assert c.put_policy("g-sync", policy).policy_version == 1
        held = c.moderate(Message(text="zzblockword again", guild_id="g-sync"))
        assert held.decision is not None and held.decision.action == "hold_for_review"
        assert c.put_lists("g-sync", {"keywords": {"toxicity": ["other"]}}).lists_version == 2
        assert c.get_guild("g-sync").lists["keywords"] == {"toxicity": ["other"]}
        assert len(c.guild_history("g-sync")) >= 3

        with pytest.raises(HeronAPIError) as err:
            c.moderate(Message(text="x", guild_id="never-registered"))
        assert err.value.status_code == 404 and err.value.code == "unknown_guild"
        with pytest.raises(HeronAPIError) as bad:
            c.put_lists("g-sync", {"keywords": {"not_a_category": ["x"]}})
        assert bad.value.status_code in (400, 422)


def test_async_client(heron: HeronServer) -> None:
    async def run() -> None:
        async with AsyncHeronClient(heron.url, heron.key) as c:
            await c.put_guild("g-async", lists=LISTS)
            results = await asyncio.gather(
                *[c.moderate(Message(text=f"msg {i} zzblockword", guild_id="g-async")) for i in range(5)],
                c.moderate(Message(text="good morning", guild_id="g-async")),
            )
            actions = [r.decision.action for r in results if r.decision is not None]
            assert actions == ["block"] * 5 + ["allow"]
            got = await c.get_decision(results[0].decision.id)  # type: ignore[union-attr]
            assert got.action == "block"
            page = await c.list_decisions(guild_id="g-async")
            assert len(page.items) == 6

    asyncio.run(run())


def test_rate_limit_retry_honours_retry_after(tmp_path: Path) -> None:
    server = HeronServer(tmp_path, scorers='["rules"]', extra_env={"HERON_RATE_LIMIT_PER_KEY": "2/second"})
    server.start()
    try:
        with HeronClient(server.url, server.key, retry=RetryPolicy(max_retries=0)) as once:
            with pytest.raises(HeronAPIError) as err:
                for i in range(10):
                    once.moderate(Message(text=f"hello {i}"))
            assert err.value.status_code == 429 and err.value.code == "rate_limited"
            assert err.value.retry_after_s is not None and err.value.retry_after_s >= 1
        # With retries the same burst goes through: each 429 waits Retry-After and resends the
        # same message id.
        with HeronClient(server.url, server.key, retry=RetryPolicy(max_retries=5, max_delay_s=3)) as c:
            messages = [Message(text=f"burst {i}") for i in range(6)]
            decisions = [c.moderate(m).decision for m in messages]
            assert all(d is not None and d.action == "allow" for d in decisions)
            assert [d.message_id for d in decisions if d] == [m.id for m in messages]
    finally:
        server.stop()


def test_unreachable_server_raises_after_retries() -> None:
    port = free_port()  # nothing listens there
    with HeronClient(f"http://127.0.0.1:{port}", "k", timeout=1, retry=RetryPolicy(2, 0.01, 0.02)) as c:
        with pytest.raises(HeronUnavailable):
            c.moderate(Message(text="hi"))


# ---- webhooks: the client's verifier and the server's signer cannot drift ----------------------


@settings(max_examples=200, deadline=None)
@given(secret=st.text(min_size=1, max_size=64), body=st.binary(max_size=512), ts=st.integers(0, 2**33))
def test_client_and_server_signatures_agree(secret: str, body: bytes, ts: int) -> None:
    assert sign(secret, ts, body) == signing.sign(secret, ts, body)
    headers = signing.signed_headers(secret, body, "dec_x", attempt=1, timestamp=ts, revision=2)
    assert verify_signature(secret, headers, body, now=ts) == ts
    signing.verify(secret, {"Heron-Timestamp": str(ts), "Heron-Signature": sign(secret, ts, body)}, body, now=ts)


def test_verifier_window_tamper_and_replay() -> None:
    secret = "whsec_test"
    decision = {"id": "dec_1", "message_id": "m1", "action": "block", "scores": {}, "revision": 1}
    body = json.dumps({"type": "decision", "event_id": "dec_1.1", "revision": 1, "decision": decision}).encode()
    now = 1_800_000_000
    headers = signing.signed_headers(secret, body, "dec_1", attempt=1, timestamp=now)
    v = WebhookVerifier(secret, window_s=300)
    event = v.verify(headers, body, now=now + 10)
    assert event.decision.action == "block" and not event.duplicate
    assert v.verify(headers, body, now=now + 20).duplicate  # the same signed request again
    strict = WebhookVerifier(secret, refuse_replays=True)
    strict.verify(headers, body, now=now)
    with pytest.raises(WebhookReplayError):
        strict.verify(headers, body, now=now + 20)
    retry = signing.signed_headers(secret, body, "dec_1", attempt=2, timestamp=now + 30)
    assert v.verify(retry, body, now=now + 31).duplicate  # a redelivery: re-signed, same event
    for bad_headers, bad_body, at in [
        (headers, body + b" ", now),  # tampered body
        (signing.signed_headers("other", body, "dec_1", 1, timestamp=now), body, now),  # wrong secret
        (signing.signed_headers(secret, body, "dec_1", 1, timestamp=now - 301), body, now),  # too old
        ({"Heron-Signature": headers["Heron-Signature"]}, body, now),  # no timestamp
    ]:
        with pytest.raises(WebhookVerificationError):
            WebhookVerifier(secret).verify(bad_headers, bad_body, now=at)
    # pipeline.signing refuses exactly the same cases.
    with pytest.raises(signing.SignatureError):
        signing.verify(secret, headers, body + b" ", now=now)


def revise_when_stored(c: HeronClient, decision_id: str, action: str, reason: str) -> None:
    """A sync decision is answered before it is written; an override needs the stored one."""
    deadline = time.monotonic() + 30
    while True:
        try:
            c.revise(decision_id, action, reason, actor="mod-2")
            return
        except HeronAPIError as exc:
            assert exc.code == "decision_not_found" and time.monotonic() < deadline
            time.sleep(0.1)


class _Receiver(ThreadingHTTPServer):
    verifier: WebhookVerifier
    events: queue.Queue[tuple[int, object]]


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            event = self.server.verifier.verify(dict(self.headers.items()), body)
        except WebhookVerificationError as exc:
            self.server.events.put((401, str(exc)))
            self.send_response(401)
            self.end_headers()
            return
        self.server.events.put((200, event))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_verifier_accepts_real_deliveries(heron: HeronServer) -> None:
    port = free_port()
    receiver = _Receiver(("127.0.0.1", port), _Handler)
    receiver.events = queue.Queue()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        with HeronClient(heron.url, heron.key) as c:
            hook = c.put_webhook(f"http://127.0.0.1:{port}/hook")
            assert hook.secret
            receiver.verifier = WebhookVerifier(hook.secret)
            c.put_guild("g-hook", lists=LISTS)
            d = c.moderate(Message(text="zzblockword", guild_id="g-hook")).decision
            assert d is not None
            revise_when_stored(c, d.id, "allow", "appeal upheld")
            seen: dict[int, str] = {}
            deadline = time.monotonic() + 60
            while len(seen) < 2 and time.monotonic() < deadline:
                try:
                    status, ev = receiver.events.get(timeout=1)
                except queue.Empty:
                    continue
                assert status == 200, ev
                if ev.decision.id == d.id:  # type: ignore[attr-defined]
                    seen[ev.revision] = ev.decision.action  # type: ignore[attr-defined]
            assert seen == {1: "block", 2: "allow"}
    finally:
        receiver.shutdown()


def test_report_and_appeal(heron: HeronServer) -> None:
    """POST /v1/reports and /v1/appeals (the review desk) through the client."""
    with HeronClient(heron.url, heron.key) as c:
        c.put_guild("g-review", lists=LISTS)
        d = c.moderate(Message(text="zzblockword here", guild_id="g-review")).decision
        assert d is not None and d.action == "block"
        item = c.report(d.message_id, reporter="user-9", reason="insulting")
        assert item["message_id"] == d.message_id
        again = c.report(d.message_id, reporter="user-10", reason="insulting")
        assert again["id"] == item["id"]  # one review item per message; reporters add reach
        appeal = c.appeal(d.id, appellant="author-1", reason="it was a quote")
        assert appeal["id"]
        with pytest.raises(HeronAPIError) as err:
            c.appeal("dec_does_not_exist", appellant="a", reason="r")
        assert err.value.status_code == 404


def test_client_imports_only_httpx() -> None:
    """The client stands alone: importing it loads none of the server's stack."""
    import subprocess
    import sys

    code = (
        "import sys, heron_client, heron_client.webhooks\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'pipeline', 'api', 'torch', 'fastapi', 'pydantic', 'sqlalchemy', 'numpy'})\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stdout + out.stderr
