"""Image intake: decoding under limits and hostile files, and fetching URLs under the SSRF guard.

Every image is generated here (noise, gradients, shapes); nothing is fetched from outside.
"""

from __future__ import annotations

import base64
import io
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.features import DecodeExtractor, prepare
from pipeline.features.media import MediaExtractor
from pipeline.features.stage import FeatureStage
from pipeline.images.decode import DecodeLimits, MediaRejected, decode_bytes, fetch_url, thumbnail
from pipeline.types import MAX_ATTACHMENT_BASE64_CHARS, Attachment, Message


def picture(w: int = 96, h: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = (rng.random((8, 12, 3)) * 255).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def encode(rgb: np.ndarray, ext: str = ".png", *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), list(params))
    assert ok
    return buf.tobytes()


def gif(frames: int, w: int = 32, h: int = 24) -> bytes:
    imgs = [Image.fromarray(picture(w, h, seed=i)) for i in range(frames)]
    out = io.BytesIO()
    imgs[0].save(out, format="GIF", save_all=True, append_images=imgs[1:], duration=50, loop=0)
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


LIMITS = DecodeLimits(
    max_bytes=2_000_000,
    max_pixels=4_000_000,
    max_frames=50,
    max_decode_frames=20,
    sample_frames=4,
    fetch_timeout_s=2.0,
    max_redirects=2,
    allow_private=True,
)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".bmp"])
def test_still_formats_decode_to_rgb(ext: str) -> None:
    rgb = picture()
    d = decode_bytes(encode(rgb, ext), LIMITS)
    assert d.format == {".jpg": "jpeg"}.get(ext, ext[1:])
    assert (d.width, d.height) == (96, 64) and len(d.frames) == 1
    frame = d.frames[0]
    assert frame.dtype == np.uint8 and frame.shape == (64, 96, 3)
    assert np.abs(frame.astype(int) - rgb).mean() < 12  # RGB, not BGR
    assert len(d.sha256) == 64 and d.size_bytes > 0


def test_animated_gif_is_sampled() -> None:
    d = decode_bytes(gif(12), LIMITS)
    assert d.format == "gif" and len(d.frames) == 4
    assert not np.array_equal(d.frames[0], d.frames[-1])  # frames from across the animation


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (png_claiming(60_000, 60_000), "too many pixels"),
        (encode(picture(), ".jpg")[:-300], "truncated jpeg"),
        (encode(picture(), ".png")[:-40], "truncated png"),
        (encode(picture(), ".png") + b"PK\x03\x04" + b"\x00" * 200, "polyglot"),
        (encode(picture(), ".jpg") + b"<script>alert(1)</script>" * 3, "polyglot"),
        (b"II*\x00" + b"\x00" * 100, "unsupported format: tiff"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "unsupported format: svg"),
        (b"%PDF-1.7\n" + b"\x00" * 50, "unsupported format: pdf"),
        (b"hello, not an image at all", "unsupported format"),
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\xff" * 60, "png"),
        (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "jpeg"),
        (b"GIF89a\x10\x00\x10\x00\x00\x00\x00" + b"\x2c" + b"\x00" * 9 + b"\x02\x02\x44", "gif"),
    ],
)
def test_hostile_or_broken_files_get_a_clear_error(data: bytes, reason: str) -> None:
    with pytest.raises(MediaRejected) as exc:
        decode_bytes(data, LIMITS)
    assert reason in str(exc.value)


def test_corrupt_image_data_behind_a_valid_header() -> None:
    good = bytearray(encode(picture(200, 150), ".png"))
    idat = good.index(b"IDAT")
    good[idat + 4 : idat + 200] = b"\x13" * 196  # garbage compressed data, valid structure
    with pytest.raises(MediaRejected, match="corrupt png"):
        decode_bytes(bytes(good), LIMITS)


def test_limits_on_bytes_and_frames() -> None:
    with pytest.raises(MediaRejected, match="too large"):
        decode_bytes(encode(picture(), ".bmp"), DecodeLimits(max_bytes=1000))
    with pytest.raises(MediaRejected, match="too many frames"):
        decode_bytes(gif(6), DecodeLimits(max_frames=5))


def test_thumbnail_is_a_small_webp() -> None:
    data = thumbnail(picture(800, 600), 160)
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) < 20_000
    d = decode_bytes(data, LIMITS)
    assert max(d.width, d.height) == 160


def test_extractor_reports_each_attachment_and_never_raises() -> None:
    msg = Message(
        text="",
        attachments=[
            Attachment(content_base64=base64.b64encode(encode(picture(), ".png")).decode(), content_type="image/png"),
            Attachment(
                content_base64=base64.b64encode(png_claiming(50_000, 50_000)).decode(), content_type="image/png"
            ),
            Attachment(content_base64=base64.b64encode(b"MZ\x90\x00 an exe").decode(), filename="x.exe"),
            Attachment(content_base64=base64.b64encode(MP4).decode(), content_type="video/mp4"),
            Attachment(content_base64=base64.b64encode(b"II*\x00" + b"\x00" * 100).decode(), content_type="image/tiff"),
        ],
    )
    item = prepare(msg, stage=FeatureStage([MediaExtractor(), DecodeExtractor(LIMITS)]))
    refs = item.context.media
    assert refs[0].decoded is not None and refs[0].error is None
    assert "too many pixels" in (refs[1].error or "")
    # not pictures: listed as not scanned, which is not a failed check
    assert refs[2].error is None and "not scanned: unrecognised bytes" in (refs[2].not_scanned or "")
    assert refs[3].error is None and "not scanned: video" in (refs[3].not_scanned or "")
    # a picture Heron cannot read stays an error (the policy's fail-closed rule holds it)
    assert "unsupported format: tiff" in (refs[4].error or "") and refs[4].not_scanned is None
    assert not item.context.failed


MP4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + b"\x00" * 2000


def test_body_limit_and_base64_limit_agree() -> None:
    """A message with one maximal inline attachment fits the default request body limit."""
    from pipeline.settings import Settings

    msg = Message(text="x" * 100, attachments=[Attachment(content_base64="A" * MAX_ATTACHMENT_BASE64_CHARS)])
    assert len(msg.model_dump_json()) < Settings().max_body_bytes


# ---- URL fetching ------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, Any] = {}

    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        route = self.routes.get(self.path)
        if route is None:
            self.send_response(404)
            self.end_headers()
            return
        route(self)


@pytest.fixture
def server() -> Iterator[str]:
    png = encode(picture(), ".png")

    def image(h: Any, ctype: str = "text/plain") -> None:  # a lying content type: bytes are sniffed
        h.send_response(200)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(png)))
        h.end_headers()
        h.wfile.write(png)

    def redirect(to: str) -> Any:
        def go(h: Any) -> None:
            h.send_response(302)
            h.send_header("Location", to)
            h.end_headers()

        return go

    def huge(h: Any) -> None:
        h.send_response(200)
        h.end_headers()  # no Content-Length: the cap applies while streaming
        for _ in range(300):
            h.wfile.write(b"\x00" * 10_000)

    def slow(h: Any) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100000")
        h.end_headers()
        for _ in range(100):
            h.wfile.write(b"\x00" * 10)
            h.wfile.flush()
            time.sleep(0.1)

    def html(h: Any) -> None:
        body = b"<!doctype html><html><body>hi</body></html>"
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.end_headers()
        h.wfile.write(body)

    def video(h: Any) -> None:  # 3 MB of video: only its first bytes should be read
        h.send_response(200)
        h.send_header("Content-Type", "video/mp4")
        h.send_header("Content-Length", str(3_000_000))
        h.end_headers()
        try:
            h.wfile.write(MP4)
            for _ in range(300):  # paced, so a reader that stops early is seen stopping
                h.wfile.write(b"\x00" * 10_000)
                h.wfile.flush()
                SENT["video"] = SENT.get("video", 0) + 10_000
                time.sleep(0.005)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def pdf(h: Any) -> None:
        body = b"%PDF-1.7\n" + b"\x00" * 5000
        h.send_response(200)
        h.send_header("Content-Type", "application/pdf")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    base = f"http://127.0.0.1:{srv.server_port}"
    _Handler.routes = {
        "/img": image,
        "/r1": redirect("/img"),
        "/loop": redirect("/loop"),
        "/huge": huge,
        "/slow": slow,
        "/html": html,
        "/clip.mp4": video,
        "/doc.pdf": pdf,
        "/to-metadata": redirect("http://169.254.169.254/latest/meta-data/"),
    }
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield base
    srv.shutdown()


def test_fetch_sniffs_bytes_and_follows_a_few_redirects(server: str) -> None:
    assert decode_bytes(fetch_url(server + "/img", LIMITS), LIMITS).format == "png"
    assert decode_bytes(fetch_url(server + "/r1", LIMITS), LIMITS).format == "png"
    with pytest.raises(MediaRejected, match="too many redirects"):
        fetch_url(server + "/loop", LIMITS)
    with pytest.raises(MediaRejected, match="unsupported format: html"):
        decode_bytes(fetch_url(server + "/html", LIMITS), LIMITS)


SENT: dict[str, int] = {}


def test_hosted_videos_and_documents_are_not_scanned_but_a_picture_labelled_video_is(server: str) -> None:
    """A video is read only as far as its first bytes; a PDF is not an image; an image URL declared
    as video/mp4 (a banked picture in disguise) is fetched and decoded like any picture."""
    SENT.clear()
    msg = Message(
        text="",
        attachments=[
            Attachment(url=server + "/clip.mp4", content_type="video/mp4"),
            Attachment(url=server + "/doc.pdf", filename="doc.pdf"),
            Attachment(url=server + "/img", content_type="video/mp4"),
        ],
    )
    stage = FeatureStage([MediaExtractor(), DecodeExtractor(DecodeLimits(allow_private=True, max_bytes=2_000_000))])
    refs = prepare(msg, stage=stage).context.media
    assert refs[0].error is None and "not scanned: video" in (refs[0].not_scanned or "")
    assert SENT.get("video", 0) < 2_000_000  # the client stopped reading long before the byte cap
    assert refs[1].error is None and "not scanned: pdf" in (refs[1].not_scanned or "")
    assert refs[2].decoded is not None and refs[2].kind == "image" and refs[2].not_scanned is None


def test_fetch_caps_size_and_time(server: str) -> None:
    with pytest.raises(MediaRejected, match="too large"):
        fetch_url(server + "/huge", LIMITS)
    started = time.monotonic()
    with pytest.raises(MediaRejected, match="timed out"):
        fetch_url(server + "/slow", DecodeLimits(fetch_timeout_s=0.5, allow_private=True))
    assert time.monotonic() - started < 5


def test_fetch_refuses_private_and_metadata_addresses(server: str) -> None:
    strict = DecodeLimits(allow_private=False)
    with pytest.raises(MediaRejected, match="refused URL"):
        fetch_url(server + "/img", strict)  # loopback
    with pytest.raises(MediaRejected, match="refused URL"):
        fetch_url("http://10.1.2.3/x.png", strict)
    # allowed private for tests, but a redirect to the metadata service is still refused
    with pytest.raises(MediaRejected, match=r"refused URL \(redirect\)"):
        fetch_url(server + "/to-metadata", LIMITS)
