"""TextScorer: the fine-tuned MiniLM text model behind the Scorer contract.

Two ways in, sharing one engine and one repeat cache:
- `score(items)`: the batched contract call (thread-safe), for the sync path and Celery workers;
- `submit(item)` / `await score_one_async(item)`: one message at a time, gathered by a
  `MicroBatcher` with concurrent callers into length-sorted batches on background threads;
  this is what a FastAPI handler serving one message per request should call.

The encoder is fine-tuned for toxicity, hate and spam; violence, self_harm, sexual, harassment and
scam come from small taxonomy heads over the same forward pass's pooled embedding
(`models.text.heads`, the artifact's heads.json). An artifact without heads scores only the first
three, and the others are reported unscored (null), never a fake 0.0. Each category is
read from the network output named in the artifact's `serving_heads` (toxicity comes from the OLID
head when it separates OLID validation better than the shared head, as it did for the committed
artifact).

Knobs: `Settings.text_*` (HERON_TEXT_QUANTIZE: auto | onnx-int8-sq | onnx-int8 | torch-int8 | fp32,
auto = the path `heron eval text` chose by measurement; HERON_TEXT_MAX_BATCH, HERON_TEXT_MAX_WAIT_MS,
HERON_TEXT_THREADS, HERON_TEXT_WORKERS, HERON_TEXT_GROUP, HERON_TEXT_CACHE_SIZE), passed in by
`from_settings`; constructor kwargs (for tests and benches) override them. Defaults were measured with
bench/bench_text.py on 2 cores: small length-sorted batches (8) drawn from up to 8 batches' worth of
queued requests, on 2 one-thread workers, beat batches of 32 (310 vs 196 msg/s under 64 callers),
because chat messages vary in length and a batch pads to its longest.

Scores are rounded to 4 decimals; note that the int8 paths quantise activations per batch, so a
text's last decimals can depend on its batch-mates. The cache pins the first answer for a text.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from models.text.canonical import canonicalize
from models.text.quantize import serving_quantize
from pipeline.normalize import normalize
from pipeline.scorers.base import Modality, Scorer, ScoringItem
from pipeline.settings import Settings, get_settings
from pipeline.types import Evidence, Signal

if TYPE_CHECKING:
    import numpy as np

    from models.text.batcher import LRUCache, MicroBatcher
    from models.text.engine import TextEngine

TRAINED_LABELS: tuple[str, ...] = ("toxicity", "hate", "spam")
# Categories the taxonomy heads can add (models/text/artifact/heads.json says which it has).
HEAD_LABELS: tuple[str, ...] = ("violence", "self_harm", "sexual", "harassment", "scam")
SCORE_DECIMALS = 4


class TextScorer(Scorer):
    """Multi-label text model scores (calibrated probabilities): toxicity, hate and spam from the
    encoder's head, the other categories from the taxonomy heads when the artifact has them."""

    name: ClassVar[str] = "text"
    modality: ClassVar[Modality] = Modality.TEXT
    labels: ClassVar[tuple[str, ...]] = TRAINED_LABELS + HEAD_LABELS
    batched: ClassVar[bool] = True  # one padded forward pass per batch
    async_single: ClassVar[bool] = True  # score_one_async awaits the micro-batcher, no thread hop
    micro_batching: ClassVar[bool] = True  # submit() gathers concurrent callers into shared batches

    def __init__(self, quantize: str | None = None, max_batch: int | None = None, max_wait_ms: float | None = None,
                 num_threads: int | None = None, workers: int | None = None, cache_size: int | None = None,
                 artifact_dir: Path | str | None = None, group: int | None = None,
                 settings: Settings | None = None) -> None:
        """Kwargs left None come from `settings` (default: the process settings)."""
        cfg = settings or get_settings()
        self.quantize = quantize or cfg.text_quantize
        self.max_batch = max_batch or cfg.text_max_batch
        self.group = group or cfg.text_group
        self.max_wait_ms = max_wait_ms if max_wait_ms is not None else cfg.text_max_wait_ms
        self.workers = workers or cfg.text_workers
        self.num_threads = num_threads or cfg.text_threads
        self.cache_size = cache_size if cache_size is not None else cfg.text_cache_size
        self.artifact_dir = Path(artifact_dir) if artifact_dir else None
        self._settings = cfg
        # Which registry version serves (pipeline/models_registry.py); None when an artifact folder
        # was given explicitly (tests, benches, a shadow candidate).
        self.registry_version: str | None = None
        self.version = "unloaded"
        self.engine: TextEngine | None = None
        self.cache: LRUCache | None = None
        self._batcher: MicroBatcher | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings=settings)

    # -- lifecycle ----------------------------------------------------------------------------
    def load(self, artifact_dir: Path | None = None) -> Self:
        """Load the artifact and start the micro-batcher threads. Which artifact: `artifact_dir`,
        else the one given to the constructor, else the version the model registry's serving.json
        names (`HERON_MODELS_DIR`), which is the bundled models/text/artifact when it names none."""
        if self.engine is not None and artifact_dir is None:
            return self
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from models.text.batcher import LRUCache, MicroBatcher
        from models.text.engine import TextEngine
        from pipeline.models_registry import Registry

        registry_version: str | None = None
        if artifact_dir is not None or self.artifact_dir is not None:
            directory = Path(artifact_dir or self.artifact_dir)  # type: ignore[arg-type]
        else:
            registry = Registry.from_settings(self._settings)
            registry_version = registry.serving("text")
            directory = registry.path("text", registry_version)
        mode = self._resolve_quantize(directory)
        cores = os.cpu_count() or 1
        threads = self.num_threads or max(1, cores // self.workers)
        engine = TextEngine(directory, quantize=mode, num_threads=threads, max_batch=self.max_batch,
                            sessions=self.workers)
        if tuple(engine.labels) != TRAINED_LABELS:
            raise ValueError(f"artifact at {directory} scores {engine.labels}, this scorer expects {TRAINED_LABELS}")
        unknown = set(engine.served_labels) - set(self.labels)
        if unknown:
            raise ValueError(f"artifact at {directory} has heads for {sorted(unknown)}, "
                             f"this scorer knows {self.labels}")
        self.close()
        self.engine = engine
        self.artifact_dir = directory
        self.registry_version = registry_version
        self.quantize = mode
        # Heads refitted on an unchanged encoder (`heron train text-heads --with-labels`) are a new
        # model too: their version joins the encoder's, so decisions name what actually scored.
        heads_version = engine.heads.config.get("version") if engine.heads is not None else None
        self.version = f"{engine.version}{'/' + heads_version if heads_version else ''}+{mode}"
        self.cache = LRUCache(self.cache_size)
        self._batcher = MicroBatcher(engine.encode, self._forward_ids, max_batch=self.max_batch,
                                     max_wait_ms=self.max_wait_ms, workers=self.workers, cache=self.cache,
                                     group=self.group, with_keys=True)
        return self

    def _resolve_quantize(self, directory: Path) -> str:
        return self.quantize if self.quantize != "auto" else serving_quantize(directory)

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None

    # -- helpers ------------------------------------------------------------------------------
    def _require(self) -> TextEngine:
        if self.engine is None:
            raise RuntimeError("TextScorer.load() has not been called")
        return self.engine

    def _forward_ids(self, seqs: Sequence[Sequence[int]], worker: int = 0,
                     texts: Sequence[str] | None = None) -> np.ndarray:
        """The batcher's forward: token ids and their model texts (the keys), which hybrid and window
        heads read besides the ids."""
        return self._require().served_from_ids(seqs, worker, texts)

    @staticmethod
    def model_text(item: ScoringItem) -> str:
        """What the model reads: the item's normalised text with mentions and links canonicalised."""
        normalized = item.normalized_text
        if not normalized.strip():
            normalized = normalize(item.message.text)
        return canonicalize(normalized)

    def applies_to(self, item: ScoringItem) -> bool:
        return bool(item.normalized_text.strip() or item.message.text.strip())

    def _signal(self, probs: Any, started: float) -> Signal:
        engine = self._require()
        scores = {lbl: round(float(p), SCORE_DECIMALS) for lbl, p in zip(engine.served_labels, probs, strict=True)}
        evidence = []
        ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
        thresholds = dict(zip(engine.served_labels, engine.served_thresholds.tolist(), strict=True))
        for cat, s in ranked:
            if s >= thresholds[cat]:
                evidence.append(Evidence(category=cat, detail=f"text model: {cat} {s:.2f} ≥ threshold "
                                                                f"{thresholds[cat]:.2f}"))
        if not evidence:
            cat, s = ranked[0]
            evidence.append(Evidence(category=cat, detail=f"text model: top category {cat} {s:.2f} below "
                                                            f"threshold {thresholds[cat]:.2f}"))
        return Signal(scorer=self.name, version=self.version, scores=scores, evidence=evidence,
                      latency_ms=(time.perf_counter() - started) * 1000)

    def _key_or_error(self, item: ScoringItem, started: float) -> str | Signal:
        """The item's cache/model key, or the error Signal that stands for it (empty or unreadable)."""
        try:
            if not self.applies_to(item):
                return self.error_signal("no text to score", started)
            return self.model_text(item)
        except Exception as exc:  # noqa: BLE001 - one unreadable item must not sink the others
            return self.error_signal(f"text scorer could not read the item: {type(exc).__name__}: {exc}", started)

    def _failed(self, exc: BaseException, started: float) -> Signal:
        return self.error_signal(f"text model failed: {type(exc).__name__}: {exc}", started)

    # -- the contract: batched ----------------------------------------------------------------
    def score(self, items: Sequence[ScoringItem]) -> list[Signal]:
        """One Signal per item, in order; repeats hit the cache, the rest run as one sorted batch."""
        started = time.perf_counter()
        if not items:
            return []
        engine = self._require()
        assert self.cache is not None
        out: list[Signal | None] = [None] * len(items)
        keys: list[str | None] = [None] * len(items)
        pending: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            key = self._key_or_error(it, started)
            if isinstance(key, Signal):
                out[i] = key
                continue
            keys[i] = key
            cached = self.cache.get(key)
            if cached is not None:
                out[i] = self._signal(cached, started)
            else:
                pending.setdefault(key, []).append(i)
        if pending:
            texts = list(pending)
            try:
                probs = engine.served_from_ids(engine.encode_batch(texts), texts=texts)
            except Exception as exc:  # noqa: BLE001 - a failed forward pass is a missing signal
                for idxs in pending.values():
                    for i in idxs:
                        out[i] = self._failed(exc, started)
            else:
                for text, row in zip(texts, probs, strict=True):
                    self.cache.put(text, row)
                    for i in pending[text]:
                        out[i] = self._signal(row, started)
        return [s for s in out if s is not None]

    # -- one at a time, micro-batched -----------------------------------------------------------
    def submit(self, item: ScoringItem) -> Future[Signal]:
        """Queue one item for the micro-batcher; the future resolves to its Signal (never raises)."""
        started = time.perf_counter()
        result: Future[Signal] = Future()
        if self._batcher is None:
            self._require()
            raise RuntimeError("TextScorer is closed")
        key = self._key_or_error(item, started)
        if isinstance(key, Signal):
            result.set_result(key)
            return result
        inner = self._batcher.submit(key)

        def done(f: Future[Any]) -> None:
            exc = f.exception()
            result.set_result(self._failed(exc, started) if exc is not None else self._signal(f.result(), started))

        inner.add_done_callback(done)
        return result

    async def score_one_async(self, item: ScoringItem) -> Signal:
        """`await` one item through the micro-batcher (for FastAPI handlers); never raises.

        The Signal is built here, on the caller's event loop, not on the batcher's worker thread:
        that thread's only job is to keep the forward pass busy.
        """
        started = time.perf_counter()
        if self._batcher is None:
            self._require()
            raise RuntimeError("TextScorer is closed")
        key = self._key_or_error(item, started)
        if isinstance(key, Signal):
            return key
        try:
            probs = await self._batcher.submit_async(key)
        except Exception as exc:  # noqa: BLE001 - a failed forward pass is a missing signal
            return self._failed(exc, started)
        return self._signal(probs, started)

    def status(self) -> dict[str, Any]:
        """For /readyz: which artifact serves and, when the registry chose it, its version there."""
        if self.engine is None:
            return {}
        return {"artifact": str(self.artifact_dir), "registry_version": self.registry_version or "explicit"}

    def stats(self) -> dict[str, Any]:
        """Cache and batching counters, for metrics endpoints and the bench."""
        b = self._batcher
        c = self.cache
        return {
            "quantize": self.quantize,
            "cache_hits": c.hits if c else 0,
            "cache_misses": c.misses if c else 0,
            "cache_size": len(c) if c else 0,
            "batches": b.batches if b else 0,
            "batched_messages": b.forwarded if b else 0,
        }

