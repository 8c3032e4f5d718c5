"""The plain scorer registry: a tuple of entries, names checked unique at import.

Entries name their class by import path so that importing the registry stays cheap (no torch)
until a scorer is actually built.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.scorers.base import Scorer
from pipeline.settings import Settings, get_settings

log = logging.getLogger(__name__)


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


def load_many(names: Sequence[str], settings: Settings) -> tuple[list[Scorer], dict[str, str]]:
    """(loaded scorers in the order named, {name: why it failed to load}) for one process.

    Scorers that declare `reuses` are loaded after the others and handed the loaded instances
    they name (`Scorer.reuse`), so for example `image_ocr` reads image text with the same text
    model as `text` instead of a second copy. A scorer that fails to load is reported, not fatal."""
    built: list[tuple[str, Scorer]] = []
    failed: dict[str, str] = {}
    for name in names:
        try:
            built.append((name, get_entry(name).load_class().from_settings(settings)))
        except Exception as exc:  # noqa: BLE001 - any failure makes the signal unavailable
            log.exception("scorer %s failed to load", name)
            failed[name] = f"failed to load: {type(exc).__name__}: {exc}"
    loaded: dict[str, Scorer] = {}
    for name, scorer in sorted(built, key=lambda b: bool(b[1].reuses)):  # stable: peers first
        try:
            scorer.reuse({n: loaded[n] for n in scorer.reuses if n in loaded})
            loaded[name] = scorer.load()
        except Exception as exc:  # noqa: BLE001
            log.exception("scorer %s failed to load", name)
            failed[name] = f"failed to load: {type(exc).__name__}: {exc}"
    return [loaded[n] for n, _ in built if n in loaded], {n: failed[n] for n in names if n in failed}


def build(name: str, settings: Settings | None = None) -> Scorer:
    """Build a registered scorer from the settings (default: the process's) and load it."""
    return get_entry(name).load_class().from_settings(settings or get_settings()).load()
