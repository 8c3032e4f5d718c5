"""Error codes a client can branch on: each documented, each from one mapping."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from api.errors import _HTTP_CODES, HTTP_STATUS
from pipeline import errors

REPO = Path(__file__).resolve().parents[2]


def _post(client: Any, path: str, content: bytes, headers: dict[str, str]) -> Any:
    return client.post(path, content=content, headers=headers)


JSON = {"Content-Type": "application/json"}
DEEP = b"[" * 10_000 + b"]" * 10_000

CASES: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("json_too_deep", b'{"text": ' + DEEP + b"}", JSON, 400, "json_too_deep"),
    ("number_too_long", b'{"text": "hi", "author": {"bot": ' + b"1" * 5000 + b"}}", JSON, 400, "malformed_json"),
    ("no_content_type", b'{"text": "hi"}', {"Content-Type": ""}, 415, "unsupported_media_type"),
    ("text_plain", b'{"text": "hi"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    (
        "javascript_attachment",
        b'{"text": "hi", "attachments": [{"url": "javascript:alert(1)"}]}',
        JSON,
        422,
        "validation_error",
    ),
    ("non_url_attachment", b'{"text": "hi", "attachments": [{"url": "cat.png"}]}', JSON, 422, "validation_error"),
    (
        "invalid_base64_attachment",
        b'{"text": "hi", "attachments": [{"content_base64": "not base64!"}]}',
        JSON,
        422,
        "validation_error",
    ),
    ("numeric_timestamp", b'{"text": "hi", "timestamp": 1700000000}', JSON, 422, "validation_error"),
]


@pytest.mark.parametrize(("name", "body", "headers", "status", "code"), CASES, ids=[c[0] for c in CASES])
def test_bad_bodies_get_documented_codes(
    make_api: Any, golden: Any, name: str, body: bytes, headers: dict, status: int, code: str
) -> None:
    client, rt = make_api(max_body_bytes=1_000_000)  # the default: DEEP is 20 kB
    for path in ("/v1/moderate", "/v1/messages"):
        r = _post(client, path, body, headers)
        assert r.status_code == status, (path, r.text)
        assert r.json()["error"]["code"] == code
    golden(f"errors/{name}", {"status": r.status_code, "body": r.json()})
    assert rt.store.decisions.count() == 0


def test_a_bad_attachment_names_the_field(api: Any) -> None:
    client, _ = api
    r = client.post("/v1/moderate", json={"text": "hi", "attachments": [{"url": "javascript:alert(1)"}]})
    assert r.json()["error"]["details"][0]["field"] == "attachments.0.url"
    assert "absolute http or https URL" in r.json()["error"]["message"]
    good = {"text": "hi", "attachments": [{"url": "https://cdn.example/cat.png"}, {"content_base64": "aGk="}]}
    assert client.post("/v1/moderate", json=good).status_code == 200


def test_405_lists_every_method_of_the_path(api: Any) -> None:
    client, _ = api
    r = client.post("/v1/webhook")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers["allow"] == "DELETE, GET, PUT"
    r = client.options("/v1/guilds/g1")
    assert r.status_code == 405 and r.headers["allow"] == "GET, PUT"


def test_core_errors_map_to_http_once(api: Any) -> None:
    """A core error reaches the client with its class's status, its code and, when it has one,
    Retry-After; the route raising it knows nothing about HTTP."""
    client, _ = api
    app = client.app
    raised: list[errors.HeronError] = [
        errors.NotFound("no such thing", code="decision_not_found"),
        errors.Conflict("busy"),
        errors.InvalidInput("bad", details=[{"field": "x", "message": "bad"}]),
        errors.RateLimited("slow down", retry_after=1.2),
        errors.Unavailable("database down", retry_after=5),
        errors.Unauthenticated("who are you"),
    ]

    def make(exc: errors.HeronError) -> Any:
        async def route() -> None:
            raise exc

        return route

    for i, exc in enumerate(raised):
        app.add_api_route(f"/test-error/{i}", make(exc))
    expected = [
        (404, "decision_not_found", None),
        (409, "conflict", None),
        (422, "validation_error", None),
        (429, "rate_limited", "2"),
        (503, "unavailable", "5"),
        (401, "unauthorized", None),
    ]
    for i, (status, code, retry_after) in enumerate(expected):
        r = client.get(f"/test-error/{i}")
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code
        assert r.json()["error"]["message"] == raised[i].message
        assert r.headers.get("retry-after") == retry_after


def _codes_in_source() -> set[str]:
    """Every error code a route, dependency, middleware or handler can put in a response."""
    found: set[str] = set()
    for path in [*(REPO / "api").rglob("*.py"), *(REPO / "pipeline").rglob("*.py")]:
        text = path.read_text()
        found |= set(re.findall(r'\bcode\s*=\s*"([a-z0-9_]+)"', text))
        found |= set(re.findall(r'\bcode\s*=\s*"[a-z0-9_]+" if .* else "([a-z0-9_]+)"', text))
        found |= set(re.findall(r'ApiError\(\s*\d{3},\s*"([a-z0-9_]+)"', text))
        found |= set(re.findall(r'_reject\(\s*send,\s*\d{3},\s*"([a-z0-9_]+)"', text))
        found |= set(re.findall(r'error_response\(\s*\d{3},\s*"([a-z0-9_]+)"', text))
        found |= set(re.findall(r'return\s+\(?\s*"([a-z0-9_]+)",\s*"', text))  # _validation_details
    found |= set(_HTTP_CODES.values()) | {"client_error", "server_error", "validation_error", "internal_error"}
    found |= {cls.code for cls in HTTP_STATUS} | {errors.UnsafeURL.code}
    return found


def test_every_code_the_api_can_emit_is_documented() -> None:
    documented = set(re.findall(r"`([a-z0-9_]+)`", (REPO / "docs" / "errors.md").read_text()))
    codes = _codes_in_source()
    assert {"json_too_deep", "unsafe_webhook_url", "unsupported_media_type", "unknown_guild"} <= codes
    missing = sorted(codes - documented)
    assert not missing, f"add these codes to docs/errors.md: {missing}"
