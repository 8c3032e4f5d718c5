"""Bad input gets a 4xx with a machine-readable reason: never a 500, never a silent drop."""

from __future__ import annotations

from typing import Any

import pytest


def post(client: Any, path: str, content: bytes, ctype: str = "application/json") -> Any:
    return client.post(path, content=content, headers={"Content-Type": ctype})


CASES: list[tuple[str, bytes, str, int, str]] = [
    ("malformed_json", b'{"text": "hi"', "application/json", 400, "malformed_json"),
    ("invalid_utf8", b'{"text": "\xff\xfe"}', "application/json", 400, "invalid_utf8"),
    ("unknown_field", b'{"text": "hi", "colour": "red"}', "application/json", 422, "unknown_field"),
    ("empty_message", b'{"guild_id": "g"}', "application/json", 422, "validation_error"),
    ("text_too_long", b'{"text": "' + b"a" * 4001 + b'"}', "application/json", 422, "validation_error"),
    ("body_too_large", b'{"text": "' + b"a" * 30_000 + b'"}', "application/json", 413, "body_too_large"),
    ("not_json_media_type", b"text=hi", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ("bad_author_field", b'{"text": "hi", "author": {"roles": "admin"}}', "application/json", 422, "validation_error"),
    ("bad_timestamp", b'{"text": "hi", "timestamp": "yesterday"}', "application/json", 422, "validation_error"),
    ("unknown_guild", b'{"text": "hi", "guild_id": "nope"}', "application/json", 404, "unknown_guild"),
    ("array_body", b'[{"text": "hi"}]', "application/json", 422, "validation_error"),
]


@pytest.mark.parametrize(("name", "body", "ctype", "status", "code"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("path", ["/v1/moderate", "/v1/messages"])
def test_bad_input_gets_a_clear_4xx(api, golden, name, body, ctype, status, code, path) -> None:  # type: ignore[no-untyped-def]
    client, rt = api
    r = post(client, path, body, ctype)
    assert r.status_code == status, r.text
    payload = r.json()
    assert payload["error"]["code"] == code
    assert payload["error"]["message"]
    if path == "/v1/moderate":
        golden(f"errors/{name}", {"status": r.status_code, "body": payload})
    assert rt.store.decisions.count() == 0


def test_keys_are_required_and_checked(api, golden) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    r = client.post("/v1/moderate", json={"text": "hi"}, headers={"Authorization": ""})
    assert r.status_code == 401
    golden("errors/missing_api_key", {"status": r.status_code, "body": r.json()})
    r = client.post("/v1/moderate", json={"text": "hi"}, headers={"Authorization": "Bearer hk_nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    for open_path in ("/healthz", "/readyz", "/openapi.json", "/docs", "/metrics"):
        assert client.get(open_path, headers={"Authorization": ""}).status_code == 200, open_path
    for closed in ("/v1/decisions/x", "/v1/webhook", "/v1/guilds/g", "/v1/audit"):
        assert client.get(closed, headers={"Authorization": ""}).status_code == 401, closed


def test_invalid_policy_and_regex_are_refused_with_reasons(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    r = client.put("/v1/guilds/g1", json={"policy": {"thresholds": {"nsfw": [{"threshold": 0.5, "action": "flag"}]}}})
    assert r.status_code == 422 and "unknown category" in r.json()["error"]["message"]
    r = client.put("/v1/guilds/g1", json={"lists": {"regexes": {"spam": ["(a+)+$"]}}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_regex"
    r = client.put(
        "/v1/guilds/g1", json={"policy": {"thresholds": {"toxicity": [{"threshold": 1.5, "action": "flag"}]}}}
    )
    assert r.status_code == 422
    assert client.get("/v1/guilds/g1").status_code == 404  # nothing half-created


def test_unknown_routes_and_methods_are_json_errors(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get("/v1/moderate")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
