"""Learned ensemble weights ("stacking"): per category, a logistic regression over the scorers' signals.

The hand-set ensemble (`pipeline/ensemble.py`) averages the scorers' scores for a category with
fixed weights. Review labels say which of those scores were right, so the weights can be learned:
`heron train stacking` fits, per category, a logistic regression over every answered scorer's
scores (all categories, not just the one being predicted: a harassment verdict is also told by the
text model's toxicity score) and writes a file this module loads. Serving with it is opt-in
(`HERON_ENSEMBLE_STACKING=path`); the file is validated at start-up and a bad one is refused there,
not on the first message.

Features, the same at training and serving time (`feature_values`):
- `scorer/category`: the logit of that scorer's score, clipped to [1e-4, 1 - 1e-4] (scores carry
  4 decimals), so a weight of 1 on the text model's own logit and 0 elsewhere is the identity;
- `scorer`: 1.0 when the scorer gave any score for this message (its intercept shift).
A scorer that did not answer contributes nothing; a model whose training examples nearly always had
a scorer (`requires`) is not used without it: the category falls back to the hand-set average
rather than extrapolate.

This module is pure Python (no numpy, no scikit-learn): it runs in every serving process.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.taxonomy import CATEGORY_NAMES
from pipeline.types import Signal

SCHEMA = "heron.ensemble-stacking/1"
EPS = 1e-4
_FEATURE = re.compile(r"^[a-z][a-z0-9_]{0,63}(/[a-z_]{1,32})?$")


class StackingError(ValueError):
    """A stacking file that cannot be served, with the reason a person can act on."""


def logit(p: float) -> float:
    p = min(1.0 - EPS, max(EPS, float(p)))
    return math.log(p / (1.0 - p))


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def observed(signals: Sequence[Signal]) -> dict[str, dict[str, float]]:
    """scorer -> its scores, for the signals that answered with at least one score: exactly what a
    decision stores in `Decision.signals`, so training (from stored decisions) and serving (from live
    signals) see the same inputs."""
    return {s.scorer: dict(s.scores) for s in signals if s.ok and s.scores}


def feature_values(obs: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The model's inputs for one message (see the module docstring)."""
    out: dict[str, float] = {}
    for scorer, scores in obs.items():
        if not scores:
            continue
        out[scorer] = 1.0
        for category, score in scores.items():
            out[f"{scorer}/{category}"] = logit(score)
    return out


class CategoryStack(BaseModel):
    """One category's logistic model: p = sigmoid(intercept + sum(weights[f] * feature f))."""

    model_config = ConfigDict(extra="forbid")

    intercept: float = Field(allow_inf_nan=False)
    weights: dict[str, float] = Field(default_factory=dict)
    # Scorers present in (nearly) every training example: without one of them this model is not used.
    requires: list[str] = Field(default_factory=list)

    @field_validator("weights")
    @classmethod
    def _features(cls, v: dict[str, float]) -> dict[str, float]:
        for name, w in v.items():
            if not _FEATURE.match(name):
                raise ValueError(f"feature {name!r} is not 'scorer' or 'scorer/category'")
            _, _, category = name.partition("/")
            if category and category not in CATEGORY_NAMES:
                raise ValueError(f"feature {name!r}: unknown category {category!r}")
            if not math.isfinite(w):
                raise ValueError(f"feature {name!r}: weight {w} is not a finite number")
        return v


class StackingFile(BaseModel):
    """What `heron train stacking` writes (models/ensemble/stacking.json)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    format: str = Field(alias="schema")
    version: str = Field(min_length=1, max_length=64)
    categories: dict[str, CategoryStack]
    trained: dict[str, Any] = Field(default_factory=dict)  # provenance: labels version, counts, split

    @field_validator("format")
    @classmethod
    def _schema(cls, v: str) -> str:
        if v != SCHEMA:
            raise ValueError(f"schema {v!r}, expected {SCHEMA!r}")
        return v

    @field_validator("categories")
    @classmethod
    def _categories(cls, v: dict[str, CategoryStack]) -> dict[str, CategoryStack]:
        if not v:
            raise ValueError("no category has a model")
        unknown = sorted(set(v) - set(CATEGORY_NAMES))
        if unknown:
            raise ValueError(f"unknown categories {unknown}; expected some of {list(CATEGORY_NAMES)}")
        return v


class Stacking:
    """A loaded, validated stacking file; `predict` is what the ensemble calls per category."""

    def __init__(self, spec: StackingFile, source: str = "") -> None:
        self.spec = spec
        self.source = source
        self.version = spec.version

    def covers(self, category: str) -> bool:
        return category in self.spec.categories

    def predict(self, category: str, obs: Mapping[str, Mapping[str, float]],
                features: Mapping[str, float] | None = None) -> float | None:
        """The learned score, or None where this model does not apply (no model for the category,
        or a scorer it requires did not answer)."""
        model = self.spec.categories.get(category)
        if model is None or any(not obs.get(s) for s in model.requires):
            return None
        values = features if features is not None else feature_values(obs)
        z = model.intercept + sum(w * values.get(name, 0.0) for name, w in model.weights.items())
        return sigmoid(z)

    def dump(self) -> dict[str, Any]:
        return self.spec.model_dump(mode="json", by_alias=True)


def parse(body: Any, source: str = "<memory>") -> Stacking:
    """Validate a stacking file's JSON body; StackingError says what is wrong and where."""
    try:
        spec = StackingFile.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in exc.errors())
        raise StackingError(f"{source}: not a valid stacking file ({problems})") from None
    return Stacking(spec, source)


def load(path: Path | str) -> Stacking:
    """Read and validate a stacking file (what HERON_ENSEMBLE_STACKING names)."""
    p = Path(path)
    if not p.is_file():
        raise StackingError(f"{p}: no such file (train one with `heron train stacking --labels labels.jsonl`)")
    try:
        body = json.loads(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StackingError(f"{p}: not readable JSON ({exc})") from None
    return parse(body, str(p))


def file_version(path: Path | str) -> str:
    """A short content hash, for naming what a shadow or a report ran with."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
