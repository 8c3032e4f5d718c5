"""The gate report's pieces (training/text/gate.py) and the retraining commands' refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.models_registry import gate_verdict
from training.text.gate import compare_slice, delta_interval, markdown, scores


def test_scores_are_at_the_models_own_threshold() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.1, 0.1, 0.1])
    s = scores(y, p, 0.5)
    assert (s["precision"], s["recall"], s["flagged"]) == (2 / 3, 2 / 3, 3)
    assert s["f1"] == pytest.approx(2 / 3) and 0 < s["ap"] < 1
    assert scores(y, p, 0.95)["f1"] == 0.0 and "ap" not in scores(np.zeros(8, int), p, 0.5)


def test_the_delta_interval_is_paired_and_seeded() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    a = np.where(rng.random(400) < 0.8, y, 1 - y).astype(bool)  # ~80% right
    assert delta_interval(y, a, a) == (0.0, 0.0)  # the same predictions: no difference, whatever the resample
    worse = a.copy()
    worse[np.flatnonzero(y == 1)[:60]] = False  # 60 true positives lost
    lo, hi = delta_interval(y, a, worse)
    assert hi < 0 and (lo, hi) == delta_interval(y, a, worse)


@dataclass
class Engine:
    """What compare_slice reads off a TextEngine: the categories it serves and their thresholds."""

    served_labels: tuple[str, ...]
    served_thresholds: np.ndarray


def test_compare_slice_gates_thick_categories_and_says_why_thin_ones_are_not() -> None:
    texts = [f"t{i}" for i in range(40)]
    y = np.array([1] * 10 + [0] * 30)
    serving = Engine(("toxicity", "violence"), np.array([0.5, 0.5]))
    candidate = Engine(("toxicity",), np.array([0.5]))
    probs = {"serving": {t: np.array([0.9 if i < 10 else 0.1, 0.9 if i < 10 else 0.1]) for i, t in enumerate(texts)},
             "candidate": {t: np.array([0.9 if i < 5 else 0.1]) for i, t in enumerate(texts)}}
    data = {"toxicity": (texts, y, ["olid"] * 40), "violence": (texts, y, ["edos"] * 40),
            "spam": (texts[:6], np.array([1, 0, 0, 0, 0, 0]), ["sms"] * 6)}
    sl = compare_slice(data, {"serving": serving, "candidate": candidate}, probs, min_rows=20, min_positives=5)
    tox = sl["categories"]["toxicity"]
    assert tox["gated"] and tox["serving"]["f1"] == 1.0 and tox["candidate"]["recall"] == 0.5
    assert tox["delta_f1"] == pytest.approx(2 / 3 - 1) and tox["delta_f1_95ci"][1] < 0
    assert sl["categories"]["violence"]["candidate"] is None  # the candidate lost a category
    spam = sl["categories"]["spam"]
    assert not spam["gated"] and spam["not_gated_because"] == "1 positives < 5; 6 rows < 20"
    report = {"candidate": {"version": "c", "path": "/c", "quantize": "fp32"},
              "serving": {"version": "s", "path": "/s", "quantize": "fp32"},
              "settings": {"tolerance": 0.02, "tolerances": {}, "metric": "F1", "min_rows": 20, "min_positives": 5,
                           "max_examples": None},
              "slices": {"test": sl}, "texts_scored": 40}
    report["verdict"] = gate_verdict(report)
    assert not report["verdict"]["pass"]
    assert {r["category"] for r in report["verdict"]["regressions"]} == {"toxicity", "violence"}
    md = markdown(report)
    assert md.startswith("# Gate report: text candidate c vs serving s") and "**Verdict: FAIL**" in md
    assert "| toxicity | 40 (10) | 1.000 | 0.667 | -0.333 |" in md and "| spam | 6 (1) |" in md


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """The commands read HERON_MODELS_DIR through the process-wide settings: built fresh from this
    test's environment, and not left behind for the next test."""
    from pipeline.settings import reset_settings

    reset_settings()
    yield
    reset_settings()


def test_commands_refuse_bad_labels_and_unknown_versions_before_any_slow_step(tmp_path: Path) -> None:
    from training.cli import app
    from training.text.data import resolve_data_dir

    try:
        data = str(resolve_data_dir())
    except FileNotFoundError:
        pytest.skip("shared data folder not available")
    bad = tmp_path / "labels.jsonl"
    bad.write_text(json.dumps({"schema": "heron.review-labels/1", "id": "a:1", "kind": "decision", "text": "x",
                               "verdict": "maybe", "categories": {}, "hard_example": False}) + "\n")
    env = {"HERON_MODELS_DIR": str(tmp_path / "models")}
    runner = CliRunner()
    for cmd in (["train", "text"], ["train", "text-heads"]):
        r = runner.invoke(app, [*cmd, "--data-dir", data, "--with-labels", str(bad)], env=env)
        assert r.exit_code == 2 and "labels.jsonl:1: verdict 'maybe'" in r.output, r.output
    r = runner.invoke(app, ["eval", "candidate", "20990101-deadbeef", "--report", str(tmp_path / "r.json"),
                            "--data-dir", data], env=env)
    assert r.exit_code == 2 and "neither a text version" in r.output
    r = runner.invoke(app, ["eval", "candidate", "bundled", "--report", str(tmp_path / "r.json"), "--data-dir", data,
                            "--tolerance-for", "rudeness=0.1"], env=env)
    assert r.exit_code == 2 and "unknown categories ['rudeness']" in r.output
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"schema": "heron.review-labels/1", "id": "a:1", "kind": "decision", "text": "x",
                                "verdict": "overturn", "categories": {}, "hard_example": True}) + "\n")
    r = runner.invoke(app, ["train", "text-heads", "--data-dir", data, "--with-labels", str(good), "--artifact",
                            str(tmp_path)], env=env)
    assert r.exit_code == 2 and f"no text artifact at {tmp_path}" in r.output
    assert not (tmp_path / "models").exists() and not (tmp_path / "r.json").exists()
