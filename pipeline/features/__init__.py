"""The feature stage: per-message context computed once, before the scorers.

Layout: `context` (the typed `ItemContext` and `ScoringItem`), `stage` (`FeatureExtractor`,
`FeatureStage`), one module per extractor (`text`, `links`, `media`). To add a feature: a field
on `ItemContext` (and a `Feature` member), an extractor class, an entry in `EXTRACTORS` after the
extractors it reads from; scorers then list the feature in their `needs`.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.features.behaviour import BehaviourExtractor
from pipeline.features.context import (
    BehaviourSnapshot,
    DecodedMedia,
    ExtractedLink,
    Feature,
    ItemContext,
    MediaRef,
    ScoringItem,
)
from pipeline.features.decode import DecodeExtractor
from pipeline.features.links import LinkExtractor, extract_links
from pipeline.features.media import MediaExtractor
from pipeline.features.stage import FeatureExtractor, FeatureStage
from pipeline.features.text import TextExtractor
from pipeline.guilds import EMPTY_LISTS, GuildLists
from pipeline.settings import Settings, get_settings
from pipeline.types import Message

# Every known extractor, in run order (decode after media: it reads the references; behaviour last:
# it reads the normalised text and links).
EXTRACTORS: tuple[type[FeatureExtractor], ...] = (
    TextExtractor,
    LinkExtractor,
    MediaExtractor,
    DecodeExtractor,
    BehaviourExtractor,
)


def build_stage(needs: Iterable[Feature] | None = None, settings: Settings | None = None) -> FeatureStage:
    """A stage with the extractors that provide `needs` (all of them when None), in run order.

    The service asks only for what its scorers need, so a deployment without a link scorer
    does not pay for link extraction.
    """
    wanted = set(Feature) if needs is None else set(needs)
    for cls in EXTRACTORS:
        if cls.provides & wanted:
            wanted |= cls.requires
    settings = settings or get_settings()
    return FeatureStage(cls.from_settings(settings) for cls in EXTRACTORS if cls.provides & wanted)


def prepare(
    message: Message, lists: GuildLists = EMPTY_LISTS, tenant_id: str = "", stage: FeatureStage | None = None
) -> ScoringItem:
    """One item with its features filled (every extractor unless `stage` says otherwise): for
    tests, benches and tools that call a scorer directly, outside `ModerationService`."""
    item = ScoringItem(message, tenant_id=tenant_id, lists=lists)
    (stage or build_stage()).run([item])
    return item


__all__ = [
    "EXTRACTORS",
    "BehaviourExtractor",
    "BehaviourSnapshot",
    "DecodeExtractor",
    "DecodedMedia",
    "ExtractedLink",
    "Feature",
    "FeatureExtractor",
    "FeatureStage",
    "ItemContext",
    "LinkExtractor",
    "MediaExtractor",
    "MediaRef",
    "ScoringItem",
    "TextExtractor",
    "build_stage",
    "extract_links",
    "prepare",
]
