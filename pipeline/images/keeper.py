"""What Heron keeps of the images it decided on: their PDQ hashes (for retroactive bank matching,
`HERON_IMAGE_HASH_RETENTION_DAYS`) and, only for messages that go to review, a small WebP
thumbnail for the review UI (shown blurred by default). Never the images themselves: inline bytes
are held in `media_inline` only until the message is decided.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pipeline.features.context import ScoringItem
from pipeline.types import Action, Decision

log = logging.getLogger(__name__)

REVIEW_ACTIONS = frozenset({Action.HOLD_FOR_REVIEW})


class MediaKeeper:
    def __init__(self, banks: Any, thumbnail_px: int = 160) -> None:
        self.banks = banks
        self.thumbnail_px = thumbnail_px

    def __call__(self, tenant_id: str, pairs: Sequence[tuple[ScoringItem, Decision]]) -> None:
        from pipeline.images.decode import thumbnail
        from pipeline.images.pdq import MIN_QUALITY
        from pipeline.scorers.image_hash import HASHES

        seen: list[tuple[str, str, int, str, int]] = []
        thumbs: list[dict[str, Any]] = []
        for item, decision in pairs:
            for ref in item.context.media:
                if ref.decoded is None or not ref.decoded.frames:
                    continue
                first = HASHES.get(ref)[0]
                if first.quality >= MIN_QUALITY:
                    seen.append((tenant_id, item.message.id, ref.index, first.hashes, first.quality))
                if decision.action in REVIEW_ACTIONS:
                    thumbs.append({
                        "tenant_id": tenant_id, "message_id": item.message.id, "attachment": ref.index,
                        "sha256": ref.decoded.sha256, "hash": first.original, "mime": "image/webp",
                        "data": thumbnail(ref.decoded.frames[0], self.thumbnail_px),
                    })
        self.banks.record_seen(seen)
        self.banks.save_thumbnails(thumbs)
