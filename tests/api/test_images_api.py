"""Images through the HTTP API on the embedded runtime: bank routes, the sync path answering on
text with image signals pending and the complete decision following as a revision by webhook,
the async path deciding once with image signals, and retroactive revisions after a bank grows.

Pictures: the staged public-domain photos (read in place), re-encoded here.
"""

from __future__ import annotations

import base64
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.images.pdq import hash_frame

PHOTOS = Path("/work/shared/data/images_public_domain")
SCORERS = ["rules", "links", "image_hash"]


def wait(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def photo(name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(PHOTOS / name), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def jpeg_b64(rgb: np.ndarray, quality: int = 70, scale: float = 0.5) -> str:
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return base64.b64encode(buf.tobytes()).decode()


def image_msg(mid: str, rgb: np.ndarray, text: str = "") -> dict[str, Any]:
    return {"id": mid, "text": text, "attachments": [{"content_base64": jpeg_b64(rgb), "content_type": "image/jpeg"}]}


def test_bank_routes(make_api: Any) -> None:
    client, _ = make_api(scorers=SCORERS, max_body_bytes=1_000_000)
    r = client.post("/v1/banks", json={"name": "known", "category": "sexual", "action": "block"})
    assert r.status_code == 201 and r.json() == {
        "name": "known",
        "category": "sexual",
        "action": "block",
        "version": 0,
        "size": 0,
    }
    assert (
        client.post("/v1/banks", json={"name": "known", "category": "sexual"}).json()["error"]["code"] == "bank_exists"
    )
    assert client.post("/v1/banks", json={"name": "x", "category": "nope"}).status_code == 422
    assert client.get("/v1/banks/none").json()["error"]["code"] == "unknown_bank"
    h = hash_frame(photo("coffee.png"))[0]
    r = client.post(
        "/v1/banks/known/content",
        json={
            "entries": [
                {"hash": h, "label": "by hash"},
                {"hash": hash_frame(photo("horse.png"))[0].upper(), "label": "by image"},
            ]
        },
    )
    assert r.status_code == 200 and r.json() == {"added": 2, "revised": 0}
    bad = client.post("/v1/banks/known/content", json={"entries": [{"hash": "zz" * 32}]})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_hash"
    assert client.post("/v1/banks/none/content", json={"entries": [{"hash": h}]}).status_code == 404
    export = client.get("/v1/banks/known/export")
    assert export.headers["content-type"].startswith("text/csv") and export.text.count("\n") == 3
    client.post("/v1/banks", json={"name": "copy", "category": "scam"})
    assert client.post("/v1/banks/copy/import", json={"csv": export.text}).json()["added"] == 2
    assert (
        client.post("/v1/banks/copy/import", json={"csv": "hash\nnot-a-hash\n"}).json()["error"]["code"]
        == "invalid_csv"
    )
    assert [e["label"] for e in client.get("/v1/banks/copy/content").json()] == ["by hash", "by image"]
    assert client.post("/v1/banks/copy/content/remove", json={"hashes": [h]}).json() == {"removed": 1}
    assert {b["name"]: b["size"] for b in client.get("/v1/banks").json()} == {"copy": 1, "known": 2}
    assert client.delete("/v1/banks/copy").status_code == 204
    assert [b["name"] for b in client.get("/v1/banks").json()] == ["known"]


def test_sync_answers_on_text_then_revises_with_the_image(make_api: Any, receiver: Any) -> None:
    client, rt = make_api(scorers=SCORERS, max_body_bytes=1_000_000)
    receiver.secret = client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
    client.post("/v1/banks", json={"name": "bad", "category": "violence", "action": "block"})
    cat = photo("chelsea.png")
    client.post("/v1/banks/bad/content", json={"entries": [{"hash": hash_frame(cat)[0], "label": "known scam"}]})

    first = client.post("/v1/moderate", json=image_msg("m1", cat, "check this out")).json()
    assert first["status"] == "partial" and first["pending_signals"] == ["image_hash"]
    assert first["action"] == "allow" and first["revision"] == 1 and first["missing_signals"] == []
    events = wait(lambda: (e := receiver.events()) and len(e) >= 2 and e)
    assert [e["revision"] for e in events] == [1, 2]
    final = events[1]["decision"]
    assert final["status"] == "complete" and final["action"] == "block" and final["id"] == first["id"]
    assert "known scam" in str(final["reasons"]) and final["model_versions"]["image_hash"] == "pdq-1"
    assert events[1]["cause"] == "media_verdict"
    stored = client.get("/v1/decisions/m1").json()
    assert stored["revision"] == 2 and stored["action"] == "block"
    time.sleep(0.5)
    assert len(receiver.events()) == 2  # no duplicate decision
    # a text-only message is complete at once
    assert client.post("/v1/moderate", json={"text": "hello"}).json()["status"] == "complete"


def test_async_path_decides_once_with_image_signals_and_retro_revises(make_api: Any, receiver: Any) -> None:
    client, rt = make_api(scorers=SCORERS, max_body_bytes=1_000_000)
    receiver.secret = client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
    cat, rocket = photo("chelsea.png"), photo("rocket.jpg")
    assert client.post("/v1/messages", json=image_msg("a1", cat)).status_code == 202
    assert client.post("/v1/messages", json=image_msg("a2", rocket)).status_code == 202
    first = wait(lambda: (e := receiver.events()) and len(e) >= 2 and e)
    by_id = {e["decision"]["message_id"]: e["decision"] for e in first}
    assert {m: d["action"] for m, d in by_id.items()} == {"a1": "allow", "a2": "allow"}
    assert all(d["status"] == "complete" and "image_hash" in d["model_versions"] for d in by_id.values())
    assert by_id["a1"]["media"][0]["format"] == "jpeg"
    # the bank grows later: the earlier post of the cat is found and its decision revised
    client.post("/v1/banks", json={"name": "late", "category": "violence", "action": "block"})
    r = client.post("/v1/banks/late/content", json={"entries": [{"hash": hash_frame(cat)[0]}]})
    assert r.json() == {"added": 1, "revised": 1}
    events = wait(lambda: (e := receiver.events()) and len(e) >= 3 and e)
    assert events[2]["decision"]["message_id"] == "a1" and events[2]["revision"] == 2
    assert events[2]["decision"]["action"] == "block" and events[2]["cause"] == "bank_match"
    # a hostile upload is an attachment error in the decision, never a crash or a silent allow
    ihdr = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 2, 0, 0, 0)  # claims 3.6 gigapixels
    chunks = [(b"IHDR", ihdr), (b"IDAT", zlib.compress(b"\x00" * 64)), (b"IEND", b"")]
    png = b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)) for kind, body in chunks
    )
    bomb = base64.b64encode(png).decode()
    client.post("/v1/messages", json={"id": "a3", "text": "", "attachments": [{"content_base64": bomb}]})
    d = wait(
        lambda: client.get("/v1/decisions/a3").json() if client.get("/v1/decisions/a3").status_code == 200 else None
    )
    assert "too many pixels" in d["media"][0]["error"] and "image_hash" in d["missing_signals"]
    assert d["action"] == "hold_for_review"


def test_review_thumbnails_by_api(make_api: Any) -> None:
    """The thumbnail kept for a held message, as image bytes, by decision id (tenant key) and by
    review item (key or reviewer session, same visibility as the item); every 404 says why."""
    from fastapi.testclient import TestClient

    from tests.api.test_review_queue import login_client

    client, rt = make_api(scorers=SCORERS, max_body_bytes=1_000_000)
    # the guilds have a person look at violence rather than block it: matches are held for review
    policy = {"thresholds": {"violence": [{"threshold": 0.5, "action": "hold_for_review"}]}}
    for guild in ("g1", "g2"):
        assert client.put(f"/v1/guilds/{guild}", json={"policy": policy}).status_code in (200, 201)
    client.post("/v1/banks", json={"name": "watch", "category": "violence"})
    cat = photo("chelsea.png")
    client.post("/v1/banks/watch/content", json={"entries": [{"hash": hash_frame(cat)[0]}]})
    zip_att = {"content_base64": base64.b64encode(b"PK\x03\x04 not an image").decode(), "content_type": "image/png"}
    held = {**image_msg("held", cat), "guild_id": "g1"}
    held["attachments"].append(zip_att)
    assert client.post("/v1/messages", json=held).status_code == 202
    fine = {**image_msg("fine", photo("rocket.jpg")), "guild_id": "g1"}
    assert client.post("/v1/messages", json=fine).status_code == 202
    decided = wait(lambda: all(client.get(f"/v1/decisions/{m}").status_code == 200 for m in ("held", "fine")))
    assert decided and client.get("/v1/decisions/held").json()["action"] == "hold_for_review"

    r = client.get("/v1/decisions/held/attachments/0/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
    assert r.headers["cache-control"] == "private, no-store" and r.headers["x-content-type-options"] == "nosniff"
    thumb = cv2.cvtColor(cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert max(thumb.shape[:2]) == 160  # HERON_IMAGE_THUMBNAIL_PX
    # it is the picture that was sent: the same photo by its perceptual hash
    assert bin(int(hash_frame(thumb)[0], 16) ^ int(hash_frame(cat)[0], 16)).count("1") <= 31
    decision_id = client.get("/v1/decisions/held").json()["id"]
    assert client.get(f"/v1/decisions/{decision_id}/attachments/0/thumbnail").content == r.content

    def error(path: str, c: Any = client) -> tuple[int, str, str]:
        resp = c.get(path)
        body = resp.json()["error"]
        return resp.status_code, body["code"], body["message"]

    status, code, why = error("/v1/decisions/held/attachments/1/thumbnail")
    assert (status, code) == (404, "thumbnail_not_kept") and "could not be read (unsupported format: zip" in why
    status, code, why = error("/v1/decisions/held/attachments/2/thumbnail")
    assert (status, code) == (404, "attachment_not_found") and "has 2 attachments" in why
    status, code, why = error("/v1/decisions/fine/attachments/0/thumbnail")
    assert (status, code) == (404, "thumbnail_not_kept") and "held for review" in why and "allow" in why
    assert error("/v1/decisions/nope/attachments/0/thumbnail")[:2] == (404, "decision_not_found")
    assert client.get("/v1/decisions/held/attachments/10/thumbnail").status_code == 422
    # another tenant's key cannot tell the decision exists
    _, other_key = rt.store.tenants.create_api_key("globex")
    other = TestClient(client.app, headers={"Authorization": f"Bearer {other_key}"})
    assert error("/v1/decisions/held/attachments/0/thumbnail", other)[:2] == (404, "decision_not_found")

    # the review desk: the same bytes for whoever may see the item, 404 for whoever may not
    items = wait(lambda: [i for i in client.get("/v1/review/items").json()["items"] if i["message_id"] == "held"])
    path = f"/v1/review/items/{items[0]['id']}/attachments"
    assert client.get(f"{path}/0/thumbnail").content == r.content
    assert error(f"{path}/1/thumbnail")[:2] == (404, "thumbnail_not_kept")
    tenant = rt.store.tenants.ensure("acme")
    rt.store.reviewers.create(tenant, "mod-g1", "correct horse battery", "moderator", ["g1"])
    rt.store.reviewers.create(tenant, "mod-g2", "correct horse battery", "moderator", ["g2"])
    assert login_client(client, "mod-g1").get(f"{path}/0/thumbnail").content == r.content
    assert error(f"{path}/0/thumbnail", login_client(client, "mod-g2"))[:2] == (404, "review_item_not_found")
    assert error(f"{path}/0/thumbnail", other)[:2] == (404, "review_item_not_found")
    assert TestClient(client.app).get(f"{path}/0/thumbnail").status_code == 401


def test_held_message_with_an_image_always_gets_its_complete_decision(make_api: Any) -> None:
    """The sync answer holds on text and defers the image; the held message is stored for the
    reviewer by the decision writer, which can win the race with the async hand-over. Either way
    the image must be scored and the decision completed (it once stayed `partial` for ever)."""

    def png(width: int) -> bytes:
        img = np.zeros((40, width, 3), np.uint8)
        img[:, : width // 2] = (20, 40, 200)
        return bytes(cv2.imencode(".png", img)[1])

    client, _ = make_api(scorers=["rules", "links", "image_hash"])
    policy = {"thresholds": {"toxicity": [{"threshold": 0.5, "action": "hold_for_review"}]}}
    client.put("/v1/guilds/g1", json={"policy": policy, "lists": {"keywords": {"toxicity": ["idiot"]}}})
    ids = []
    for n in range(8):
        r = client.post(
            "/v1/moderate",
            json={
                "id": f"held-{n}",
                "guild_id": "g1",
                "text": "you are an idiot",
                "attachments": [
                    {"content_base64": base64.b64encode(png(40 + n)).decode(), "content_type": "image/png"}
                ],
            },
        )
        assert r.status_code == 200 and r.json()["status"] == "partial", r.text
        ids.append(r.json()["id"])
    deadline = time.monotonic() + 60
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        pending = {i for i in pending if client.get(f"/v1/decisions/{i}").json().get("status") != "complete"}
        time.sleep(0.2)
    assert not pending, f"never completed: {sorted(pending)}"
    for i in ids:
        d = client.get(f"/v1/decisions/{i}").json()
        assert d["action"] == "hold_for_review" and "image_hash" in d["model_versions"]


def test_videos_and_documents_are_listed_not_scanned_and_not_held(make_api: Any) -> None:
    """A clip or a PDF next to a friendly text is allowed under the platform default (fail closed):
    no scorer reads videos, so that is not a failed check. The decision says what was not scanned.
    A corrupt picture beside it still holds the message."""
    client, _rt = make_api(scorers=SCORERS, max_body_bytes=1_000_000)
    mp4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + b"\x00" * 4000
    pdf = b"%PDF-1.7\n" + b"\x00" * 2000
    attachments = [
        {"content_base64": base64.b64encode(mp4).decode(), "content_type": "video/mp4"},
        {"content_base64": base64.b64encode(pdf).decode(), "filename": "notes.pdf"},
    ]
    assert (
        client.post(
            "/v1/messages", json={"id": "v1", "text": "clip from last night", "attachments": attachments}
        ).status_code
        == 202
    )

    def decided(mid: str) -> Any:
        r = client.get(f"/v1/decisions/{mid}")
        return r.json() if r.status_code == 200 and r.json().get("status") == "complete" else None

    d = wait(lambda: decided("v1"))
    assert d["action"] == "allow" and not d["missing_signals"], d
    assert "not scanned: video" in d["media"][0]["not_scanned"] and d["media"][0]["error"] is None
    assert "not scanned: pdf" in d["media"][1]["not_scanned"]
    broken = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x00" * 300).decode()  # a JPEG header, then nothing
    mixed = attachments[:1] + [{"content_base64": broken, "content_type": "image/jpeg"}]
    client.post("/v1/messages", json={"id": "v2", "text": "clip and a pic", "attachments": mixed})
    d2 = wait(lambda: decided("v2"))
    assert d2["action"] == "hold_for_review" and "image_hash" in d2["missing_signals"]
    assert d2["media"][1]["error"] and d2["media"][0]["not_scanned"]
