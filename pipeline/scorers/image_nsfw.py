"""ImageNSFWScorer: nsfwjs's MobileNetV2, ported to torch, scores the `sexual` category of images.

Batched over everything at once: all frames of all image attachments of all messages in the
batch go through the network together (in chunks of `HERON_IMAGE_MAX_BATCH`), so a Celery worker
deciding 128 messages runs a few forward passes, not one per image. A message's score is its
worst frame's calibrated score (`models.image.nsfw.Calibration`: porn + hentai + half of sexy,
mapped so the policy's default thresholds sit at conservative raw values; see the model card).

No image attachment: an empty signal (nothing to say). Image attachments but none readable: an
error signal (a missing signal in the decision, never a 0.0). Some readable: the readable ones
are scored and the evidence says which were not. Results are cached by the image's sha256 (a
spam wave re-posts the same picture).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from cachetools import LRUCache

from pipeline.features.context import Feature
from pipeline.scorers.base import Modality, Scorer, ScoringItem
from pipeline.scorers.media_frames import Frame, frames_or_signal, has_images
from pipeline.settings import Settings, get_settings
from pipeline.types import Evidence, Signal

if TYPE_CHECKING:
    from models.image.nsfw import NSFWEngine

SCORE_DECIMALS = 4


class ImageNSFWScorer(Scorer):
    """`sexual` from the image classifier, the worst frame of the message's images."""

    name: ClassVar[str] = "image_nsfw"
    modality: ClassVar[Modality] = Modality.IMAGE
    labels: ClassVar[tuple[str, ...]] = ("sexual",)
    batched: ClassVar[bool] = True  # one forward pass over every frame of the batch
    needs: ClassVar[frozenset[Feature]] = frozenset({Feature.MEDIA})

    def __init__(
        self,
        backend: str | None = None,
        max_batch: int | None = None,
        num_threads: int | None = None,
        cache_size: int | None = None,
        artifact_dir: Path | str | None = None,
        settings: Settings | None = None,
    ) -> None:
        cfg = settings or get_settings()
        self.backend = backend or cfg.image_backend
        self.max_batch = max_batch or cfg.image_max_batch
        self.num_threads = num_threads or cfg.image_threads
        self.cache_size = cache_size if cache_size is not None else cfg.image_cache_size
        self.artifact_dir = Path(artifact_dir) if artifact_dir else None
        self.cache_dir = cfg.cache_dir
        self.version = "unloaded"
        self.engine: NSFWEngine | None = None
        self._cache: LRUCache[tuple[str, int], Any] = LRUCache(maxsize=max(1, self.cache_size))
        self._lock = threading.Lock()  # cachetools caches are not thread-safe

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings=settings)

    def load(self, artifact_dir: Path | None = None) -> Self:
        if self.engine is not None and artifact_dir is None:
            return self
        from models.image.nsfw import NSFWEngine

        self.engine = NSFWEngine(
            artifact_dir or self.artifact_dir,
            backend=self.backend,
            max_batch=self.max_batch,
            num_threads=self.num_threads,
        )
        self.version = self.engine.version
        return self

    def applies_to(self, item: ScoringItem) -> bool:
        return has_images(item)

    def status(self) -> dict[str, Any]:
        return {"ok": self.engine is not None, "detail": "ok" if self.engine else "not loaded", "backend": self.backend}

    def _cached(self, frame: Frame) -> Any:
        if not frame.sha256 or not self.cache_size:
            return None
        with self._lock:
            return self._cache.get((frame.sha256, frame.frame))

    def score(self, items: Sequence[ScoringItem]) -> list[Signal]:
        started = time.perf_counter()
        if not items:
            return []
        if self.engine is None:
            self.load()
        engine = self.engine
        assert engine is not None
        out: list[Signal | None] = [None] * len(items)
        per_item: list[tuple[list[Frame], list[str]]] = [([], [])] * len(items)
        todo: list[Frame] = []  # frames not in the cache, each once
        seen: set[tuple[str, int] | int] = set()
        for i, it in enumerate(items):
            got = frames_or_signal(self, it, started)
            if isinstance(got, Signal):
                out[i] = got
                continue
            frames, unread = got
            if not frames:
                out[i] = self.error_signal("no readable image: " + "; ".join(unread), started)
                continue
            per_item[i] = (frames, unread)
            for f in frames:
                key: tuple[str, int] | int = (f.sha256, f.frame) if f.sha256 else id(f)
                if key not in seen and self._cached(f) is None:
                    seen.add(key)
                    todo.append(f)
        fresh: dict[tuple[str, int] | int, Any] = {}
        if todo:
            try:
                probs = engine.probs([f.pixels for f in todo])
            except Exception as exc:  # noqa: BLE001 - a failed forward pass is a missing signal
                err = self.error_signal(f"image model failed: {type(exc).__name__}: {exc}", started)
                return [o if o is not None else err for o in out]
            for f, row in zip(todo, probs, strict=True):
                fresh[(f.sha256, f.frame) if f.sha256 else id(f)] = row
                if f.sha256 and self.cache_size:
                    with self._lock:
                        self._cache[(f.sha256, f.frame)] = row
        for i, (frames, unread) in enumerate(per_item):
            if out[i] is not None:
                continue
            rows = [fresh.get((f.sha256, f.frame) if f.sha256 else id(f)) for f in frames]
            rows = [r if r is not None else self._cached(f) for r, f in zip(rows, frames, strict=True)]
            out[i] = self._signal(frames, rows, unread, started)
        return [s for s in out if s is not None]

    def _signal(self, frames: list[Frame], rows: list[Any], unread: list[str], started: float) -> Signal:
        import numpy as np

        from models.image.mobilenet_v2 import CLASSES

        engine = self.engine
        assert engine is not None
        probs = np.stack(rows)
        scores = engine.sexual_scores(probs)
        worst = int(scores.argmax())
        top = probs[worst]
        score = round(float(scores[worst]), SCORE_DECIMALS)
        classes = ", ".join(f"{c} {top[k]:.2f}" for k, c in enumerate(CLASSES))
        evidence = [
            Evidence(category="sexual", detail=f"{frames[worst].source}: image model sexual {score:.2f} ({classes})")
        ]
        if unread:
            evidence.append(Evidence(category="sexual", detail="not scored: " + "; ".join(unread)))
        return Signal(
            scorer=self.name, version=self.version, scores={"sexual": score}, evidence=evidence, latency_ms=_ms(started)
        )


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
