"""The Scorer contract: one abstract base, every scorer a subclass plus a registry entry.

Modelled on python-threatexchange's signal types: a new scorer is a subclass, named uniquely,
and it inherits the contract tests in tests/contract/ by being in the registry.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import ClassVar, Self

from pipeline.guilds import EMPTY_LISTS, GuildLists
from pipeline.types import Message, Signal

log = logging.getLogger(__name__)


class Modality(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    BEHAVIOR = "behavior"
    LINK = "link"




@dataclass(frozen=True)
class ScoringItem:
    """What a scorer sees: the message, its normalised text (computed once) and guild lists."""

    message: Message
    normalized_text: str
    lists: GuildLists = EMPTY_LISTS


class Scorer(ABC):
    """Turns messages into Signals, in batches.

    Contract (checked by tests/contract for every registered scorer):
    - `score` returns exactly one Signal per item, in order, with `scorer == name`;
    - scores only use `labels`, each in [0, 1];
    - a scorer that cannot score an item returns a Signal with `error` set, never a fake 0.0;
    - `load` returns self so `Scorer().load(path)` reads naturally; scorers without artifacts
      accept None.
    """

    name: ClassVar[str]
    modality: ClassVar[Modality]
    labels: ClassVar[tuple[str, ...]]
    version: str = "0"
    # Cheap enough (well under a millisecond, no I/O) to run on the API's event loop; anything
    # else runs on a thread so that a slow scorer cannot stall other requests or the budget.
    inline: ClassVar[bool] = False

    def load(self, artifact_dir: Path | None = None) -> Self:
        return self

    @abstractmethod
    def score(self, items: Sequence[ScoringItem]) -> list[Signal]:
        """Score a batch; one Signal per item, in order."""

    def applies_to(self, item: ScoringItem) -> bool:
        """Whether this scorer has anything to say (a text scorer skips image-only messages)."""
        return True

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
