"""The spam-text scorer: n-gram spam probability of the message text (`models.spam.model`).

It complements the text model's spam head: the ensemble averages the two ``spam`` scores (equal
weights by default), the combination `heron eval spam` measures on SMS and on YouTube videos the
models never saw. (The behaviour model reads the text model's ``spam`` score, not this one's.)

Cheap (hashing plus one sparse dot product per message, no I/O), so it runs inline. A missing or
altered artifact is a load error: the scorer cannot run without its weights.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from pipeline.scorers.base import Modality, Scorer, ScoringItem
from pipeline.settings import Settings
from pipeline.types import Evidence, Signal


class SpamTextScorer(Scorer):
    name: ClassVar[str] = "spam_text"
    modality: ClassVar[Modality] = Modality.TEXT
    labels: ClassVar[tuple[str, ...]] = ("spam",)
    inline: ClassVar[bool] = True
    batched: ClassVar[bool] = True

    def __init__(self, artifact_dir: Path | None = None) -> None:
        self._dir = artifact_dir
        self._model: Any = None
        self.version = "unloaded"

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls()

    def load(self, artifact_dir: Path | None = None) -> Self:
        from models.spam.model import DEFAULT_ARTIFACT_DIR, SpamTextModel

        self._model = SpamTextModel.load(artifact_dir or self._dir or DEFAULT_ARTIFACT_DIR)
        self.version = self._model.version
        return self

    def status(self) -> dict[str, Any]:
        return {"ok": self._model is not None, "version": self.version}

    def score(self, items: Sequence[ScoringItem]) -> list[Signal]:
        if self._model is None:
            self.load()
        started = time.perf_counter()
        todo = [i for i, item in enumerate(items) if item.message.text.strip()]
        try:
            probs = self._model.score([items[i].message.text for i in todo])
        except Exception as exc:  # noqa: BLE001 - a failed batch is error signals, not an exception
            return [self.error_signal(f"{type(exc).__name__}: {exc}", started) for _ in items]
        latency = (time.perf_counter() - started) * 1000 / max(len(items), 1)
        out = [Signal(scorer=self.name, version=self.version, latency_ms=latency) for _ in items]
        threshold = self._model.config.own_threshold
        for i, p in zip(todo, probs, strict=True):
            score = round(float(p), 4)
            evidence = (
                [Evidence(category="spam", detail=f"spam-text model {score:.2f} ≥ {threshold:.2f}")]
                if score >= threshold
                else []
            )
            out[i] = Signal(
                scorer=self.name, version=self.version, scores={"spam": score}, evidence=evidence, latency_ms=latency
            )
        return out
