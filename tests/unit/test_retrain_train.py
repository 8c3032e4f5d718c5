"""`heron train text --with-labels` (a tiny run, ~20 s on 2 cores): the encoder is fine-tuned with the
labels' training slice, the heads are refitted on it, and the result is registered as a complete
candidate that names the labels it saw and that the scorer serves with all eight categories."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.labels import SCHEMA
from training.text.data import resolve_data_dir

try:
    DATA: str | None = str(resolve_data_dir())
except FileNotFoundError:
    DATA = None


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """The commands read HERON_MODELS_DIR through the process-wide settings: built fresh from this
    test's environment, and not left behind for the next test."""
    from pipeline.settings import reset_settings

    reset_settings()
    yield
    reset_settings()


@pytest.mark.skipif(DATA is None, reason="shared data folder not available")
def test_train_text_with_labels_registers_a_complete_candidate(tmp_path: Path) -> None:
    from pipeline.models_registry import Registry
    from pipeline.scorers.base import ScoringItem
    from pipeline.scorers.text import TextScorer
    from pipeline.types import Message
    from training.cli import app

    rows = [("you absolute idiot, nobody wants you here", "uphold", {"harassment": True}),  # trained
            ("I felt like an idiot at the quiz tonight haha", "overturn", {}),  # trained, hard: x3
            ("the idiot box is on again, movie night", "overturn", {}),  # held out
            ("send me your bank login to claim the prize", "uphold", {"scam": True})]  # trained, heads only
    body = "".join(json.dumps({"schema": SCHEMA, "id": f"acme:{i}", "kind": "decision", "text": t, "verdict": v,
                               "categories": c, "hard_example": v == "overturn"}) + "\n"
                   for i, (t, v, c) in enumerate(rows))
    labels = tmp_path / "labels.jsonl"
    labels.write_text(body)
    version_of_labels = hashlib.sha256(body.encode()).hexdigest()[:16]
    models = tmp_path / "models"
    result = CliRunner().invoke(app, [
        "train", "text", "--data-dir", DATA, "--with-labels", str(labels), "--max-examples", "16", "--max-length", "24",
        "--seeds", "0", "--num-threads", "1", "--no-evaluate", "--heads-cache-dir", str(tmp_path / "cache")],
        env={"HERON_MODELS_DIR": str(models)})
    assert result.exit_code == 0, result.output + repr(result.exception)
    version = result.output.split("candidate text version ")[1].split()[0]
    reg = Registry(models)
    assert reg.versions("text") == [version] and reg.serving("text") == "bundled"  # registered, not promoted
    assert sorted(p.name for p in (models / "text").iterdir()) == [version]  # no staging folder left behind
    art = reg.path("text", version)
    cfg = json.loads((art / "config.json").read_text())
    assert cfg["version"].endswith(f"-labels-{version_of_labels[:8]}")
    seen = cfg["training"]["report"]["review_labels"]
    # the harassment row (implies toxicity) once, the overturned row three times, the scam row has no
    # encoder category, the held-out row is not trained on
    assert seen["version"] == version_of_labels and seen["encoder_rows"] == 4 and seen["holdout_rows"] == 1
    heads = json.loads((art / "heads.json").read_text())
    assert heads["encoder_version"] == cfg["version"]
    assert heads["review_labels"]["head_rows"]["scam"] == 4  # the overturned row three times + the scam row
    scorer = TextScorer(quantize="fp32", artifact_dir=art).load()
    try:
        (sig,) = scorer.score([ScoringItem(Message(text="send me your bank login"))])
        assert sig.ok and len(sig.scores) == 8
        assert scorer.version == f"{cfg['version']}/{heads['version']}+fp32"
    finally:
        scorer.close()
