"""The Scorer contract: one abstract base, every scorer a subclass plus a registry entry.

Modelled on python-threatexchange's signal types: a new scorer is a subclass, named uniquely,
and it inherits the contract tests in tests/contract/ by being in the registry.

Scorers declare what they can do as class attributes (see `Capabilities`) instead of callers
probing with `getattr`: the service, the warm-up and the metrics read the declaration, and the
base class provides working defaults for every optional method, so a caller never has to ask
whether a method exists. A declaration that the class does not back up (say `async_single`
without its own `score_one_async`) fails at class definition, not under traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Self

from pipeline.features.context import CONTENT_FEATURES, Feature, ItemContext, ScoringItem
from pipeline.settings import Settings
from pipeline.types import Signal

log = logging.getLogger(__name__)

__all__ = ["Capabilities", "Feature", "ItemContext", "Modality", "Scorer", "ScoringItem"]


class Modality(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    BEHAVIOR = "behavior"
    LINK = "link"


@dataclass(frozen=True)
class Capabilities:
    """What a scorer declares it can do (read it with `Scorer.capabilities()`).

    - `inline`: cheap enough (well under a millisecond, no I/O) to run on the API's event loop;
      otherwise the async path runs it on a thread, so a slow scorer cannot stall other requests.
    - `batched`: `score(items)` amortises work over the batch (one forward pass), so queue
      workers should hand it many messages at once; list scorers loop per item and gain nothing.
    - `async_single`: has its own `score_one_async`, awaited on the event loop (e.g. a
      micro-batcher future) instead of a thread hop.
    - `micro_batching`: has its own `submit(item) -> Future`, gathering concurrent callers into
      shared forward passes; the warm-up exercises it.
    - `needs`: the features it reads from `ScoringItem.context`; the service runs only the
      extractors that some scorer needs, gives a scorer an error signal when one of its features
      failed, and `applies_to` defaults from it.
    """

    inline: bool
    batched: bool
    async_single: bool
    micro_batching: bool
    needs: frozenset[Feature]


class Scorer(ABC):
    """Turns messages into Signals, in batches.

    Contract (checked by tests/contract for every registered scorer):
    - `score` returns exactly one Signal per item, in order, with `scorer == name`;
    - scores only use `labels`, each in [0, 1];
    - a scorer that cannot score an item returns a Signal with `error` set, never a fake 0.0;
    - `load` returns self so `Scorer().load(path)` reads naturally; scorers without artifacts
      accept None;
    - `from_settings(settings)` builds it from the process settings;
    - the declared capabilities hold (`score_one_async` and `submit` give the same Signal as
      `score`).
    """

    name: ClassVar[str]
    modality: ClassVar[Modality]
    labels: ClassVar[tuple[str, ...]]
    version: str = "0"

    # Declared capabilities (see `Capabilities`); subclasses override what differs.
    inline: ClassVar[bool] = False
    batched: ClassVar[bool] = False
    async_single: ClassVar[bool] = False
    micro_batching: ClassVar[bool] = False
    needs: ClassVar[frozenset[Feature]] = frozenset({Feature.TEXT})
    # Other scorers (by registry name) whose loaded instance this one can use instead of loading
    # its own copy (the OCR scorer reads image text with the text model); see `reuse`.
    reuses: ClassVar[tuple[str, ...]] = ()
    # Other scorers whose signals this one reads, by name, from `ItemContext.signals`: the service
    # runs every scorer that reads nothing first and hands their signals over, so a combining
    # model (the behaviour model reads the text model's spam score) costs no second pass of the
    # model it reads. A named scorer that is not configured, does not apply or failed is simply
    # absent from `signals`; readers of readers are not supported (one level).
    reads: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for flag, method in (("async_single", "score_one_async"), ("micro_batching", "submit")):
            declared = bool(getattr(cls, flag))
            overridden = getattr(cls, method) is not getattr(Scorer, method)
            if declared != overridden:
                raise TypeError(
                    f"{cls.__name__}: `{flag} = {declared}` but it {'overrides' if overridden else 'lacks'} "
                    f"`{method}`; declare the capability together with the method that backs it"
                )

    @classmethod
    def capabilities(cls) -> Capabilities:
        return Capabilities(cls.inline, cls.batched, cls.async_single, cls.micro_batching, cls.needs)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build from the process settings (`HERON_*`); scorers with knobs override this."""
        return cls()

    def load(self, artifact_dir: Path | None = None) -> Self:
        return self

    def reuse(self, peers: Mapping[str, Scorer]) -> None:  # noqa: B027 - optional hook
        """Before `load`: the already loaded scorers named in `reuses` that this process also
        runs. A scorer that takes one uses it instead of loading its own (one text model in
        memory, not two) and leaves closing it to its owner. Default: nothing to reuse."""

    @abstractmethod
    def score(self, items: Sequence[ScoringItem]) -> list[Signal]:
        """Score a batch; one Signal per item, in order."""

    async def score_one_async(self, item: ScoringItem) -> Signal:
        """One item on the event loop. Default: `score` inline when `inline`, else on a thread.

        Never raises: a failure is an error signal. Scorers that declare `async_single` override
        it with something better than a thread hop (the service only calls it for those)."""
        started = time.perf_counter()
        try:
            if self.inline:
                return self.score([item])[0]
            return (await asyncio.to_thread(self.score, [item]))[0]
        except Exception as exc:  # noqa: BLE001 - a scorer failure is a missing signal, not a crash
            log.exception("%s: scoring failed", self.name)
            return self.error_signal(f"{type(exc).__name__}: {exc}", started)

    def submit(self, item: ScoringItem) -> Future[Signal]:
        """Queue one item; the future resolves to its Signal and never raises. Default: scored
        now, on the caller's thread. Scorers that declare `micro_batching` batch concurrent calls."""
        started = time.perf_counter()
        result: Future[Signal] = Future()
        try:
            result.set_result(self.score([item])[0])
        except Exception as exc:  # noqa: BLE001
            log.exception("%s: scoring failed", self.name)
            result.set_result(self.error_signal(f"{type(exc).__name__}: {exc}", started))
        return result

    def applies_to(self, item: ScoringItem) -> bool:
        """Whether this scorer has anything to say, from `needs` by default: a scorer of content
        (text, links, media) applies when the message has any of the content it reads (a text
        scorer skips an image-only message, a media scorer a text-only one); a scorer of
        behaviour alone applies to every message."""
        needs = self.needs
        if not needs & CONTENT_FEATURES:
            return True
        ctx = item.context
        return bool(
            (Feature.TEXT in needs and item.message.text.strip())
            or (Feature.LINKS in needs and ctx.links)
            or (Feature.MEDIA in needs and ctx.media)
        )

    def status(self) -> dict[str, Any]:
        """Readiness detail (`ok`, a human `detail`, anything else worth showing); empty means
        healthy with nothing to add. Scorers with artifacts or lists to load override it."""
        return {}

    def stats(self) -> dict[str, Any]:
        """Counters for /metrics (see api/metrics.py for the names it exports); none by default."""
        return {}

    def score_each(self, items: Sequence[ScoringItem], one: Callable[[ScoringItem, float], Signal]) -> list[Signal]:
        """Score items one by one; an item that raises becomes an error signal, not a lost batch."""
        out: list[Signal] = []
        for item in items:
            started = time.perf_counter()
            try:
                out.append(one(item, started))
            except Exception as exc:  # noqa: BLE001 - one bad item must not sink the batch
                log.exception("%s: scoring failed", self.name)
                out.append(self.error_signal(f"{type(exc).__name__}: {exc}", started))
        return out

    def error_signal(self, error: str, started: float | None = None) -> Signal:
        latency = (time.perf_counter() - started) * 1000 if started is not None else 0.0
        return Signal(scorer=self.name, version=self.version, error=error, latency_ms=latency)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release threads or sessions; most scorers hold none."""
