"""The frames a media scorer reads: every decoded frame of every image attachment of a message.

The decoding extractor (the image pipeline's) fills `MediaRef.decoded` once per message; the
NSFW, QR and OCR scorers all read the same frames through `collect_frames`, which also says
which image attachments could not be read, so a scorer never mistakes "nothing decoded" for
"nothing found".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.features.context import ScoringItem


@dataclass(frozen=True, slots=True)
class Frame:
    """One RGB uint8 (H, W, 3) frame of attachment `attachment` (its index in the message)."""

    attachment: int
    frame: int
    frames_in_image: int
    pixels: Any
    sha256: str

    @property
    def source(self) -> str:
        """How evidence names where it came from: ``attachment 0`` or ``attachment 0 frame 2``."""
        if self.frames_in_image > 1:
            return f"attachment {self.attachment} frame {self.frame}"
        return f"attachment {self.attachment}"


def has_images(item: ScoringItem) -> bool:
    """Whether the message carries anything a media scorer should look at: a decoded attachment,
    or one declared as an image (whose failure to decode must then be reported)."""
    return any(ref.decoded is not None or ref.kind == "image" for ref in item.context.media)


def collect_frames(item: ScoringItem) -> tuple[list[Frame], list[str]]:
    """(frames, unread): the decoded frames, and one line per image attachment with none."""
    frames: list[Frame] = []
    unread: list[str] = []
    for ref in item.context.media:
        decoded = ref.decoded
        if decoded is not None and decoded.frames:
            n = len(decoded.frames)
            frames += [Frame(ref.index, k, n, f, decoded.sha256) for k, f in enumerate(decoded.frames)]
        elif decoded is not None:
            unread.append(f"attachment {ref.index}: decoded without frames")
        elif ref.kind == "image":
            unread.append(f"attachment {ref.index}: {ref.error or 'not decoded (no image decoder ran)'}")
    return frames, unread


def frames_or_signal(scorer: Any, item: ScoringItem, started: float) -> tuple[list[Frame], list[str]] | Any:
    """The item's frames and unread attachments, or the Signal a media scorer answers without them:
    an empty (ok) signal when the message has no images, an error signal when it cannot be read.

    One place for what every media scorer does first, so they agree on "no image" versus "unreadable"."""
    import time

    from pipeline.types import Signal

    try:
        if not has_images(item):
            return Signal(scorer=scorer.name, version=scorer.version,
                          latency_ms=(time.perf_counter() - started) * 1000)
        return collect_frames(item)
    except Exception as exc:  # noqa: BLE001 - one unreadable item must not sink the batch
        return scorer.error_signal(f"could not read the item: {type(exc).__name__}: {exc}", started)
