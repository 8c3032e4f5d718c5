"""Decodes each attachment once (inline base64 or URL) into `MediaRef.decoded`, or says why not.

Runs after `MediaExtractor` (which made the references). Every media scorer (PDQ hash banks,
the NSFW model, QR/OCR) reads the same RGB frames, so an image is fetched and decoded once per
message. Anything refused or broken (too large, a decompression bomb, truncated, corrupt, a
polyglot, an image format Heron cannot read, a refused or failing URL) becomes `MediaRef.error`,
which the decision reports per attachment and the policy's fail-closed rule holds. An attachment
declared as something else (video, audio, a document) whose bytes are not a picture gets
`MediaRef.not_scanned` instead: the decision lists it, but no scorer reads videos or PDFs, so it
is not a failed check and does not hold the message. The bytes decide, not the declared type: a
banked picture labelled video/mp4 is still matched (a hosted one is fetched as far as its first
bytes to tell).

Not inline: decoding and fetching take milliseconds to seconds, so the async path runs it on a
thread and the sync path defers it (`HERON_SYNC_DEFER_IMAGES`).
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import Sequence
from typing import ClassVar, Self

from pipeline.features.context import Feature, MediaRef, ScoringItem
from pipeline.features.stage import FeatureExtractor
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def _not_scanned(ref: MediaRef, fmt: str | None) -> str:
    """The decision's words for an attachment no scorer reads: what it is, by its bytes or its type."""
    what = fmt or (ref.kind if ref.kind in ("video", "audio") else None) or ref.content_type or "unrecognised bytes"
    return f"not scanned: {what}, not an image (no scorer reads it)"


class DecodeExtractor(FeatureExtractor):
    name: ClassVar[str] = "decode"
    provides: ClassVar[frozenset[Feature]] = frozenset({Feature.MEDIA})
    inline: ClassVar[bool] = False

    def __init__(self, limits: object | None = None) -> None:
        from pipeline.images.decode import DecodeLimits

        self.limits: DecodeLimits = limits if isinstance(limits, DecodeLimits) else DecodeLimits()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        from pipeline.images.decode import DecodeLimits

        return cls(DecodeLimits.from_settings(settings))

    def decode_ref(self, item: ScoringItem, ref: MediaRef) -> MediaRef:
        from pipeline.images.decode import MediaRejected, NotAnImage, decode_bytes, fetch_url
        from pipeline.images.sniff import is_image_bytes, sniff_format

        if ref.decoded is not None or ref.error is not None or ref.not_scanned is not None:
            return ref
        declared_image = ref.kind == "image"
        try:
            if ref.inline:
                data = item.message.attachments[ref.index].content_base64
                assert data is not None
                raw = base64.b64decode(data, validate=True)
                if not declared_image:
                    # The declared type is the sender's word: image bytes labelled video/mp4 or
                    # sent without a type would otherwise skip every image scorer (a banked
                    # picture posted as a "video"). The bytes decide.
                    fmt = sniff_format(raw)
                    if not is_image_bytes(fmt):
                        return dataclasses.replace(ref, not_scanned=_not_scanned(ref, fmt))
                    ref = dataclasses.replace(ref, kind="image")
                decoded = decode_bytes(raw, self.limits)
            elif ref.url:
                # A hosted video or document is fetched only as far as its first bytes.
                raw = fetch_url(ref.url, self.limits, images_only=not declared_image)
                if not declared_image:
                    ref = dataclasses.replace(ref, kind="image")
                decoded = decode_bytes(raw, self.limits)
            else:
                return dataclasses.replace(ref, error="the attachment's bytes are no longer held")
        except NotAnImage as exc:
            return dataclasses.replace(ref, not_scanned=_not_scanned(ref, exc.format))
        except MediaRejected as exc:
            return dataclasses.replace(ref, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a decoder bug is this attachment's error, not a crash
            log.warning("decoding attachment %d failed", ref.index, exc_info=exc)
            return dataclasses.replace(ref, error=f"could not decode: {type(exc).__name__}: {exc}")
        return dataclasses.replace(ref, decoded=decoded)

    def extract(self, items: Sequence[ScoringItem]) -> None:
        for item in items:
            if item.context.media:
                item.context.media = tuple(self.decode_ref(item, ref) for ref in item.context.media)
