"""Every documented limit holds end to end: the schema, the validation and the database agree.

Walks every string field of every JSON request body in the OpenAPI document. At its documented
maxLength the request must succeed (and be stored: on PostgreSQL a value longer than its varchar
column would be a 500), and one character more must be a 422 naming the field. A string field
without a documented maximum fails the walk, and so does a field no base body below covers, so
a new field cannot skip it. Runs on SQLite and PostgreSQL, because only PostgreSQL enforces
varchar widths.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from api.schemas import EXAMPLE_MESSAGE
from pipeline.settings import Settings

GUILD = "guild-1"
KEY = object()  # stands for "any key" of a dict (additionalProperties) in a field path

Path = tuple[Any, ...]

LISTS = {
    "keywords": {"toxicity": ["idiot"]},
    "regexes": {"spam": [r"free\s+nitro"]},
    "allowlist": ["scunthorpe"],
    "blocked_links": ["evil.example"],
}
POLICY = {
    "thresholds": {"toxicity": [{"threshold": 0.5, "action": "flag"}]},
    "exempt_roles": ["mod"],
    "exempt_channels": ["staff"],
}
MESSAGE = {
    **EXAMPLE_MESSAGE,
    "guild_id": GUILD,
    "context": {
        "reply_to_id": "m-1",
        "reply_to_text": "hello",
        "thread_id": "t-1",
        "previous_texts": ["hi"],
    },
}
WITH_URL = {
    **MESSAGE,
    "attachments": [
        {"url": "https://cdn.example/a.png", "content_type": "image/png", "filename": "a.png"},
    ],
}
WITH_BYTES = {**MESSAGE, "attachments": [{"content_base64": "aGVsbG8=", "content_type": "text/plain"}]}

# Valid bodies per operation that between them contain every field of its schema.
BASES: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("post", "/v1/moderate"): [WITH_URL, WITH_BYTES],
    ("post", "/v1/messages"): [WITH_URL, WITH_BYTES],
    ("put", "/v1/guilds/{guild_id}"): [{"policy": POLICY, "lists": LISTS}],
    ("put", "/v1/guilds/{guild_id}/policy"): [POLICY],
    ("put", "/v1/guilds/{guild_id}/lists"): [LISTS],
    ("post", "/v1/guilds/{guild_id}/lists/blocked_links"): [{"add": ["evil.example"], "remove": ["gone.example"]}],
    ("put", "/v1/webhook"): [{"url": "http://127.0.0.1:9/hook"}],
    ("post", "/v1/decisions/{decision_id}/revisions"): [
        {"action": "allow", "reason": "a moderator looked", "actor": "m"}
    ],
    ("post", "/v1/banks"): [{"name": "limits-bank", "category": "spam", "action": "block"}],
    ("post", "/v1/banks/{name}/content"): [{"entries": [{"hash": "ab" * 32, "label": "x"}]}],
    ("post", "/v1/banks/{name}/content/remove"): [{"hashes": ["ab" * 32]}],
    ("post", "/v1/banks/{name}/import"): [{"csv": "hash,label\n" + "cd" * 32 + ",y\n"}],
}
BANK = "limits-bank"
DECISION = "limits-decision"

# Review routes: each verdict or appeal uses up its item or decision, so these bodies and URLs are
# made fresh for every request (`prepare`); FRESH in a body stands for a new decision's id.
FRESH = "fresh"
BASES.update({
    ("post", "/v1/review/items/{item_id}/resolve"): [{"verdict": "uphold", "categories": {"toxicity": True},
                                                      "note": "n", "reason": "violates_policy",
                                                      "author_action": "timeout"}],
    ("post", "/v1/review/items/{item_id}/escalate"): [{"reason": "policy_unclear", "note": "n"}],
    ("post", "/v1/review/bulk"): [{"item_ids": [1], "cluster_id": "c", "verdict": "overturn",
                                   "reason": "false_positive", "note": "n"}],
    ("put", "/v1/review/clusters/{cluster_id}"): [{"message_ids": ["m"]}],
    ("post", "/v1/reports"): [{"message_id": FRESH, "reporter": "u", "reason": "r", "message": WITH_URL},
                              {"message_id": FRESH, "reporter": "u", "reason": "r", "message": WITH_BYTES}],
    ("post", "/v1/appeals"): [{"decision_id": FRESH, "appellant": "a", "reason": "r"}],
})
_fresh = iter(range(10**6))


def _decided(client: Any, rt: Any, message_id: str, text: str = "hello", guild: str | None = None) -> str:
    if client.get(f"/v1/decisions/{message_id}").status_code != 200:
        client.post("/v1/moderate", json={"id": message_id, "text": text, "guild_id": guild})
        rt.writer.flush()
    return message_id


def _held_item(client: Any, rt: Any) -> int:
    """A new item in the review queue (a message the review-limits guild holds)."""
    import time

    guild = "review-limits"
    client.put(f"/v1/guilds/{guild}", json={"lists": {"keywords": {"toxicity": ["idiot"]}}, "policy": {
        "thresholds": {"toxicity": [{"threshold": 0.5, "action": "hold_for_review"}]}}})
    mid = _decided(client, rt, f"held-{next(_fresh)}", "you idiot", guild)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        items = [i for i in client.get("/v1/review/items", params={"guild_id": guild}).json()["items"]
                 if i["message_id"] == mid]
        if items:
            return int(items[0]["id"])
        time.sleep(0.05)
    raise AssertionError(f"no review item for {mid}")


def prepare(client: Any, rt: Any, method: str, template: str, url: str, body: Any) -> tuple[str, Any]:
    """The URL and body of one request, with whatever it uses up made fresh."""
    if "{item_id}" in template:
        url = template.replace("{item_id}", str(_held_item(client, rt)))
    url = url.replace("{cluster_id}", "cluster-1")
    body = copy.deepcopy(body)
    if template.endswith("/lists/blocked_links") and body.get("remove"):
        # Removing an entry the guild does not have is a 404: put what is removed there first (an
        # entry one past the limit is refused by validation, before any lookup).
        ok = [e for e in body["remove"] if isinstance(e, str) and len(e) <= 2048]
        if ok:
            assert client.post(url, json={"add": ok}).status_code == 200
    for key in ("message_id", "decision_id"):
        if template in ("/v1/reports", "/v1/appeals") and isinstance(body.get(key), str):
            if body[key] == FRESH:
                body[key] = f"limits-{next(_fresh)}"
            if len(body[key]) <= 128:  # one past the limit is refused before any lookup
                _decided(client, rt, body[key])
    return url, body




def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def string_fields(spec: dict[str, Any], schema: dict[str, Any], path: Path = ()) -> Iterator[tuple[Path, dict]]:
    """(path, schema) of every free-text string in a body schema (not enums, not date-times)."""
    schema = _resolve(spec, schema)
    for branch in schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", []):
        if _resolve(spec, branch).get("type") != "null" and "required" not in branch:
            yield from string_fields(spec, branch, path)
    kind = schema.get("type")
    if kind == "string" and "enum" not in schema and "const" not in schema and schema.get("format") != "date-time":
        yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from string_fields(spec, sub, (*path, name))
    if isinstance(schema.get("additionalProperties"), dict):
        yield from string_fields(spec, schema["additionalProperties"], (*path, KEY))
    if kind == "array" and "items" in schema:
        yield from string_fields(spec, schema["items"], (*path, 0))


def _has(body: Any, path: Path) -> bool:
    for step in path:
        if step is KEY:
            if not isinstance(body, dict) or not body:
                return False
            body = next(iter(body.values()))
        elif isinstance(step, int):
            if not isinstance(body, list) or not body:
                return False
            body = body[0]
        else:
            if not isinstance(body, dict) or step not in body:
                return False
            body = body[step]
    return isinstance(body, str)


def _set(body: Any, path: Path, value: str) -> None:
    for step in path[:-1]:
        body = next(iter(body.values())) if step is KEY else body[step]
    last = path[-1]
    if last is KEY:
        last = next(iter(body))
    body[last] = value


def value_of_length(path: Path, n: int) -> str:
    """A valid string of exactly n characters for the field at `path`."""
    name = next((p for p in reversed(path) if isinstance(p, str)), "")
    if name == "url":
        prefix = "http://127.0.0.1:9/" if len(path) == 1 else "https://cdn.example/"
        return prefix + "a" * (n - len(prefix))
    if name in ("hash", "hashes") and n == 64:
        return "a" * n  # a valid PDQ hash (hex); other lengths are refused by length
    if name == "csv":  # a header, then rows of hash[,label] filling exactly n characters
        head, row = "hash\n", "ab" * 32
        rest = n - len(head) - len(row)
        rows, label = divmod(rest, len(row) + 1)
        return head + (row + "\n") * rows + row + ("," + "a" * (label - 1) if label else "")
    if name in ("add", "remove"):  # a blocked link entry: a domain with a path prefix
        prefix = "evil.example/"
        return prefix + "a" * (n - len(prefix))
    if name == "content_base64":
        return "A" * n  # 'AAAA' is valid base64 of three zero bytes; n over the limit is still refused by length
    return "a" * n


def _field(path: Path) -> str:
    return ".".join("<key>" if p is KEY else str(p) for p in path)


def _concrete(body: Any, path: Path) -> str:
    """The field as the API names it in error details (dict keys filled in from `body`)."""
    names = []
    for step in path:
        if step is KEY:
            step = next(iter(body))
        names.append(str(step))
        body = body[step]
    return ".".join(names)


def _send(client: Any, rt: Any, method: str, template: str, url: str, body: Any) -> Any:
    u, b = prepare(client, rt, method, template, url, body)
    return client.request(method, u, json=b)


def test_every_string_field_works_at_its_documented_maximum_and_not_one_past(make_api: Any, database_url: str) -> None:
    # Rate limits off: the walk sends hundreds of requests in a few seconds on a fast machine, and a
    # 429 is not what it checks (tests/api/test_ratelimit.py covers the limits).
    client, rt = make_api(database_url=database_url, max_body_bytes=Settings().max_body_bytes,
                          rate_limit_per_key="", rate_limit_per_guild="", rate_limit_other="")
    for guild in (GUILD, "a" * 128):  # the guild a message names at guild_id's maximum must exist
        assert client.put(f"/v1/guilds/{guild}", json={}).status_code == 200
    spec = client.get("/openapi.json").json()
    walked = 0
    for template, operations in spec["paths"].items():
        for method, op in operations.items():
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            if content is None:
                continue
            bases = BASES.get((method, template))
            assert bases, f"{method.upper()} {template} has a JSON body: add valid base bodies to BASES"
            url = template.replace("{guild_id}", GUILD).replace("{decision_id}", DECISION).replace("{name}", BANK)
            if "{decision_id}" in template and client.get(f"/v1/decisions/{DECISION}").status_code != 200:
                assert client.post("/v1/moderate", json={"id": DECISION, "text": "hello"}).status_code == 200
                rt.writer.flush()
            for base in bases:  # the base bodies themselves are valid
                r = _send(client, rt, method, template, url, base)
                assert r.status_code in (200, 201, 202), (method, url, r.text)
            for path, schema in string_fields(spec, content["schema"]):
                field = _field(path)
                limit = schema.get("maxLength")
                assert limit is not None, f"{method.upper()} {template}: {field} documents no maxLength"
                base = next((b for b in bases if _has(b, path)), None)
                assert base is not None, f"{method.upper()} {template}: no base body has {field}; extend BASES"

                at_max = copy.deepcopy(base)
                _set(at_max, path, value_of_length(path, limit))
                r = _send(client, rt, method, template, url, at_max)
                assert r.status_code in (200, 201, 202), (
                    f"{method.upper()} {template} {field} at {limit}: {r.text[:500]}"
                )

                over = copy.deepcopy(base)
                _set(over, path, value_of_length(path, limit + 1))
                r = _send(client, rt, method, template, url, over)
                assert r.status_code == 422, f"{method.upper()} {template} {field} at {limit + 1}: {r.text[:500]}"
                error = r.json()["error"]
                assert error["code"] == "validation_error"
                assert [d["field"] for d in error["details"]] == [_concrete(over, path)], error
                walked += 1
    assert walked >= 25  # every string field of the six bodies, not a silently empty walk
    # What was accepted at its maximum was stored, not just answered.
    hook = client.get("/v1/webhook").json()
    assert hook["url"] == value_of_length(("url",), 2048)
    audit = client.get("/v1/audit", params={"limit": 1000}).json()
    assert any(e["event"] == "webhook_registered" and len(e["subject"] or "") == 2048 for e in audit)


def test_a_webhook_url_that_grows_past_the_limit_when_normalised_is_refused(api: Any) -> None:
    client, _ = api
    url = "http://127.0.0.1:9/" + "é" * 1000  # 1,019 characters sent, 6,019 once percent-encoded
    r = client.put("/v1/webhook", json={"url": url})
    assert r.status_code == 422, r.text
    assert "2048" in r.json()["error"]["message"]
    assert client.get("/v1/webhook").status_code == 404


def test_the_largest_inline_attachment_fits_the_default_body_limit(make_api: Any) -> None:
    from pipeline.types import MAX_ATTACHMENT_BASE64_CHARS

    client, _ = make_api(max_body_bytes=Settings().max_body_bytes)
    body = {**MESSAGE, "guild_id": None, "attachments": [{"content_base64": "A" * MAX_ATTACHMENT_BASE64_CHARS}]}
    body["context"] = {"previous_texts": ["a" * 4000] * 5}
    assert client.post("/v1/moderate", json=body).status_code == 200
