"""Review labels as training rows (training/text/labels_data.py): the verdict -> label rules, the
held-out slice, the file checks, and the rows the encoder and the heads get."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.labels import SCHEMA
from training.text.data import LABELS, OUTPUTS
from training.text.labels_data import (
    LabelFileError,
    LabelRow,
    category_targets,
    encoder_rows,
    head_rows,
    holdout_bucket,
    holdout_targets,
    is_held_out,
    load_labels,
)

TRAIN_TEXT = "you absolute idiot, nobody wants you here"  # bucket 64: trained at 20%
HELD_TEXT = "the idiot box is on again, movie night"  # bucket 8: held out at 20%


def row(i: int, text: str, verdict: str = "uphold", categories: dict[str, bool] | None = None,
        kind: str = "decision", **extra: Any) -> dict[str, Any]:
    return {"schema": SCHEMA, "id": f"acme:{i}", "kind": kind, "text": text, "verdict": verdict,
            "categories": categories or {}, "hard_example": verdict == "overturn", **extra}


def write(path: Path, rows: list[dict[str, Any]], manifest: bool = True) -> Path:
    body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    path.write_text(body, "utf-8")
    if manifest:
        Path(f"{path}.manifest.json").write_text(json.dumps(
            {"schema": SCHEMA, "version": hashlib.sha256(body.encode()).hexdigest()[:16]}))
    return path


def label(verdict: str, categories: dict[str, bool], kind: str = "decision") -> LabelRow:
    return LabelRow("acme:1", "some text", kind, verdict, categories, verdict == "overturn")


def test_uphold_labels_what_the_reviewer_said_and_hate_or_harassment_imply_toxicity() -> None:
    assert category_targets(label("uphold", {"spam": True, "scam": False})) == {"spam": 1, "scam": 0}
    assert category_targets(label("uphold", {"harassment": True})) == {"harassment": 1, "toxicity": 1}
    # the reviewer's own word on toxicity wins over the implication
    assert category_targets(label("uphold", {"hate": True, "toxicity": False})) == {"hate": 1, "toxicity": 0}
    assert category_targets(label("uphold", {})) == {}  # nothing said: nothing to train on


def test_an_overturned_decision_is_benign_whatever_boxes_were_ticked_but_a_report_keeps_its_labels() -> None:
    benign = category_targets(label("overturn", {"toxicity": True}))  # the page pre-ticks suggestions
    assert set(benign) == {"toxicity", "harassment", "hate", "sexual", "violence", "self_harm", "spam", "scam"}
    assert set(benign.values()) == {0}
    assert category_targets(label("overturn", {"toxicity": True}, kind="appeal"))["toxicity"] == 0
    assert category_targets(label("overturn", {"harassment": False}, kind="report")) == {"harassment": 0}


def test_the_held_out_slice_is_by_text_so_copies_never_straddle_and_its_size_is_the_percent() -> None:
    assert not is_held_out(TRAIN_TEXT, 20) and is_held_out(HELD_TEXT, 20)
    # the same text under another id (a spam wave), differently spaced and cased: same slice
    assert holdout_bucket(HELD_TEXT) == holdout_bucket("The  IDIOT box is on again,   movie night")
    texts = [f"message number {i} about nothing in particular" for i in range(3000)]
    share = np.mean([is_held_out(t, 20) for t in texts])
    assert 0.17 < share < 0.23, share
    assert not any(is_held_out(t, 0) for t in texts[:200])


def test_rows_for_the_encoder_and_the_heads_repeat_hard_examples_and_skip_the_held_out_slice(tmp_path: Path) -> None:
    f = write(tmp_path / "labels.jsonl", [
        row(1, TRAIN_TEXT, "uphold", {"harassment": True}),
        row(2, "I felt like an idiot at the quiz tonight haha", "overturn", {"toxicity": True}),
        row(3, HELD_TEXT, "overturn"),
        row(4, "buy followers now", "uphold", {}),  # no categories: skipped
        row(5, None, "uphold", {"spam": True}),  # the message was not kept: skipped
    ])
    labels = load_labels([f], holdout_percent=20, hard_repeat=3)
    assert labels.skipped == {"without_text": 1, "without_categories": 1, "overturn_ticks_ignored": 1}
    raws, y, hard = encoder_rows(labels, LABELS, OUTPUTS)
    assert raws == [TRAIN_TEXT] + ["I felt like an idiot at the quiz tonight haha"] * 3 and hard == [False] + [True] * 3
    tox, hate, spam = (OUTPUTS.index(c) for c in ("toxicity", "hate", "spam"))
    assert y[0, tox] == 1 and np.isnan(y[0, hate]) and np.isnan(y[0, spam])  # harassment implies toxicity only
    assert np.isnan(y[0, OUTPUTS.index("olid_offensive")])
    assert (y[1:] == 0).all()  # a benign overturn: every output 0, the dataset heads too
    assert head_rows(labels, "harassment") == ([TRAIN_TEXT] + ["I felt like an idiot at the quiz tonight haha"] * 3,
                                               [1, 0, 0, 0])
    assert head_rows(labels, "scam")[1] == [0, 0, 0]
    assert [r.text for r, _ in holdout_targets(labels)] == [HELD_TEXT]
    s = labels.summary()
    assert (s["rows"], s["train_rows"], s["holdout_rows"], s["hard_examples_train"]) == (4, 3, 1, 1)
    assert s["version"] == json.loads(Path(f"{f}.manifest.json").read_text())["version"]
    assert s["train_per_category"]["harassment"] == {"positives": 1, "negatives": 1}


@pytest.mark.parametrize(("line", "why"), [
    ("{not json", ":2: not JSON"),
    (json.dumps({**row(2, "x"), "schema": "other/1"}), "schema 'other/1'"),
    (json.dumps(row(2, "x", categories={"rudeness": True})), "unknown category 'rudeness'"),
    (json.dumps(row(2, "x", categories={"spam": "yes"})), "categories.spam must be true or false"),
    (json.dumps(row(2, "x", verdict="escalate")), "verdict 'escalate'"),
    (json.dumps({k: v for k, v in row(2, "x").items() if k != "hard_example"}), "'hard_example' must be a bool"),
    (json.dumps(row(1, "the same id again")), "label id 'acme:1' appears twice"),
    ("[1, 2]", ":2: not a JSON object"),
])
def test_a_bad_labels_file_is_refused_with_its_line_and_reason(tmp_path: Path, line: str, why: str) -> None:
    f = tmp_path / "labels.jsonl"
    f.write_text(json.dumps(row(1, "fine")) + "\n" + line + "\n")
    with pytest.raises(LabelFileError, match="labels.jsonl") as err:
        load_labels([f])
    assert why in str(err.value)


def test_missing_file_edited_file_and_bad_knobs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LabelFileError, match="no such labels file"):
        load_labels([tmp_path / "nope.jsonl"])
    f = write(tmp_path / "labels.jsonl", [row(1, TRAIN_TEXT, "uphold", {"harassment": True})])
    f.write_text(f.read_text() + json.dumps(row(2, "added by hand", "uphold", {"spam": True})) + "\n")
    with pytest.raises(LabelFileError, match="changed after export"):
        load_labels([f])
    Path(f"{f}.manifest.json").unlink()  # owning the edit: the content hash is the version
    assert load_labels([f]).version == hashlib.sha256(f.read_bytes()).hexdigest()[:16]
    with pytest.raises(LabelFileError, match="holdout percent"):
        load_labels([f], holdout_percent=100)
    with pytest.raises(LabelFileError, match="at least 1"):
        load_labels([f], hard_repeat=0)


def test_a_newer_export_replaces_an_older_row_with_the_same_id(tmp_path: Path) -> None:
    old = write(tmp_path / "old.jsonl", [row(1, TRAIN_TEXT, "uphold", {"harassment": True})])
    new = write(tmp_path / "new.jsonl", [row(1, TRAIN_TEXT, "uphold", {"harassment": False})])
    labels = load_labels([old, new])
    assert [r.categories for r in labels.rows] == [{"harassment": False}]
    assert labels.version.startswith("multi-") and len(labels.files) == 2


def test_the_encoder_training_pool_gets_the_labels_after_the_shared_sets(tmp_path: Path) -> None:
    from training.text.data import resolve_data_dir
    from training.text.train import LABELS_SOURCE, TrainConfig, build_training_set

    try:
        data = resolve_data_dir()
    except FileNotFoundError:
        pytest.skip("shared data folder not available")
    f = write(tmp_path / "labels.jsonl", [row(1, TRAIN_TEXT, "uphold", {"harassment": True}),
                                          row(2, "I felt like an idiot at the quiz tonight haha", "overturn"),
                                          row(3, HELD_TEXT, "overturn")])
    raws, texts, y, sources = build_training_set(data, TrainConfig(max_examples=5, label_files=[str(f)]))
    assert sources.count(LABELS_SOURCE) == 4 and sources[-4:] == [LABELS_SOURCE] * 4  # 1 + 3 repeats
    assert HELD_TEXT not in raws and raws[-4] == TRAIN_TEXT and len(raws) == len(texts) == len(y)
    plain = build_training_set(data, TrainConfig(max_examples=5))
    assert len(plain[0]) == len(raws) - 4
