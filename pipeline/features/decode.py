"""Decodes each attachment once (inline base64 or URL) into `MediaRef.decoded`, or says why not.

Runs after `MediaExtractor` (which made the references). Every media scorer (PDQ hash banks,
the NSFW model, QR/OCR) reads the same RGB frames, so an image is fetched and decoded once per
message. Anything refused or broken (too large, a decompression bomb, truncated, corrupt, a
polyglot, an unsupported format, a refused or failing URL) becomes `MediaRef.error`, which the
decision reports per attachment; an attachment is never skipped silently. Attachments of other
kinds (video, audio) get an error saying they are not scored, unless their inline bytes are an
image (the bytes decide, not the declared type: a banked picture labelled video/mp4 is still
matched).

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
        from pipeline.images.decode import MediaRejected, decode_bytes, fetch_url
        from pipeline.images.sniff import SUPPORTED, sniff_format

        if ref.decoded is not None or ref.error is not None:
            return ref
        try:
            if ref.inline:
                data = item.message.attachments[ref.index].content_base64
                assert data is not None
                raw = base64.b64decode(data, validate=True)
                if ref.kind in ("video", "audio"):
                    # The declared type is the sender's word: image bytes labelled video/mp4 would
                    # otherwise skip every image scorer (a banked picture posted as a "video").
                    if sniff_format(raw) not in SUPPORTED:
                        return dataclasses.replace(ref, error=f"{ref.kind} attachments are not scored")
                    ref = dataclasses.replace(ref, kind="image")
                decoded = decode_bytes(raw, self.limits)
            elif ref.kind in ("video", "audio"):  # not fetched: a video URL is not worth its bytes here
                return dataclasses.replace(ref, error=f"{ref.kind} attachments are not scored")
            elif ref.url:
                decoded = decode_bytes(fetch_url(ref.url, self.limits), self.limits)
            else:
                return dataclasses.replace(ref, error="the attachment's bytes are no longer held")
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
