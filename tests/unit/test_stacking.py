"""Learned stacking: `heron train stacking` trains per category on a labels export and reports against the
hand-set weights on held-out labels; serving with the file changes the combined scores exactly as
its weights say (floors still win, a missing required scorer falls back); a bad file is refused at
start-up with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from models.text.model import CONFIG_FILE, DEFAULT_ARTIFACT_DIR
from pipeline.ensemble import EnsembleConfig, combine
from pipeline.labels import SCHEMA as LABELS_SCHEMA
from pipeline.settings import Settings
from pipeline.stacking import StackingError, load, logit, sigmoid
from pipeline.types import Signal
from training.cli import app as training_app
from training.stacking import heldout

REPO = Path(__file__).resolve().parents[2]


def label_rows(n: int = 800, seed: int = 7) -> list[dict[str, Any]]:
    """Review labels whose truth needs two of the text model's scores: toxicity (compressed and shifted,
    so miscalibrated) and harassment. The hand-set ensemble reads toxicity from the first alone."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        z1, z2 = rng.normal(0, 2, 2)
        y = bool(z1 + z2 + rng.normal(0, 0.5) > 0)
        tox, har = sigmoid(z1 / 2 - 2), sigmoid(z2 - 1)
        cats = {"toxicity": y}
        if i < 40:  # a few hate labels: too few positives to train on
            cats["hate"] = i < 3
        rows.append({
            "schema": LABELS_SCHEMA, "id": f"acme:{i}", "decision_id": f"dec_{i:04d}", "message_id": f"m{i}",
            "kind": "decision", "text": f"message {i}", "categories": cats,
            "verdict": "uphold" if y else "overturn", "hard_example": not y,
            "decision": {"action": "flag", "scores": {"toxicity": round(tox, 4)},
                         "signals": {"text": {"scores": {"toxicity": round(tox, 4), "harassment": round(har, 4),
                                                          "hate": 0.01}, "definitive": False}}},
            "provenance": {"reviewed_at": "2026-11-20T10:00:00+00:00"},
        })
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    d = tmp_path_factory.mktemp("stacking")
    labels = d / "labels.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in label_rows()), "utf-8")
    out = d / "stacking.json"
    res = CliRunner().invoke(training_app, ["train", "stacking", "--labels", str(labels), "--output", str(out)])
    assert res.exit_code == 0, res.output
    return out, json.loads(out.with_suffix(".report.json").read_text()), res.output


def test_train_stacking_learns_what_the_hand_set_weights_miss(trained: tuple[Path, dict[str, Any], str]) -> None:
    out, report, printed = trained
    stack = load(out)
    assert sorted(stack.spec.categories) == ["toxicity"]
    assert stack.spec.categories["toxicity"].requires == ["text"]
    tox = report["categories"]["toxicity"]
    n_held = sum(heldout(f"m{i}", 0.3) for i in range(800))  # split by message id
    assert tox["train"] + tox["heldout"] == 800 and tox["heldout"] == n_held
    assert tox["verdict"] == "beats" and report["verdict"] == "beats"
    assert tox["learned"]["auprc"] > tox["hand_set"]["auprc"] + 0.05
    assert tox["learned"]["log_loss"] < tox["hand_set"]["log_loss"]
    assert tox["log_loss_delta_ci95"][1] < 0 and tox["threshold"] == 0.5
    assert report["categories"]["hate"]["status"].startswith("not trained: fewer than 10")
    assert report["counts"]["hand_set_matches_stored_scores"] == 800
    assert "**Learned stacking beats the hand-set ensemble weights on held-out review labels" in printed
    assert out.with_suffix(".report.md").read_text().startswith("# Learned stacking vs hand-set")


def test_serving_with_the_file_applies_its_weights(trained: tuple[Path, dict[str, Any], str]) -> None:
    out, _, _ = trained
    stack = load(out)
    model = stack.spec.categories["toxicity"]
    scores = {"toxicity": 0.3, "harassment": 0.6, "hate": 0.02}
    text = Signal(scorer="text", version="t", scores=scores)
    z = model.intercept + model.weights.get("text", 0.0) + sum(
        model.weights.get(f"text/{c}", 0.0) * logit(v) for c, v in scores.items())
    learned = combine([text], EnsembleConfig(stacking=stack))
    hand = combine([text], EnsembleConfig())
    assert learned.scores["toxicity"] == round(sigmoid(z), 4) != hand.scores["toxicity"] == 0.3
    assert learned.scores["harassment"] == hand.scores["harassment"] == 0.6  # no model for it: hand-set
    # a list match is still a floor the learned model cannot lower
    rules = Signal(scorer="rules", version="r", scores={"toxicity": 1.0}, definitive=True)
    assert combine([text, rules], EnsembleConfig(stacking=stack)).scores["toxicity"] == 1.0
    # without the text model it was trained on, the category falls back to the hand-set average
    other = Signal(scorer="spam_text", version="s", scores={"toxicity": 0.2})
    assert combine([other], EnsembleConfig(stacking=stack)).scores["toxicity"] == 0.2


@pytest.mark.skipif(not (DEFAULT_ARTIFACT_DIR / CONFIG_FILE).is_file(), reason="no committed text model")
def test_a_service_built_from_settings_serves_the_file(trained: tuple[Path, dict[str, Any], str]) -> None:
    from pipeline.ensemble import MODEL_CEILING
    from pipeline.service import ModerationService
    from pipeline.types import Message

    out, _, _ = trained
    settings = Settings(scorers=["rules", "text"], ensemble_stacking=out, text_workers=1, text_threads=1)
    service = ModerationService.from_settings(settings)
    try:
        d = service.decide_one("acme", Message(text="you are a complete idiot"))
    finally:
        service.close()
    stack = load(out)
    assert d.model_versions["ensemble"] == f"stacking:{stack.version}"
    expected = stack.predict("toxicity", {"text": d.signals["text"].scores})
    assert expected is not None and d.scores["toxicity"] == round(min(expected, MODEL_CEILING), 4)
    assert d.scores["harassment"] == d.signals["text"].scores["harassment"]


BAD = {
    "missing.json": (None, "no such file"),
    "notjson.json": ("{", "not readable JSON"),
    "schema.json": ({"schema": "other/1", "version": "v", "categories": {"toxicity": {"intercept": 0}}},
                    "expected 'heron.ensemble-stacking/1'"),
    "category.json": ({"schema": "heron.ensemble-stacking/1", "version": "v", "categories": {"toxicty": {
        "intercept": 0}}}, "unknown categories ['toxicty']"),
    "feature.json": ({"schema": "heron.ensemble-stacking/1", "version": "v", "categories": {"toxicity": {
        "intercept": 0, "weights": {"text/toxicty": 1.0}}}}, "unknown category 'toxicty'"),
    "nan.json": ('{"schema": "heron.ensemble-stacking/1", "version": "v", "categories": {"toxicity": '
                 '{"intercept": NaN}}}', "finite number"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_stacking_file_is_refused_with_its_reason(tmp_path: Path, name: str) -> None:
    body, why = BAD[name]
    path = tmp_path / name
    if body is not None:
        path.write_text(body if isinstance(body, str) else json.dumps(body), "utf-8")
    with pytest.raises(StackingError, match=why.replace("[", r"\[").replace("(", r"\(")):
        load(path)
    with pytest.raises(ValueError, match="HERON_ENSEMBLE_STACKING=.* is refused"):
        Settings(ensemble_stacking=path)


def test_heron_serve_refuses_a_bad_stacking_file_at_start_up(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(BAD["category.json"][0]), "utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HERON_ENSEMBLE_STACKING": str(path),
           "HERON_DATABASE_URL": f"sqlite:///{tmp_path}/h.db"}
    heron = str(Path(sys.executable).parent / "heron")
    out = subprocess.run([heron, "serve", "--port", "0"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode != 0
    err = " ".join(out.stderr.split())  # the traceback printer wraps long lines
    assert "HERON_ENSEMBLE_STACKING" in err and "is refused" in err and "unknown categories ['toxicty']" in err


def test_train_stacking_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(training_app, ["train", "stacking", "--labels", str(tmp_path / "none.jsonl")])
    assert res.exit_code == 2 and "no labels file" in res.output
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"schema": "other/9"}) + "\n", "utf-8")
    res = runner.invoke(training_app, ["train", "stacking", "--labels", str(wrong)])
    assert res.exit_code == 2 and "expected 'heron.review-labels/1'" in res.output
    few = tmp_path / "few.jsonl"
    few.write_text("".join(json.dumps(r) + "\n" for r in label_rows(n=12)), "utf-8")
    res = runner.invoke(training_app, ["train", "stacking", "--labels", str(few), "--output",
                                       str(tmp_path / "s.json")])
    assert res.exit_code == 1 and "nothing written" in res.output and not (tmp_path / "s.json").exists()


def two_guild_rows(har_a: tuple[float, float], har_b: tuple[float, float], n: int = 1200) -> list[dict[str, Any]]:
    """Guild a labels toxicity, and its text-model scores are already calibrated; guild b's reviewers
    overturn everything, and its messages score higher on harassment."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(n):
        guild = "a" if i % 2 else "b"
        tox = float(rng.uniform(0.02, 0.98))
        y = guild == "a" and bool(rng.random() < tox)
        har = float(rng.uniform(*(har_a if guild == "a" else har_b)))
        rows.append({
            "schema": LABELS_SCHEMA, "id": f"acme:{i}", "decision_id": f"dec_{i:04d}", "message_id": f"m{i}",
            "guild_id": guild, "categories": {"toxicity": y} if guild == "a" else {},
            "verdict": "uphold" if y else "overturn",
            "decision": {"scores": {"toxicity": round(tox, 4)},
                         "signals": {"text": {"scores": {"toxicity": round(tox, 4), "harassment": round(har, 4)}}}},
        })
    return rows


def run_stacking(tmp_path: Path, rows: list[dict[str, Any]]) -> tuple[Any, dict[str, Any], Path]:
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    out = tmp_path / "s.json"
    res = CliRunner().invoke(training_app, ["train", "stacking", "--labels", str(labels), "--output", str(out)])
    return res, json.loads(out.with_suffix(".report.json").read_text()), out


def test_a_gain_only_on_the_pooled_guilds_is_not_counted(tmp_path: Path) -> None:
    """Pooled, a learned model wins by spotting guild b; within guild a it cannot beat scores that were
    calibrated already: the report says so and writes nothing."""
    res, report, out = run_stacking(tmp_path, two_guild_rows((0.05, 0.05), (0.8, 0.8)))
    assert res.exit_code == 1 and not out.exists(), res.output
    tox = report["categories"]["toxicity"]
    assert tox["pooled_verdict"] == "beats" and tox["verdict"] == "beats pooled only"
    assert tox["by_guild"]["a"]["verdict"] == "no clear difference"
    assert tox["by_guild"]["b"]["verdict"].startswith("too few held-out labels")
    assert report["verdict"] == "does not beat"
    assert "better on the pooled labels but in no guild on its own" in res.output
    assert "| toxicity | a |" in out.with_suffix(".report.md").read_text()


def test_a_pooled_gain_that_hurts_one_guild_counts_as_worse(tmp_path: Path) -> None:
    """When the guilds' harassment scores vary, the pooled fit cannot leave guild a alone: worse there."""
    res, report, out = run_stacking(tmp_path, two_guild_rows((0.01, 0.1), (0.5, 0.9)))
    assert res.exit_code == 1 and not out.exists(), res.output
    tox = report["categories"]["toxicity"]
    assert tox["pooled_verdict"] == "beats" and tox["verdict"] == "worse"
    assert tox["verdict_note"] == "worse in guild a" and tox["by_guild"]["a"]["verdict"] == "worse"
