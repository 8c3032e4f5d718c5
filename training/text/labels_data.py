"""Review labels (`heron labels export`) as training rows for the text model and its heads.

Why a module of its own: which reviewer verdict says what about which category is, like
`training.text.data.LABEL_MAP`, a modelling decision that must live in one readable place. The
rules (`category_targets`):

- **uphold**: the reviewer's categories are the labels (`true` -> 1, `false` -> 0); a category
  the reviewer did not mention is not annotated (masked out of the loss), never a guessed 0.
  `hate` and `harassment` imply `toxicity` (as `LABEL_MAP` has hate imply toxicity, and OLID's
  "offensive", the model's toxicity definition, includes insults aimed at a person), unless the
  reviewer said otherwise.
- **overturn of a decision or an appeal**: the action was wrong, so the message is benign: every
  category 0 (and every dataset-specific head 0, as for `identity_neutral`). The category boxes
  are ignored here because the review page pre-ticks the categories the models suggested, so an
  overturn made with the keyboard arrives with the very categories the reviewer rejected ticked;
  the count is reported (`overturn_ticks_ignored`). These are the hard examples the issue names
  (a model false positive a person corrected) and are repeated `hard_repeat` times (default 3)
  in training.
- **overturn of a report**: the reporter was wrong and the decision stands, which says nothing
  certain about categories the report did not name: the reviewer's categories are used as given,
  unmentioned ones stay unannotated.
- A row with no usable label (uphold without categories) is skipped and counted.

Held-out slice: a row is held out when a hash of its model text (normalised, mentions and links
canonicalised, casefolded) falls below `holdout_percent` (default 20) of 100 buckets. Hashing the
text rather than the label id keeps copies together: a spam wave is many items with one text, and
split by id its copies would straddle training and evaluation and flatter the candidate. The slice
depends only on the text, so every later export keeps a trained row trained and a held-out row
held out; `heron eval candidate` scores the held-out slice of any export without leakage.

Version: the content hash `heron labels export` writes in `<file>.manifest.json` (sha256 of the
file, 16 hex digits); it is recomputed here, and a manifest that disagrees with the file is an
error (the file was edited after export: re-export, or remove the manifest to own the edit).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from models.text.canonical import model_text
from pipeline.labels import SCHEMA
from pipeline.taxonomy import CATEGORY_NAMES

DEFAULT_HOLDOUT_PERCENT = 20
DEFAULT_HARD_REPEAT = 3
SOURCE = "review_labels"
# Labels one category implies when the reviewer left the implied one unmentioned.
IMPLIES: dict[str, tuple[str, ...]] = {"hate": ("toxicity",), "harassment": ("toxicity",)}
VERDICTS = ("uphold", "overturn")


class LabelFileError(ValueError):
    """A labels file that cannot be trained on, with the line and the reason."""


@dataclass(frozen=True)
class LabelRow:
    """One reviewed item as training needs it."""

    id: str
    text: str
    kind: str
    verdict: str
    categories: dict[str, bool]
    hard_example: bool

    @property
    def model_text(self) -> str:
        return _model_text(self.text)


@lru_cache(maxsize=100_000)
def _model_text(text: str) -> str:
    return model_text(text)


def holdout_bucket(text: str) -> int:
    """0..99 from the sha256 of the row's model text, casefolded (see the module docstring)."""
    key = " ".join(_model_text(text).split()).casefold()
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 100


def is_held_out(text: str, holdout_percent: int) -> bool:
    return holdout_bucket(text) < holdout_percent


def category_targets(row: LabelRow) -> dict[str, int]:
    """category -> 0/1 for the categories this verdict annotates (absent = not annotated)."""
    if row.verdict == "overturn" and row.kind != "report":
        return dict.fromkeys(CATEGORY_NAMES, 0)
    out = {c: int(v) for c, v in row.categories.items()}
    for cat, implied in IMPLIES.items():
        if out.get(cat) == 1:
            for other in implied:
                out.setdefault(other, 1)
    return out


@dataclass
class LabelSet:
    """The rows of one or more exports, with their version and the split rules applied."""

    rows: list[LabelRow]
    files: list[dict[str, Any]]  # [{"file", "version", "rows"}]
    holdout_percent: int = DEFAULT_HOLDOUT_PERCENT
    hard_repeat: int = DEFAULT_HARD_REPEAT
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """The export's version; several files: a hash of their versions in order."""
        if len(self.files) == 1:
            return str(self.files[0]["version"])
        joined = ",".join(str(f["version"]) for f in self.files)
        return "multi-" + hashlib.sha256(joined.encode()).hexdigest()[:16]

    def train_rows(self) -> list[LabelRow]:
        return [r for r in self.rows if not is_held_out(r.text, self.holdout_percent)]

    def holdout_rows(self) -> list[LabelRow]:
        return [r for r in self.rows if is_held_out(r.text, self.holdout_percent)]

    def expanded_train(self) -> list[tuple[LabelRow, dict[str, int]]]:
        """(row, targets) for every trained row, hard examples repeated `hard_repeat` times."""
        out = []
        for r in self.train_rows():
            t = category_targets(r)
            if t:
                out.extend([(r, t)] * (max(1, self.hard_repeat) if r.hard_example else 1))
        return out

    def summary(self) -> dict[str, Any]:
        """What a candidate records about the labels it saw (config.json, heads.json, the gate report)."""
        train, held = self.train_rows(), self.holdout_rows()
        per_cat: dict[str, dict[str, int]] = {}
        for r in train:
            for c, v in category_targets(r).items():
                d = per_cat.setdefault(c, {"positives": 0, "negatives": 0})
                d["positives" if v else "negatives"] += 1
        return {
            "source": SOURCE, "version": self.version, "files": self.files, "rows": len(self.rows),
            "train_rows": len(train), "holdout_rows": len(held), "holdout_percent": self.holdout_percent,
            "hard_examples_train": sum(1 for r in train if r.hard_example), "hard_repeat": self.hard_repeat,
            "train_per_category": dict(sorted(per_cat.items())), "skipped": dict(self.skipped),
            "rules": "training/text/labels_data.py",
        }


def _fail(path: Path, n: int, why: str) -> LabelFileError:
    return LabelFileError(f"{path}:{n}: {why}")


def _check_row(path: Path, n: int, raw: Any) -> LabelRow | None:
    """The row, None for one without text, or an error naming what is wrong with it."""
    if not isinstance(raw, dict):
        raise _fail(path, n, "not a JSON object")
    if raw.get("schema") != SCHEMA:
        raise _fail(path, n, f"schema {raw.get('schema')!r}, expected {SCHEMA!r} (a `heron labels export` file)")
    for key, typ in (("id", str), ("verdict", str), ("kind", str), ("hard_example", bool), ("categories", dict)):
        if not isinstance(raw.get(key), typ):
            raise _fail(path, n, f"field {key!r} must be a {typ.__name__}, got {type(raw.get(key)).__name__}")
    if raw["verdict"] not in VERDICTS:
        raise _fail(path, n, f"verdict {raw['verdict']!r}, expected one of {', '.join(VERDICTS)}")
    cats = raw["categories"]
    for k, v in cats.items():
        if k not in CATEGORY_NAMES:
            raise _fail(path, n, f"unknown category {k!r}; expected one of {', '.join(CATEGORY_NAMES)}")
        if not isinstance(v, bool):
            raise _fail(path, n, f"categories.{k} must be true or false")
    text = raw.get("text")
    if text is not None and not isinstance(text, str):
        raise _fail(path, n, "field 'text' must be a string")
    if not text or not text.strip():
        return None
    return LabelRow(id=raw["id"], text=text, kind=raw["kind"], verdict=raw["verdict"], categories=dict(cats),
                    hard_example=raw["hard_example"])


def read_file(path: Path) -> tuple[list[LabelRow], dict[str, Any], dict[str, int]]:
    """Rows, {"file", "version", "rows"} and skip counts of one export, checked line by line."""
    if not path.is_file():
        raise LabelFileError(f"{path}: no such labels file (write one with `heron labels export`)")
    body = path.read_bytes()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LabelFileError(f"{path}: not UTF-8 ({exc})") from None
    version = hashlib.sha256(body).hexdigest()[:16]
    manifest = Path(str(path) + ".manifest.json")
    if manifest.is_file():
        try:
            claimed = json.loads(manifest.read_text("utf-8")).get("version")
        except (ValueError, AttributeError):
            raise LabelFileError(f"{manifest}: not a JSON manifest") from None
        if claimed != version:
            raise LabelFileError(f"{path} does not match its manifest (manifest version {claimed}, content {version}): "
                                 "the file was changed after export; re-export it, or remove the manifest to train "
                                 "on the edited file")
    rows: list[LabelRow] = []
    skipped = {"without_text": 0}
    seen: set[str] = set()
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except ValueError as exc:
            raise _fail(path, n, f"not JSON ({exc.args[0]})") from None
        row = _check_row(path, n, raw)
        if row is None:
            skipped["without_text"] += 1
            continue
        if row.id in seen:
            raise _fail(path, n, f"label id {row.id!r} appears twice")
        seen.add(row.id)
        rows.append(row)
    return rows, {"file": path.name, "version": version, "rows": len(rows)}, skipped


def load_labels(paths: Sequence[Path], holdout_percent: int = DEFAULT_HOLDOUT_PERCENT,
                hard_repeat: int = DEFAULT_HARD_REPEAT) -> LabelSet:
    """Every file's rows (a later file's row replaces an earlier one with the same id: a newer
    export of the same verdict), checked; raises LabelFileError with the reason."""
    if not 0 <= holdout_percent < 100:
        raise LabelFileError(f"holdout percent must be 0-99, got {holdout_percent}")
    if hard_repeat < 1:
        raise LabelFileError(f"hard-example repeat must be at least 1, got {hard_repeat}")
    by_id: dict[str, LabelRow] = {}
    files: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    for p in paths:
        rows, info, sk = read_file(Path(p))
        files.append(info)
        for k, v in sk.items():
            skipped[k] = skipped.get(k, 0) + v
        for r in rows:
            by_id[r.id] = r
    out = LabelSet(list(by_id.values()), files, holdout_percent, hard_repeat, skipped)
    no_label = sum(1 for r in out.rows if not category_targets(r))
    ticks = sum(1 for r in out.rows if r.verdict == "overturn" and r.kind != "report" and any(r.categories.values()))
    out.skipped.update(without_categories=no_label, overturn_ticks_ignored=ticks)
    return out


def encoder_rows(labels: LabelSet, labels_cols: Sequence[str], outputs: Sequence[str]
                 ) -> tuple[list[str], np.ndarray, list[bool]]:
    """(raw texts, y (n, len(outputs)) with NaN = not annotated, hard flags) for the encoder.

    Only the encoder's own categories (`labels_cols`: toxicity, hate, spam) get targets; a benign
    overturn also sets every dataset-specific head to 0 (neither offensive nor hateful under any
    data set's definition, as `identity_neutral` rows do)."""
    raws: list[str] = []
    ys: list[np.ndarray] = []
    hard: list[bool] = []
    for r, t in labels.expanded_train():
        y = np.full(len(outputs), np.nan, dtype=np.float32)
        for c, v in t.items():
            if c in labels_cols:
                y[list(outputs).index(c)] = v
        if r.verdict == "overturn" and r.kind != "report":
            for j, o in enumerate(outputs):
                if o not in labels_cols:
                    y[j] = 0.0
        if np.isnan(y).all():
            continue
        raws.append(r.text)
        ys.append(y)
        hard.append(r.hard_example)
    return raws, (np.stack(ys) if ys else np.zeros((0, len(outputs)), np.float32)), hard


def head_rows(labels: LabelSet, category: str) -> tuple[list[str], list[int]]:
    """(raw texts, 0/1) of the trained rows that annotate `category` (hard examples repeated)."""
    texts, ys = [], []
    for r, t in labels.expanded_train():
        if category in t:
            texts.append(r.text)
            ys.append(t[category])
    return texts, ys


def holdout_targets(labels: LabelSet) -> list[tuple[LabelRow, dict[str, int]]]:
    """(row, targets) of the held-out slice, each row once: what `heron eval candidate` scores."""
    return [(r, t) for r in labels.holdout_rows() if (t := category_targets(r))]
