"""Attachment references for media scorers: one `MediaRef` per attachment, nothing decoded yet.

The image pipeline (decode once, then perceptual hashes, the NSFW model and OCR/QR) will add a
decoding extractor after this one that fills `MediaRef.decoded`; until then media scorers can
already tell, without touching the bytes, whether a message carries images at all.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from typing import ClassVar
from urllib.parse import urlsplit

from pipeline.features.context import Feature, MediaKind, MediaRef, ScoringItem
from pipeline.features.stage import FeatureExtractor
from pipeline.types import Attachment

_KINDS: dict[str, MediaKind] = {"image": "image", "video": "video", "audio": "audio"}


def media_kind(content_type: str | None, filename: str | None, url: str | None) -> MediaKind:
    """The attachment's kind from its declared content type, else from its file name or URL path.

    A declared type wins: a chat service knows what it hosts better than an extension says. The
    kind only routes the attachment to scorers; the image pipeline checks the real bytes.
    """
    guessed = content_type
    if not guessed:
        name = filename or (urlsplit(url).path if url else None)
        guessed = mimetypes.guess_type(name, strict=False)[0] if name else None
    if not guessed:
        return "other"
    return _KINDS.get(guessed.split("/", 1)[0].strip().lower(), "other")


def media_ref(index: int, attachment: Attachment) -> MediaRef:
    return MediaRef(
        index=index,
        url=attachment.url,
        inline=attachment.content_base64 is not None,
        content_type=attachment.content_type,
        filename=attachment.filename,
        kind=media_kind(attachment.content_type, attachment.filename, attachment.url),
    )


class MediaExtractor(FeatureExtractor):
    """Fills `ItemContext.media` with a reference per attachment (`decoded` stays None)."""

    name: ClassVar[str] = "media"
    provides: ClassVar[frozenset[Feature]] = frozenset({Feature.MEDIA})

    def extract(self, items: Sequence[ScoringItem]) -> None:
        for item in items:
            attachments = item.message.attachments
            item.context.media = tuple(media_ref(i, a) for i, a in enumerate(attachments)) if attachments else ()
