"""Combine scorer Signals into one score per category.

Rules (pure, no I/O):
- Model signals are averaged per category with per-(scorer, category) weights, renormalised over
  the signals that are present: a scorer that failed, or that does not cover a category, takes no
  part, so a missing signal never counts as zero.
- Definitive signals (exact list matches) set a floor: a blocked word scores 1.0 in its category
  whatever the models say, and a list that did not match pulls no model score down.
- Floor scorers (`EnsembleConfig.floor_scorers`, the behaviour scorer by default) also set a
  floor with their scores, and their evidence is kept: behaviour is about the author, not the
  words, so a raid of harmless words ("hi all") is not averaged away by a text model that rightly
  finds the words harmless.
- Superseding signals (`Signal.supersedes`): a scorer that read the others' votes for a category
  and combined them with what only it knows replaces those votes there. The behaviour scorer does
  this for `spam` when it knows the author (account and membership dates given): its model was
  trained on the text model's spam score *and* the author's behaviour, so "check this out
  <link>" from a member of two years chatting at a normal pace is not blocked on the text
  model's YouTube-spam reading of the words, while the same words from a 10-minute-old account
  posting in five channels still are. Definitive list matches keep their floor.
- A model vote is capped at `MODEL_CEILING` (0.9999): 1.0 means certain, and only floors are.
- Every category appears in the result; a category no signal covered scores None (null on the
  wire), is listed in `uncovered`, and `unscored` says why: a 0.0 would read as "checked and clean".
- Learned weights (`EnsembleConfig.stacking`, `pipeline/stacking.py`, off unless
  HERON_ENSEMBLE_STACKING names a file): where the learned model covers a category, its logistic
  score over every answered signal replaces the weighted average; floors still apply on top, so a
  list match or a raid is never learned away.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.stacking import Stacking, feature_values, observed
from pipeline.taxonomy import CATEGORY_NAMES
from pipeline.types import Action, Evidence, Signal

# A model's vote never reaches 1.0 (a text model's 0.99996 rounds to it): the policies' 1.0 rules
# (spam and scam -> timeout_author) are for certainty, which only floors give: a list match, a
# hash-bank match, or the behaviour scorer's certain level (a confident score on a repeat).
MODEL_CEILING = 0.9999


@dataclass(frozen=True)
class EnsembleConfig:
    """Per-scorer, per-category weights; anything not named weighs `default_weight`."""

    weights: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    default_weight: float = 1.0
    # Scorers whose scores are floors rather than votes (see the module docstring).
    floor_scorers: frozenset[str] = frozenset({"behaviour"})
    # Learned per-category weights (pipeline/stacking.py); None: the hand-set weights above.
    stacking: Stacking | None = None

    def weight(self, scorer: str, category: str) -> float:
        per_scorer = self.weights.get(scorer, {})
        return float(per_scorer.get(category, per_scorer.get("*", self.default_weight)))


@dataclass
class EnsembleResult:
    scores: dict[str, float | None]  # None = no signal covered the category (see `unscored`)
    contributors: dict[str, list[str]]
    # Evidence of list matches (definitive signals), by category: the "why" a person reads. A
    # model's own evidence only restates its score, which the reason already shows.
    evidence: dict[str, list[tuple[str, Evidence]]]
    missing: list[str]
    uncovered: list[str]
    # Actions definitive signals force (scorer, action, why): a hash bank set to always block.
    forced: list[tuple[str, Action, str]] = field(default_factory=list)
    unscored: dict[str, str] = field(default_factory=dict)  # category -> why it has no score


def unscored_reason(category: str, missing: Sequence[str], coverage: Mapping[str, Sequence[str]] | None) -> str:
    """Why `category` got no score: a scorer that covers it failed, or none covers it."""
    if coverage is not None:
        failed = [s for s in missing if category in coverage.get(s, ())]
        if failed:
            return f"not scored: {', '.join(sorted(set(failed)))} unavailable"
        answered = sorted(s for s, labels in coverage.items() if category in labels)
        if answered:
            return f"not scored: {', '.join(answered)} gave no score for it (no model or list for it here)"
        return "not scored: no configured scorer covers this category"
    if missing:
        return f"not scored: no signal (unavailable: {', '.join(sorted(set(missing)))})"
    return "not scored: no configured scorer covers this category"


def combine(
    signals: Sequence[Signal], config: EnsembleConfig | None = None, coverage: Mapping[str, Sequence[str]] | Any = None
) -> EnsembleResult:
    """Fold one message's signals into per-category scores.

    `coverage` (scorer name -> the categories it can score) only sharpens the `unscored` reasons."""
    config = config or EnsembleConfig()
    sums: dict[str, float] = {}
    totals: dict[str, float] = {}
    floors: dict[str, float] = {}
    contributors: dict[str, list[str]] = {c: [] for c in CATEGORY_NAMES}
    evidence: dict[str, list[tuple[str, Evidence]]] = {c: [] for c in CATEGORY_NAMES}
    missing: list[str] = []
    forced: list[tuple[str, Action, str]] = []
    listed: dict[str, list[str]] = {}  # category -> list scorers that checked it (match or not)
    superseding: dict[str, float] = {}  # category -> the superseding signal's score
    for signal in signals:
        if signal.ok:
            for category in signal.supersedes:
                if category in signal.scores:
                    superseding[category] = max(superseding.get(category, 0.0), signal.scores[category])

    for signal in signals:
        if not signal.ok:
            missing.append(signal.scorer)
            continue
        floor_like = signal.definitive or signal.scorer in config.floor_scorers
        for category, score in signal.scores.items():
            if floor_like:
                if signal.definitive:
                    listed.setdefault(category, []).append(signal.scorer)
                if score > 0.0:
                    floors[category] = max(floors.get(category, 0.0), score)
                    contributors[category].append(signal.scorer)
                continue
            if category in superseding:
                continue  # its vote was read by the superseding signal (see the module docstring)
            w = config.weight(signal.scorer, category)
            if w <= 0.0:
                continue
            sums[category] = sums.get(category, 0.0) + w * score
            totals[category] = totals.get(category, 0.0) + w
            contributors[category].append(signal.scorer)
        for ev in signal.evidence if floor_like else ():
            if ev.category in evidence:
                evidence[ev.category].append((signal.scorer, ev))
        if signal.action is not None:
            forced.append((signal.scorer, signal.action, "; ".join(e.detail for e in signal.evidence)))

    scores: dict[str, float | None] = {}
    uncovered: list[str] = []
    unscored: dict[str, str] = {}
    obs = observed(signals) if config.stacking is not None else {}
    features = feature_values(obs) if obs else {}
    for category in CATEGORY_NAMES:
        model = sums[category] / totals[category] if totals.get(category) else None
        floor = floors.get(category)
        if config.stacking is not None and (model is not None or floor is not None):
            learned = config.stacking.predict(category, obs, features)
            if learned is not None:
                model = learned
        if category in superseding:
            model = superseding[category]
        if model is None and floor is None:
            uncovered.append(category)
            scores[category] = None
            unscored[category] = unscored_reason(category, missing, coverage)
            if category in listed:  # a list miss is a check, not a score: say so
                lists = ", ".join(sorted(set(listed[category])))
                unscored[category] += f" (no model scores it; {lists} found no match)"
            continue
        if model is not None:
            model = min(model, MODEL_CEILING)
        scores[category] = round(min(1.0, max(model or 0.0, floor or 0.0)), 4)
    return EnsembleResult(scores, contributors, evidence, missing, uncovered, forced=forced, unscored=unscored)
