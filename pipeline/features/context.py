"""What the feature stage computes once per message, and the item every scorer reads it from.

Several scorers need the same derived data: the evasion-aware normalised text (rules, the text
model), the links in the message (the link list now, a link model later), the attachments (an
image model, OCR/QR, perceptual hashes) and the author's recent behaviour (spam counters). The
feature stage (`pipeline.features.stage`) fills an `ItemContext` per message before any scorer
runs, so each of these is computed once, not once per scorer, and a scorer reads typed fields
instead of re-deriving them.

An extractor that fails records the failure in `ItemContext.failed` rather than raising: the
service then gives every scorer that needs that feature an error signal (a missing signal, never
a fake 0.0), and the other scorers still run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

from pipeline.guilds import EMPTY_LISTS, GuildLists
from pipeline.normalize import normalize
from pipeline.types import Message, Signal


class Feature(StrEnum):
    """A kind of per-message data that scorers declare they need (`Scorer.needs`)."""

    TEXT = "text"  # the normalised text
    LINKS = "links"  # links found in the text
    MEDIA = "media"  # the attachments (references now; decoded pixels with the image pipeline)
    BEHAVIOUR = "behaviour"  # the author's / channel's recent activity


# Features that are content of the message itself: a scorer that needs one of them has nothing to
# say about a message without it (a text scorer skips an image-only message). Behaviour is about
# the author, present for every message.
CONTENT_FEATURES: frozenset[Feature] = frozenset({Feature.TEXT, Feature.LINKS, Feature.MEDIA})


@dataclass(frozen=True, slots=True)
class ExtractedLink:
    """One link as found in the message text.

    `host` is the domain the link points to (lower-case ASCII/punycode, no port or user info);
    `path` the lower-case path without its leading '/', query or fragment; `text` the link exactly
    as written (masked-link labels and defanged spellings included) and `span` its offsets in the
    original message text, so evidence can point at it. `invite` is the code of a Discord server
    invite (``discord.gg/abc`` -> ``"abc"``), which spam campaigns post as often as links.
    """

    host: str
    path: str
    text: str
    span: tuple[int, int]
    invite: str | None = None


@dataclass(frozen=True, slots=True)
class DecodedMedia:
    """Decoded pixels of an attachment, filled once by the image pipeline's decoding extractor.

    Every media scorer (perceptual hashes, the NSFW model, OCR/QR) reads the same pixels, so an
    image is fetched and decoded once per message. `frames` are RGB ``uint8`` arrays of shape
    ``(height, width, 3)`` (numpy; typed loosely so this module stays import-light): one for a
    still image, a few sampled frames for an animated one. `sha256` is of the original bytes;
    `format` is what the bytes are (sniffed), not what the sender declared.
    """

    width: int
    height: int
    format: str  # sniffed: "jpeg", "png", "gif", "webp", ...
    frames: tuple[Any, ...] = ()
    sha256: str = ""
    size_bytes: int = 0


MediaKind = Literal["image", "video", "audio", "other"]


@dataclass(frozen=True, slots=True)
class MediaRef:
    """One attachment of the message, by reference: where its bytes are, not the bytes.

    `index` is the attachment's position in `Message.attachments` (where the inline bytes live
    when `inline` is true); `url` is set for hosted files. `kind` comes from the declared content
    type, else the file name's extension; it says which media scorers apply without decoding.
    """

    index: int
    url: str | None
    inline: bool
    content_type: str | None
    filename: str | None
    kind: MediaKind
    decoded: DecodedMedia | None = None
    # Why this attachment could not be read (too large, corrupt, unsupported, refused URL): a
    # per-attachment error the decision reports, never a silent allow.
    error: str | None = None
    # Why no scorer reads this attachment at all (a video, a PDF, an archive: its bytes are not a
    # picture): reported on the decision, but not a failed check, so it does not hold the message.
    not_scanned: str | None = None


@dataclass(frozen=True, slots=True)
class BehaviourSnapshot:
    """The author's and channel's recent activity at the time of the message.

    Filled by `pipeline.features.behaviour.BehaviourExtractor` from windowed counters (Redis or
    in-process); None when no scorer needs it. `counters` maps a counter name (e.g.
    ``"author.msgs.60s"``, all listed in `behaviour.FEATURE_NAMES`) to its value;
    `near_duplicates` counts recent near-identical messages in the guild; `cluster_id` names the
    spam wave the message joined (None when it has no near-duplicates), so the decision can
    reference the whole cluster.
    """

    counters: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    near_duplicates: int = 0
    cluster_id: str | None = None


@dataclass(slots=True)
class ItemContext:
    """Per-message features, filled by the feature stage before the scorers read them.

    Mutable only while the stage runs; scorers treat it as read-only. `normalized_text` is None
    until computed (`ScoringItem.normalized_text` computes it on first read for items built
    without the stage, such as in unit tests and benches). `failed` maps a feature whose
    extractor failed to the reason; the service turns it into an error signal for each scorer
    that needs that feature.
    """

    normalized_text: str | None = None
    links: tuple[ExtractedLink, ...] = ()
    media: tuple[MediaRef, ...] = ()
    behaviour: BehaviourSnapshot | None = None
    failed: dict[Feature, str] = field(default_factory=dict)
    # Signals of the scorers that ran first, by scorer name, for a scorer that declares it reads
    # them (`Scorer.reads`); filled by the service, not the feature stage. Only successful ones.
    signals: dict[str, Signal] = field(default_factory=dict)

    def missing(self, needs: Iterable[Feature]) -> str | None:
        """Why a scorer needing `needs` cannot run on this item, or None when it can."""
        if not self.failed:
            return None
        reasons = [f"feature {f.value!r} unavailable: {self.failed[f]}" for f in needs if f in self.failed]
        return "; ".join(reasons) or None


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoringItem:
    """What a scorer sees: the message, whose it is, the guild's lists and the computed features.

    Everything after `message` is keyword-only: earlier versions took the normalised text as the
    second positional argument, and a silent reinterpretation of that string as `tenant_id`
    would be worse than a TypeError.
    """

    message: Message = field(kw_only=False)
    tenant_id: str = ""
    lists: GuildLists = EMPTY_LISTS
    context: ItemContext = field(default_factory=ItemContext)

    @property
    def normalized_text(self) -> str:
        """The evasion-aware normalised text (`pipeline.normalize`), computed once per message."""
        ctx = self.context
        text = ctx.normalized_text
        if text is None:
            text = ctx.normalized_text = normalize(self.message.text)
        return text
