"""The evaluation notebook runs headless against the committed metrics and predictions."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "text_eval.ipynb"
ARTIFACT = ROOT / "models" / "text" / "artifact"


def test_text_eval_notebook_executes() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    if not (ARTIFACT / "metrics.json").is_file() or not (ARTIFACT / "eval_predictions.npz").is_file():
        pytest.skip("no evaluated text artifact (run `heron eval text`)")
    try:
        from training.text.data import resolve_data_dir

        resolve_data_dir()
    except FileNotFoundError:
        pytest.skip("shared data folder not available (the notebook reads labels from it)")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    started = time.time()
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    assert time.time() - started < 60
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum(1 for o in outputs if "image/png" in o.get("data", {})) >= 4  # PR, confusion, thresholds, calibration
