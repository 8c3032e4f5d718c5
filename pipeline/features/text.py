"""The normalised text, computed once per message for every text scorer (rules, the text model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pipeline.features.context import Feature, ScoringItem
from pipeline.features.stage import FeatureExtractor
from pipeline.normalize import normalize


class TextExtractor(FeatureExtractor):
    """Fills `ItemContext.normalized_text` with `pipeline.normalize.normalize(message.text)`."""

    name: ClassVar[str] = "text"
    provides: ClassVar[frozenset[Feature]] = frozenset({Feature.TEXT})

    def extract(self, items: Sequence[ScoringItem]) -> None:
        for item in items:
            item.context.normalized_text = normalize(item.message.text)
