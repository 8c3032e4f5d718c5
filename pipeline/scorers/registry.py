"""The plain scorer registry: a tuple of entries, names checked unique at import.

Entries name their class by import path so that importing the registry stays cheap (no torch)
until a scorer is actually built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from pipeline.scorers.base import Scorer
from pipeline.settings import Settings, get_settings


@dataclass(frozen=True)
class ScorerEntry:
    name: str
    target: str  # "module:Class"

    def load_class(self) -> type[Scorer]:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


REGISTRY: tuple[ScorerEntry, ...] = (
    ScorerEntry("rules", "pipeline.scorers.rules:RulesScorer"),
    ScorerEntry("links", "pipeline.scorers.links:LinkScorer"),
    ScorerEntry("text", "pipeline.scorers.text:TextScorer"),
    ScorerEntry("behaviour", "pipeline.scorers.behaviour:BehaviourScorer"),
    ScorerEntry("image_hash", "pipeline.scorers.image_hash:ImageHashScorer"),
    ScorerEntry("spam_text", "pipeline.scorers.spam_text:SpamTextScorer"),
    # Images (need the decoded frames, Feature.MEDIA): the NSFW classifier, QR codes, OCR.
    ScorerEntry("image_nsfw", "pipeline.scorers.image_nsfw:ImageNSFWScorer"),
    ScorerEntry("image_qr", "pipeline.scorers.image_scam:QRScorer"),
    ScorerEntry("image_ocr", "pipeline.scorers.image_scam:OCRScorer"),
)

_names = [e.name for e in REGISTRY]
if len(_names) != len(set(_names)):
    raise RuntimeError(f"duplicate scorer names in registry: {_names}")

BY_NAME: dict[str, ScorerEntry] = {e.name: e for e in REGISTRY}


def get_entry(name: str) -> ScorerEntry:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown scorer {name!r}; registered: {', '.join(BY_NAME)}") from None


def build(name: str, settings: Settings | None = None) -> Scorer:
    """Build a registered scorer from the settings (default: the process's) and load it."""
    return get_entry(name).load_class().from_settings(settings or get_settings()).load()
