"""The feature stage: extractors fill each message's `ItemContext` once, before the scorers run.

An extractor is a small class with a `name`, the `provides` features it fills and a batched
`extract(items)` that writes into `item.context`. Cheap, pure extractors (normalisation, link
extraction, attachment references) are `inline`: the stage calls them directly, so a text
message pays microseconds and no thread hop on the sync API's hot path. An extractor that does
I/O or heavy work (decoding images, Redis counters) sets `inline = False` or overrides
`extract_async`; the async path then awaits it, and the sync path (Celery workers) calls
`extract` as usual.

Failure is per feature and per item, never a crash: when `extract` raises for a batch, the
stage retries the items one by one so that one bad message does not cost the others their
features, and marks the features of the items that still fail in `ItemContext.failed`. Scorers
that need a failed feature then get an error signal (see `ModerationService`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import ClassVar, Self

from pipeline.features.context import Feature, ScoringItem
from pipeline.settings import Settings

log = logging.getLogger(__name__)


class FeatureExtractor:
    """Computes one or more features for a batch of items, in place on `item.context`."""

    name: ClassVar[str]
    provides: ClassVar[frozenset[Feature]]
    # Features this extractor reads from earlier extractors (behaviour reads the text and links):
    # `build_stage` adds their extractors whenever this one runs.
    requires: ClassVar[frozenset[Feature]] = frozenset()
    # Cheap and free of I/O (well under a millisecond per message): safe to call on the API's
    # event loop. Otherwise the default `extract_async` runs `extract` on a thread.
    inline: ClassVar[bool] = True

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build from the process settings; extractors with knobs (a Redis URL, a model) override."""
        return cls()

    def extract(self, items: Sequence[ScoringItem]) -> None:
        """Fill this extractor's features on every item's context; may raise (see the stage)."""
        raise NotImplementedError

    async def extract_async(self, items: Sequence[ScoringItem]) -> None:
        """The event-loop variant; override for native async I/O (e.g. an async Redis client)."""
        if self.inline:
            self.extract(items)
        else:
            await asyncio.to_thread(self.extract, items)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or threads; most extractors hold none."""


class FeatureStage:
    """Runs extractors in order (an extractor may read what an earlier one filled)."""

    def __init__(self, extractors: Iterable[FeatureExtractor]) -> None:
        self.extractors = tuple(extractors)
        names = [e.name for e in self.extractors]
        if len(names) != len(set(names)):
            raise ValueError(f"duplicate feature extractor names: {names}")
        # True when every extractor runs inline with the base `extract_async`: the async path can
        # then call `run` directly, without a coroutine per extractor.
        self.sync_only = all(
            e.inline and type(e).extract_async is FeatureExtractor.extract_async for e in self.extractors
        )

    @property
    def provides(self) -> frozenset[Feature]:
        return frozenset().union(*(e.provides for e in self.extractors))

    def split(self, first: frozenset[Feature]) -> tuple[FeatureStage, FeatureStage]:
        """(the extractors `first` needs, with the ones they require; the rest), each in order.

        Why: the service runs the second part on a thread while the scorers that need only the
        first part score (the behaviour counters, with their Redis round trip, overlap the text
        model's forward pass, which does not read them)."""
        wanted = set(first)
        early: set[str] = set()
        for extractor in reversed(self.extractors):
            if extractor.provides & wanted:
                early.add(extractor.name)
                wanted |= extractor.requires
        return (
            FeatureStage(e for e in self.extractors if e.name in early),
            FeatureStage(e for e in self.extractors if e.name not in early),
        )

    def run(self, items: Sequence[ScoringItem]) -> None:
        """Fill every item's context with every extractor's features (on this thread)."""
        for extractor in self.extractors:
            try:
                extractor.extract(items)
            except Exception as exc:  # noqa: BLE001 - a feature failure is a missing feature, never a crash
                if len(items) == 1:
                    _mark_failed(extractor, items[0], exc)
                    continue
                for item in items:
                    try:
                        extractor.extract([item])
                    except Exception as one:  # noqa: BLE001
                        _mark_failed(extractor, item, one)

    async def run_async(self, items: Sequence[ScoringItem]) -> None:
        """As `run`, awaiting extractors that do I/O instead of blocking the event loop."""
        if self.sync_only:
            self.run(items)
            return
        for extractor in self.extractors:
            try:
                await extractor.extract_async(items)
            except Exception as exc:  # noqa: BLE001
                if len(items) == 1:
                    _mark_failed(extractor, items[0], exc)
                    continue
                for item in items:
                    try:
                        await extractor.extract_async([item])
                    except Exception as one:  # noqa: BLE001
                        _mark_failed(extractor, item, one)

    def close(self) -> None:
        for extractor in self.extractors:
            extractor.close()


def _mark_failed(extractor: FeatureExtractor, item: ScoringItem, exc: BaseException) -> None:
    log.warning("feature extractor %s failed", extractor.name, exc_info=exc)
    reason = f"{extractor.name} extractor failed: {type(exc).__name__}: {exc}"
    for feature in extractor.provides:
        item.context.failed[feature] = reason
