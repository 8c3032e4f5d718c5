"""What the bytes of an attachment are, and how big they would decode, read from headers only.

Why before decoding: a 40 KB PNG can declare 60,000 x 60,000 pixels (a decompression bomb), a
GIF can hold thousands of frames, and a file can be an image followed by a ZIP or a script (a
polyglot that a browser or an unzip tool reads as something else). All of that is visible in the
container structure, so it is refused here, in pure Python over the bytes, before OpenCV
allocates anything. The declared content type and file name are never trusted for the format.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Trailing bytes tolerated after an image's end marker: some encoders pad with a few zero or
# newline bytes. Anything longer is another payload glued on (JPEG+ZIP, GIF+JS polyglots).
TRAILING_SLACK = 16

SUPPORTED = ("jpeg", "png", "gif", "webp", "bmp")
# Images Heron cannot decode: an attachment in one of these is an unread image (an error the
# policy's fail-closed rule holds), never "not an image, not scanned".
UNREAD_IMAGES = ("tiff", "heif", "svg")


def is_image_bytes(fmt: str | None) -> bool:
    """Whether sniffed bytes are a picture (one Heron reads or not), as against a video, a document,
    an archive or unknown bytes, which no image scorer has anything to say about."""
    return fmt in SUPPORTED or fmt in UNREAD_IMAGES


class MediaRejected(ValueError):
    """An attachment Heron will not decode; the message is the per-attachment error the decision shows."""


@dataclass(frozen=True, slots=True)
class Probe:
    """The sniffed format, canvas size and frame count (1 for a still image)."""

    format: str
    width: int
    height: int
    frames: int = 1


def sniff_format(data: bytes) -> str | None:
    """The format from the magic bytes, or a name for a known non-image type, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM" and len(data) >= 26:
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypavif", b"ftypmif1"):
        return "heif"
    if data[:4] == b"%PDF":
        return "pdf"
    if data[:4] == b"PK\x03\x04":
        return "zip"
    head = data[:256].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")):
        return "svg"
    if head.startswith((b"<!doctype html", b"<html")):
        return "html"
    return None


def probe(data: bytes) -> Probe:
    """Format, size and frames from the container headers; `MediaRejected` for anything else.

    Also walks the container to its end marker: a file that stops before it is truncated, and
    one that goes on after it is a polyglot."""
    if not data:
        raise MediaRejected("empty file")
    fmt = sniff_format(data)
    if fmt is None:
        raise MediaRejected("unsupported format: not a recognised image (magic bytes)")
    if fmt not in SUPPORTED:
        raise MediaRejected(f"unsupported format: {fmt} (supported: {', '.join(SUPPORTED)})")
    try:
        return _PROBES[fmt](data)
    except (struct.error, IndexError):
        raise MediaRejected(f"corrupt {fmt}: truncated header") from None


def _trailing(fmt: str, data: bytes, end: int) -> None:
    extra = len(data) - end
    if extra > TRAILING_SLACK:
        raise MediaRejected(f"{fmt} has {extra} bytes of other data after its end marker (polyglot file)")


def _png(data: bytes) -> Probe:
    pos = 8
    width = height = 0
    frames = 1
    seen_end = False
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if pos + 12 + length > len(data):
            break
        if kind == b"IHDR":
            width, height = struct.unpack(">II", data[pos + 8 : pos + 16])
        elif kind == b"acTL":  # APNG
            (frames,) = struct.unpack(">I", data[pos + 8 : pos + 12])
        pos += 12 + length
        if kind == b"IEND":
            seen_end = True
            break
    if not width or not height:
        raise MediaRejected("corrupt png: no image header")
    if not seen_end:
        raise MediaRejected("truncated png: no IEND chunk")
    _trailing("png", data, pos)
    return Probe("png", width, height, max(1, frames))


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(data: bytes) -> Probe:
    pos = 2
    width = height = 0
    n = len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise MediaRejected("corrupt jpeg: bad marker")
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            if not width:
                raise MediaRejected("corrupt jpeg: no frame header")
            _trailing("jpeg", data, pos)
            return Probe("jpeg", width, height)
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
            continue
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[pos + 3 : pos + 7])
        pos += length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next real marker
            while True:
                nxt = data.find(b"\xff", pos)
                if nxt < 0 or nxt + 1 >= n:
                    pos = n
                    break
                following = data[nxt + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    pos = nxt + 1 if following == 0xFF else nxt + 2
                    continue
                pos = nxt
                break
    raise MediaRejected("truncated jpeg: no end-of-image marker")


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    while True:
        size = data[pos]
        pos += 1
        if size == 0:
            return pos
        pos += size


def _gif(data: bytes) -> Probe:
    width, height, flags = struct.unpack("<HHB", data[6:11])
    pos = 13
    if flags & 0x80:
        pos += 3 * (2 ** ((flags & 0x07) + 1))
    frames = 0
    n = len(data)
    while pos < n:
        block = data[pos]
        if block == 0x3B:  # trailer
            if frames == 0:
                raise MediaRejected("corrupt gif: no image")
            _trailing("gif", data, pos + 1)
            return Probe("gif", width, height, frames)
        if block == 0x21:  # extension
            pos = _skip_sub_blocks(data, pos + 2)
        elif block == 0x2C:  # image descriptor
            frames += 1
            local = data[pos + 9]
            pos += 10
            if local & 0x80:
                pos += 3 * (2 ** ((local & 0x07) + 1))
            pos = _skip_sub_blocks(data, pos + 1)  # LZW minimum code size, then the data
        else:
            raise MediaRejected("corrupt gif: unknown block")
    raise MediaRejected("truncated gif: no trailer")


def _webp(data: bytes) -> Probe:
    (riff_size,) = struct.unpack("<I", data[4:8])
    end = 8 + riff_size
    if end > len(data):
        raise MediaRejected("truncated webp: shorter than its RIFF size")
    _trailing("webp", data, end)
    pos = 12
    width = height = 0
    frames = 0
    while pos + 8 <= end:
        kind = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        body = pos + 8
        if kind == b"VP8X":
            width = 1 + int.from_bytes(data[body + 4 : body + 7], "little")
            height = 1 + int.from_bytes(data[body + 7 : body + 10], "little")
        elif kind == b"VP8 " and not width:
            if data[body + 3 : body + 6] != b"\x9d\x01\x2a":
                raise MediaRejected("corrupt webp: bad VP8 start code")
            w, h = struct.unpack("<HH", data[body + 6 : body + 10])
            width, height = w & 0x3FFF, h & 0x3FFF
        elif kind == b"VP8L" and not width:
            bits = int.from_bytes(data[body + 1 : body + 5], "little")
            width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        elif kind == b"ANMF":
            frames += 1
        pos = body + size + (size & 1)
    if not width or not height:
        raise MediaRejected("corrupt webp: no image header")
    return Probe("webp", width, height, max(1, frames))


def _bmp(data: bytes) -> Probe:
    (size,) = struct.unpack("<I", data[2:6])
    width, height = struct.unpack("<ii", data[18:26])
    if size > len(data):
        raise MediaRejected("truncated bmp: shorter than its declared size")
    _trailing("bmp", data, size)
    return Probe("bmp", abs(width), abs(height))


_PROBES = {"png": _png, "jpeg": _jpeg, "gif": _gif, "webp": _webp, "bmp": _bmp}
