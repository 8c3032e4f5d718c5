"""Serving does not import training.

A serving process (`heron serve`, `heron worker`, `heron moderate`) should carry the model and
nothing of the training side: not the `training` package, not pandas (which only the training
data loaders use). Each costs memory and start-up time in every API and worker process, and a
training-only dependency missing from a slim serving install would break serving. This runs what
those commands run, in a fresh interpreter, and reads `sys.modules` afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.text.model import CONFIG_FILE, DEFAULT_ARTIFACT_DIR

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, sys

def training_side():
    # scikit-learn is a serving dependency (the link domain model, the behaviour model) and imports
    # pandas itself when pandas is installed; pandas counts against serving only without sklearn.
    pandas_ok = "sklearn" in sys.modules
    return sorted(m for m in sys.modules if m.startswith("training")
                  or (not pandas_ok and (m == "pandas" or m.startswith("pandas."))))

from pipeline.cli import app

# `heron serve --help`: the CLI module and its option parsing
try:
    app(["serve", "--help"], prog_name="heron", standalone_mode=False)
except SystemExit:
    pass
after_help = training_side()

# `heron moderate` with the text model: builds and loads the TextScorer, scores one message
app(["moderate", "--scorers", "rules,links,text", "--no-progress", "you are a pathetic idiot"],
    prog_name="heron", standalone_mode=False)

# what `heron serve` and `heron worker` import on top: the app factory, the runtime, the tasks
import api.main, pipeline.runtime, pipeline.queue.celery_app, pipeline.queue.processing  # noqa: E401
import models.text.batcher, models.text.engine, models.text.model, models.text.quantize  # noqa: E401
from pipeline.scorers.text import TextScorer

scorer = TextScorer(cache_size=0).load()
assert scorer.engine is not None
print(json.dumps({"after_help": after_help, "after_serving": training_side()}))
"""


@pytest.mark.skipif(not (DEFAULT_ARTIFACT_DIR / CONFIG_FILE).is_file(), reason="no committed text artifact")
def test_serving_loads_the_text_model_without_training_or_pandas(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HERON_DATABASE_URL": f"sqlite:///{tmp_path / 'heron.db'}"}
    env.pop("HERON_REDIS_URL", None)
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Usage: heron serve" in out.stdout
    decision, modules = (json.loads(line) for line in out.stdout.splitlines() if line.startswith("{"))
    assert "text" in decision["model_versions"], decision  # the text model really scored
    assert modules == {"after_help": [], "after_serving": []}


def test_the_training_commands_still_answer_through_heron() -> None:
    """`heron train`/`heron eval` load training/cli.py on demand and show its own help."""
    heron = str(Path(sys.executable).parent / "heron")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([heron, "train", "text", "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--max-examples" in out.stdout and "heron train text" in out.stdout
    out = subprocess.run([heron, "eval", "text", "--no-such-option"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 2 and "No such option" in out.stderr
