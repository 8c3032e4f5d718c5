"""Test and bench images generated on the fly: QR codes (segno), scam text drawn onto the staged
photos (cv2.putText), and scoring items carrying decoded frames as the decoding extractor fills them.

Nothing here is explicit imagery and nothing is written into the repository.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from pipeline.features import prepare
from pipeline.features.context import DecodedMedia, ScoringItem
from pipeline.guilds import EMPTY_LISTS, GuildLists
from pipeline.types import Attachment, Message


def qr_rgb(payload: str, scale: int = 6) -> np.ndarray:
    """A QR code for `payload` as RGB uint8 (segno, error correction M, 4-module quiet zone)."""
    import cv2
    import segno

    buf = io.BytesIO()
    segno.make(payload, error="m", micro=False).save(buf, kind="png", scale=scale, border=4)
    bgr = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def paste(photo: np.ndarray, patch: np.ndarray, corner: tuple[int, int] = (10, 10)) -> np.ndarray:
    """`patch` pasted onto a copy of `photo` at (x, y); the photo is enlarged first if too small."""
    import cv2

    out = photo.copy()
    ph, pw = patch.shape[:2]
    x, y = corner
    need = max((y + ph + 10) / out.shape[0], (x + pw + 10) / out.shape[1])
    if need > 1:
        out = cv2.resize(out, (int(out.shape[1] * need) + 1, int(out.shape[0] * need) + 1))
    out[y : y + ph, x : x + pw] = patch
    return out


def draw_caption(photo: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """`lines` drawn as a meme/scam caption: white text on a dark banner, sized to the photo."""
    import cv2

    out = np.ascontiguousarray(photo.copy())
    w = out.shape[1]
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(0.5, 0.8 * w / 600)
    thick = max(1, round(2 * w / 600))
    y = int(20 * w / 600)
    for line in lines:
        (tw, th), base = cv2.getTextSize(line, font, scale, thick)
        x = int(10 * w / 600)
        cv2.rectangle(out, (x - 6, y - 6), (x + tw + 6, y + th + base + 6), (20, 20, 20), -1)
        cv2.putText(out, line, (x, y + th), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
        y += th + base + int(18 * w / 600)
    return out


def png_bytes(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def decoded(frames: Sequence[np.ndarray], data: bytes | None = None) -> DecodedMedia:
    """DecodedMedia as the decoding extractor fills it (RGB frames, sha256 of the bytes)."""
    data = data if data is not None else b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    h, w = frames[0].shape[:2]
    return DecodedMedia(
        width=w,
        height=h,
        format="png",
        frames=tuple(frames),
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )


def image_item(
    images: Sequence[np.ndarray | Sequence[np.ndarray] | None],
    text: str = "",
    lists: GuildLists = EMPTY_LISTS,
    tenant_id: str = "t",
) -> ScoringItem:
    """A message with one attachment per entry: an RGB image, a list of frames (animated), or
    None for an image attachment that did not decode (its MediaRef carries an error).

    The attachment's inline bytes are a small placeholder PNG (the request size limit would refuse
    a large photo); the decoded frames are what the scorers read."""
    import cv2

    attachments = []
    for img in images:
        first = img if isinstance(img, np.ndarray) else (img[0] if img else np.zeros((8, 8, 3), np.uint8))
        thumb = cv2.resize(first, (16, 16), interpolation=cv2.INTER_AREA)
        attachments.append(
            Attachment(content_base64=base64.b64encode(png_bytes(thumb)).decode(), content_type="image/png")
        )
    item = prepare(Message(text=text, attachments=attachments), lists, tenant_id=tenant_id)
    media = []
    for ref, img in zip(item.context.media, images, strict=True):
        # the feature stage's own decoder has decoded the placeholder: overwrite what it found
        if img is None:
            media.append(replace(ref, decoded=None, error="corrupt image: truncated PNG"))
        else:
            frames = [img] if isinstance(img, np.ndarray) else list(img)
            media.append(replace(ref, decoded=decoded(frames), error=None))
    item.context.media = tuple(media)
    return item
