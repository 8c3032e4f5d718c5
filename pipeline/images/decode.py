"""Decoding attachment bytes with OpenCV, under limits, and fetching image URLs safely.

Limits (all from Settings): bytes, pixels per frame, frames in an animation (checked from the
headers by `pipeline.images.sniff` before anything is decoded), and the pixels actually decoded
over all frames. An animation is decoded up to `image_max_decode_frames` frames and a few of
them are kept, evenly spaced: a GIF that hides its payload after a harmless first frame is
still seen, and a long one cannot make a worker decode thousands of frames.

Fetching: the URL is checked by `pipeline.netguard` (no loopback, private, link-local or metadata
addresses, re-checked at connect time after DNS and at each redirect hop), redirects are capped,
the body is streamed with a byte cap and an overall deadline, and the bytes are sniffed: what the
server says the type is does not matter.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from dataclasses import dataclass

# Belt and braces behind our own header checks: OpenCV's own pixel cap, set before cv2 loads.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 28))

import cv2  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.features.context import DecodedMedia  # noqa: E402
from pipeline.images.sniff import MediaRejected, is_image_bytes, probe, sniff_format  # noqa: E402
from pipeline.netguard import check_url, safe_transport  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

__all__ = ["DecodeLimits", "MediaRejected", "decode_bytes", "fetch_url", "thumbnail"]


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_bytes: int = 8_000_000
    max_pixels: int = 40_000_000
    max_frames: int = 1_000
    max_decode_frames: int = 64
    sample_frames: int = 4
    fetch_timeout_s: float = 5.0
    max_redirects: int = 3
    allow_private: bool = False

    @classmethod
    def from_settings(cls, s: Settings) -> DecodeLimits:
        return cls(
            max_bytes=s.image_max_bytes,
            max_pixels=s.image_max_pixels,
            max_frames=s.image_max_frames,
            max_decode_frames=s.image_max_decode_frames,
            sample_frames=s.image_sample_frames,
            fetch_timeout_s=s.image_fetch_timeout_s,
            max_redirects=s.image_fetch_max_redirects,
            allow_private=s.allow_private_image_urls,
        )


def _sample(frames: list[np.ndarray], k: int) -> list[np.ndarray]:
    if len(frames) <= k:
        return frames
    idx = np.linspace(0, len(frames) - 1, k).round().astype(int)
    return [frames[i] for i in dict.fromkeys(idx.tolist())]


def _rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def decode_bytes(data: bytes, limits: DecodeLimits) -> DecodedMedia:
    """Decode to RGB uint8 frames; `MediaRejected` (with the reason) for anything refused or broken."""
    if len(data) > limits.max_bytes:
        raise MediaRejected(f"too large: {len(data):,} bytes (limit {limits.max_bytes:,})")
    info = probe(data)
    pixels = info.width * info.height
    if pixels > limits.max_pixels:
        raise MediaRejected(
            f"too many pixels: {info.width}x{info.height} (limit {limits.max_pixels:,}; decompression bomb?)"
        )
    if info.frames > limits.max_frames:
        raise MediaRejected(f"too many frames: {info.frames} (limit {limits.max_frames})")
    buf = np.frombuffer(data, dtype=np.uint8)
    frames: list[np.ndarray]
    if info.frames > 1:
        count = max(1, min(info.frames, limits.max_decode_frames, limits.max_pixels * 4 // max(pixels, 1)))
        ok, anim = cv2.imdecodeanimation(buf, 0, count)
        frames = list(anim.frames) if ok else []
        if not frames:
            raise MediaRejected(f"corrupt {info.format}: OpenCV could not decode the animation")
        frames = _sample(frames, limits.sample_frames)
    else:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if img is None:
            raise MediaRejected(f"corrupt {info.format}: OpenCV could not decode it")
        frames = [img]
    rgb = tuple(np.ascontiguousarray(_rgb(f)) for f in frames)
    h, w = rgb[0].shape[:2]
    return DecodedMedia(
        width=w,
        height=h,
        format=info.format,
        frames=rgb,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )


def _sniff_or_stop(head: bytes) -> None:
    fmt = sniff_format(head)
    if not is_image_bytes(fmt):
        raise NotAnImage(fmt)


def decode_base64(text: str, limits: DecodeLimits) -> DecodedMedia:
    return decode_bytes(base64.b64decode(text, validate=True), limits)


class NotAnImage(Exception):
    """A fetched attachment's first bytes are not a picture (a video, a PDF, ...): not scanned."""

    def __init__(self, fmt: str | None) -> None:
        super().__init__(fmt or "unrecognised bytes")
        self.format = fmt


SNIFF_BYTES = 512  # enough for every magic number sniff_format reads (svg/html look at 256)


def fetch_url(
    url: str, limits: DecodeLimits, client: httpx.Client | None = None, *, images_only: bool = False
) -> bytes:
    """GET an image URL under the SSRF guard, a redirect cap, a byte cap and one overall deadline.

    `images_only`: for an attachment declared as something else (a video, a document), look at the
    first bytes and stop there with `NotAnImage` unless they are a picture, so a 100 MB video is
    not downloaded to learn that, while a picture labelled video/mp4 is still fetched and scored."""
    deadline = time.monotonic() + limits.fetch_timeout_s
    own = client is None
    if client is None:
        client = httpx.Client(
            transport=safe_transport(allow_private=limits.allow_private),
            timeout=httpx.Timeout(limits.fetch_timeout_s),
            headers={"Accept": "image/*", "User-Agent": "heron-image-fetch/1"},
        )
    try:
        current = url
        for hop in range(limits.max_redirects + 1):
            try:
                check_url(current, allow_private=limits.allow_private)
            except ValueError as exc:
                raise MediaRejected(f"refused URL{' (redirect)' if hop else ''}: {exc}") from None
            with client.stream("GET", current, follow_redirects=False) as response:
                if response.has_redirect_location:
                    nxt = response.next_request
                    assert nxt is not None
                    current = str(nxt.url)
                    continue
                if response.status_code != 200:
                    raise MediaRejected(f"fetch failed: HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                too_large = None
                if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                    too_large = f"too large: server declares {int(declared):,} bytes (limit {limits.max_bytes:,})"
                    if not images_only:
                        raise MediaRejected(too_large)
                chunks: list[bytes] = []
                size = 0
                sniffed = not images_only
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if time.monotonic() > deadline:
                        raise MediaRejected(f"fetch timed out after {limits.fetch_timeout_s} s")
                    chunks.append(chunk)
                    if not sniffed and size >= SNIFF_BYTES:
                        _sniff_or_stop(b"".join(chunks))  # a large video stops here, not at the cap
                        sniffed = True
                    if too_large and sniffed:
                        raise MediaRejected(too_large)
                    if size > limits.max_bytes:
                        raise MediaRejected(f"too large: more than {limits.max_bytes:,} bytes")
                data = b"".join(chunks)
                if not sniffed:
                    _sniff_or_stop(data)
                if too_large:
                    raise MediaRejected(too_large)
                return data
        raise MediaRejected(f"too many redirects (limit {limits.max_redirects})")
    except httpx.TimeoutException:
        raise MediaRejected(f"fetch timed out after {limits.fetch_timeout_s} s") from None
    except httpx.HTTPError as exc:
        raise MediaRejected(f"fetch failed: {type(exc).__name__}: {exc}") from None
    finally:
        if own:
            client.close()


def thumbnail(frame: np.ndarray, max_side: int = 160, quality: int = 70) -> bytes:
    """A small WebP of the first frame (what a reviewer sees, blurred by default): the only pixels
    Heron keeps, and only for messages that go to review."""
    h, w = frame.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, out = cv2.imencode(".webp", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_WEBP_QUALITY, quality])
    if not ok:  # pragma: no cover - a build without WebP: JPEG instead
        ok, out = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return bytes(out)
