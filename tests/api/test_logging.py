"""Request ids in log lines and responses, as an operator following one request sees them."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.logs import (
    ContextFilter,
    TextFormatter,
    current_ids,
    json_formatter,
    log_context,
    logging_config,
    resolve_format,
)


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Every log record of the process, formatted as `heron serve` does with HERON_LOG_FORMAT=json."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(json_formatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield buf
    root.removeHandler(handler)


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]  # every line must be JSON


def fail_rules_scorer(rt: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules scorer fails on every message, so the service logs an error inside the request."""
    rules = next(s for s in rt.service.scorers if s.name == "rules")

    def boom(items: Any) -> Any:
        raise RuntimeError("rules exploded")

    monkeypatch.setattr(rules, "applies_to", lambda item: True)
    monkeypatch.setattr(rules, "score", boom)


def test_log_lines_of_a_request_are_json_and_carry_its_x_request_id(
    api: Any, json_logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, rt = api
    fail_rules_scorer(rt, monkeypatch)
    r = client.post("/v1/moderate", json={"text": "hello there"}, headers={"X-Request-Id": "chat-trace-42"})
    assert r.status_code == 200, r.text
    assert r.headers["X-Request-Id"] == "chat-trace-42"
    assert "rules" in r.json()["missing_signals"]
    errors = [rec for rec in lines(json_logs) if rec["message"] == "scorer rules failed"]
    assert len(errors) == 1, json_logs.getvalue()
    rec = errors[0]
    assert rec["request_id"] == "chat-trace-42"
    assert rec["level"] == "ERROR" and rec["logger"] == "pipeline.service" and rec["time"]
    assert "RuntimeError: rules exploded" in rec["exc_info"]

    # the next request has its own id, and a log line made outside any request has none
    client.post("/v1/moderate", json={"text": "hello again"}, headers={"X-Request-Id": "chat-trace-43"})
    logging.getLogger("heron.test").warning("between requests")
    recs = lines(json_logs)
    assert [r.get("request_id") for r in recs if r["message"] == "scorer rules failed"] == [
        "chat-trace-42", "chat-trace-43"]
    assert "request_id" not in next(r for r in recs if r["message"] == "between requests")


def test_requests_without_a_usable_id_get_a_new_one(api: Any) -> None:
    client, _ = api
    ids = [client.get("/healthz").headers["X-Request-Id"] for _ in range(2)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and ids[0] != ids[1]
    for bad in ("has space", "x" * 129, "semi;colon", ""):
        got = client.get("/healthz", headers={"X-Request-Id": bad}).headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{32}", got), (bad, got)
    ok = "0af7651916cd43dd8448eb211c80319c-b7ad6b71:01.x_y"
    assert client.get("/healthz", headers={"X-Request-Id": ok}).headers["X-Request-Id"] == ok


def test_refusals_before_the_route_carry_the_id_too(api: Any) -> None:
    client, _ = api
    r = client.post("/v1/moderate", content=b'{"text": "' + b"a" * 30_000 + b'"}',
                    headers={"Content-Type": "application/json", "X-Request-Id": "big-1"})
    assert r.status_code == 413 and r.headers["X-Request-Id"] == "big-1"
    r = client.post("/v1/moderate", json={"text": "hi"}, headers={"Authorization": "Bearer hk_nope",
                                                                  "X-Request-Id": "nokey-1"})
    assert r.status_code == 401 and r.headers["X-Request-Id"] == "nokey-1"


def test_log_context_sets_restores_and_hands_over_ids() -> None:
    assert current_ids() == {}
    with log_context(request_id="r1", tenant_id="t1"):
        with log_context(message_id="m1", tenant_id=None):  # None leaves tenant_id as it was
            assert current_ids() == {"request_id": "r1", "message_id": "m1", "tenant_id": "t1"}
        assert current_ids() == {"request_id": "r1", "tenant_id": "t1"}
    assert current_ids() == {}
    with pytest.raises(TypeError, match="request_idd"):
        with log_context(request_idd="typo"):
            pass


def test_text_lines_name_the_ids_after_the_message() -> None:
    record = logging.LogRecord("heron.x", logging.INFO, __file__, 1, "decided %s", ("m1",), None)
    with log_context(request_id="r1", message_id="m1"):
        ContextFilter().filter(record)
    line = TextFormatter().format(record)
    assert line.endswith("INFO heron.x: decided m1 [request_id=r1 message_id=m1]")


def test_log_format_setting() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert resolve_format("auto", Tty()) == "text" and resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("text", io.StringIO()) == "text"
    with pytest.raises(ValueError, match="auto, json or text"):
        resolve_format("yaml")
    config = logging_config(json=True, level="debug")
    assert config["root"]["level"] == "DEBUG" and config["handlers"]["stderr"]["filters"] == ["ids"]
