"""Per-category PR curves: the committed predictions cover every served category, agree with the figures
`heron eval text-heads` recorded, and the notebook draws them from a clean checkout (no shared data)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from models.text.model import DEFAULT_ARTIFACT_DIR
from pipeline.scorers.text import HEAD_LABELS, TRAINED_LABELS
from training.text.heads import METRICS_FILE
from training.text.heads_curves import CURVES_FILE, load_predictions, plot_pr_curves, scores

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "text_categories.ipynb"
PREDS = DEFAULT_ARTIFACT_DIR / CURVES_FILE


def test_every_served_category_has_test_predictions_for_ours_and_the_baseline() -> None:
    preds, provenance = load_predictions(PREDS)
    assert tuple(preds) == TRAINED_LABELS + HEAD_LABELS
    assert PREDS.stat().st_size < 400_000  # small enough to commit
    heads_cfg = json.loads((DEFAULT_ARTIFACT_DIR / "heads.json").read_text("utf-8"))
    assert provenance["heads_kind"] == heads_cfg["kind"]  # written for the committed heads
    for cat, p in preds.items():
        m = p.mask(p.headline)
        assert m.sum() > 100 and 0 < p.label[m].sum() < m.sum(), cat
        assert np.isfinite(p.ours).all() and np.isfinite(p.baseline).all()
        assert 0 <= p.ours.min() and p.ours.max() <= 1 and 0 <= p.baseline.min() and p.baseline.max() <= 1
        assert 0 < p.threshold < 1 and 0 < p.baseline_threshold < 1
        if cat in HEAD_LABELS:
            assert p.threshold == pytest.approx(heads_cfg["thresholds"][cat])


def test_committed_predictions_reproduce_the_recorded_head_and_baseline_figures() -> None:
    """The file and heads_metrics.json come from one `heron eval text-heads` run on the committed heads, and
    the refitted baseline is the one `heron train text-heads` measured for seed 0."""
    preds, _ = load_predictions(PREDS)
    metrics = json.loads((DEFAULT_ARTIFACT_DIR / METRICS_FILE).read_text("utf-8"))
    seed0 = metrics["per_seed"][str(metrics["seeds"][0])]
    for cat in HEAD_LABELS:
        for name, row in metrics["committed_heads_test"][cat].items():
            r = scores(preds[cat], name)
            assert r["n"] == row["n"] and r["positives"] == row["positives"], (cat, name)
            assert r["ours_f1"] == pytest.approx(row["f1"], abs=1e-9), (cat, name)
            assert r["baseline_f1"] == pytest.approx(seed0[cat]["test"][name]["baseline"]["f1"], abs=1e-9)
            assert r["ours_f1"] == pytest.approx(seed0[cat]["test"][name]["head"]["f1"], abs=1e-9)


def test_toxicity_matches_the_encoder_evaluation() -> None:
    """OLID macro-F1 of the committed encoder (fp32 forward) at its benchmark threshold, as `heron eval text`
    recorded it for the int8-at-rest weights."""
    from sklearn.metrics import f1_score

    preds, _ = load_predictions(PREDS)
    p = preds["toxicity"]
    ours = 100 * f1_score(p.label, p.ours >= p.extra_thresholds["ours_macro"], average="macro")
    q = json.loads((DEFAULT_ARTIFACT_DIR / "metrics.json").read_text("utf-8"))["quantization"]["paths"]["fp32"]
    assert ours == pytest.approx(q["olid_test_macro_f1_at_fp32_benchmark_threshold"], abs=0.05)


def test_pr_figure_has_a_panel_per_category_with_both_operating_points() -> None:
    import matplotlib.pyplot as plt

    preds, _ = load_predictions(PREDS)
    fig = plot_pr_curves(preds)
    try:
        panels = [ax for ax in fig.axes if ax.lines]
        assert len(panels) == len(preds)
        for ax, p in zip(panels, preds.values(), strict=True):
            assert ax.get_title().startswith(p.category)
            curves = [ln for ln in ax.lines if len(ln.get_xdata()) > 2]
            dots = [ln for ln in ax.lines if len(ln.get_xdata()) == 1]
            assert len(curves) == 2 and len(dots) == 2  # ours + baseline, each with its threshold
            r = scores(p)
            assert dots[0].get_xdata()[0] == pytest.approx(r["ours_recall"])
            assert dots[0].get_ydata()[0] == pytest.approx(r["ours_precision"])
    finally:
        plt.close(fig)


def test_category_notebook_executes_from_the_committed_predictions(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    committed_images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                           if "image/png" in o.get("data", {}))
    assert committed_images >= 2  # the committed copy shows the plots
    started = time.time()
    # no shared data: the notebook must not need it
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute(
        env={**{k: v for k, v in os.environ.items() if k != "MPLBACKEND"}, "HERON_DATA_DIR": str(tmp_path / "absent")})
    assert time.time() - started < 90
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum(1 for o in outputs if "image/png" in o.get("data", {})) == committed_images
