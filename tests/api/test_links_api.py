"""Blocked links through the API: add and remove entries as new lists versions, used at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any


def _change(client: Any, guild: str, **body: list[str]) -> Any:
    return client.post(f"/v1/guilds/{guild}/lists/blocked_links", json=body)


def test_add_and_remove_blocked_links(api: Any) -> None:
    client, _ = api
    client.put("/v1/guilds/g1", json={"lists": {"keywords": {"spam": ["buy now"]}, "blocked_links": ["old.example"]}})
    r = _change(client, "g1", add=["https://Rival.Example/Join?x=1", "bit.ly/AbC"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["lists"]["blocked_links"] == ["old.example", "rival.example/join", "bit.ly/abc"]
    assert body["lists"]["keywords"] == {"spam": ["buy now"]} and body["lists_version"] == 2  # others kept
    d = client.post("/v1/moderate", json={"guild_id": "g1", "text": "come to rival.example/join/now"}).json()
    assert d["scores"]["scam"] == 1.0 and any("server-blocked" in x["text"] for x in d["reasons"])
    # another guild is unaffected
    client.put("/v1/guilds/g2", json={})
    d = client.post("/v1/moderate", json={"guild_id": "g2", "text": "come to rival.example/join/now"}).json()
    assert d["scores"]["scam"] < 1.0
    r = _change(client, "g1", remove=["rival.example/join"], add=["rival.example/join"])  # re-added: kept once
    assert r.json()["lists"]["blocked_links"] == ["old.example", "bit.ly/abc", "rival.example/join"]
    r = _change(client, "g1", remove=["OLD.example"])
    assert r.json()["lists"]["blocked_links"] == ["bit.ly/abc", "rival.example/join"]
    history = client.get("/v1/guilds/g1/history").json()
    assert [h["version"] for h in history if h["kind"] == "lists"] == [1, 2, 3, 4]


def test_bad_entries_and_unknown_removals_are_clear_errors(api: Any) -> None:
    client, _ = api
    client.put("/v1/guilds/g1", json={})
    r = _change(client, "g1", add=["file.unknowntld"])
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_link_entry"
    assert "public suffix" in r.json()["error"]["message"]
    r = _change(client, "g1", remove=["never.example"])
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_link_entry"
    r = _change(client, "nope", add=["evil.example"])
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_guild"
    r = client.post("/v1/guilds/g1/lists/blocked_links", json={"add": ["evil.example"], "extra": 1})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_field"
    assert client.get("/v1/guilds/g1").json()["lists_version"] == 0  # nothing was written


def test_concurrent_additions_are_all_kept(api: Any) -> None:
    client, _ = api
    client.put("/v1/guilds/g1", json={})
    entries = [f"evil{i}.example" for i in range(8)]
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda e: _change(client, "g1", add=[e]).status_code, entries))
    assert all(c in (200, 409) for c in codes)
    kept = set(client.get("/v1/guilds/g1").json()["lists"]["blocked_links"])
    ok = {e for e, c in zip(entries, codes, strict=True) if c == 200}
    assert ok <= kept and kept <= set(entries)  # no acknowledged addition was lost
