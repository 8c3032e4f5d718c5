"""`heron train links` / `heron eval links`: the learned domain model and its temporal benchmark.

Training uses only hosts first seen before the validation start (positives) and the training
share of the benign hosts; the regularisation strength is chosen on the validation slice (the
three months before the cut-off), and the score map's thresholds are read off the validation
negatives. The test slice (first seen after the cut-off) is scored once, by `evaluate`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score

from models.links.domain_model import (
    DEFAULT_BRANDS,
    LinkModel,
    LinkModelConfig,
    canonical_host,
    dense_features,
    featurize,
)
from training.links.data import DEFAULT_CUTOFF, DEFAULT_VAL_START, build_splits, phishing_entries_before

C_GRID = (0.3, 1.0, 3.0, 10.0)


def recall_at_fpr(y: np.ndarray, s: np.ndarray, fpr: float) -> tuple[float, float]:
    """Recall at the strictest threshold whose false-positive rate is at most `fpr`, and that threshold."""
    neg = np.sort(s[y == 0])[::-1]
    k = int(np.floor(fpr * len(neg)))  # negatives allowed above the threshold
    thr = float(neg[k]) if k < len(neg) else float(neg[-1])
    return float(np.mean(s[y == 1] > thr)), thr


def metrics(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    r1, _ = recall_at_fpr(y, s, 0.01)
    r01, _ = recall_at_fpr(y, s, 0.001)
    return {
        "auprc": round(float(average_precision_score(y, s)), 4),
        "auroc": round(float(roc_auc_score(y, s)), 4),
        "recall_at_1pct_fpr": round(r1, 4),
        "recall_at_0.1pct_fpr": round(r01, 4),
        "positives": int(y.sum()),
        "negatives": int((y == 0).sum()),
    }


def _fit(X: Any, y: np.ndarray, c: float) -> LogisticRegression:
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=3000, solver="liblinear")
    return clf.fit(X, y)


def train_links(root: Path, out: Path, cutoff: str = DEFAULT_CUTOFF, val_start: str = DEFAULT_VAL_START) -> LinkModel:
    """Fit the model on the training slice, pick C and thresholds on validation, save to `out`."""
    splits = build_splits(root, cutoff=cutoff, val_start=val_start)
    brands = list(DEFAULT_BRANDS)
    tr_hosts = [canonical_host(h) for h in splits.train[0]]
    va_hosts = [canonical_host(h) for h in splits.val[0]]
    y_tr, y_va = np.array(splits.train[1]), np.array(splits.val[1])
    dense = np.array([dense_features(h, brands) for h in tr_hosts])
    mean, scale = dense.mean(axis=0), dense.std(axis=0) + 1e-6
    X_tr = featurize(tr_hosts, brands, mean, scale)
    X_va = featurize(va_hosts, brands, mean, scale)
    grid: dict[str, dict[str, float]] = {}
    best: tuple[float, float, LogisticRegression] | None = None
    for c in C_GRID:
        clf = _fit(X_tr, y_tr, c)
        m = metrics(y_va, clf.predict_proba(X_va)[:, 1])
        grid[str(c)] = m
        print(f"C={c}: validation {m}", flush=True)
        key = (m["recall_at_1pct_fpr"], m["auprc"])
        if best is None or key > best[:2]:
            best = (*key, clf)
    assert best is not None
    clf = best[2]
    raw_va = clf.predict_proba(X_va)[:, 1]
    _, t1 = recall_at_fpr(y_va, raw_va, 0.01)
    _, t01 = recall_at_fpr(y_va, raw_va, 0.001)
    config = LinkModelConfig(
        version=f"links-{time.strftime('%Y%m%d')}",
        brands=brands,
        dense_mean=[float(v) for v in mean],
        dense_scale=[float(v) for v in scale],
        threshold_fpr_1pct=t1,
        threshold_fpr_01pct=t01,
        trained_on={**splits.summary, "C": clf.C, "validation_grid": grid},
    )
    model = LinkModel(clf.coef_.ravel(), float(clf.intercept_[0]), config)
    model.save(out)
    return model


def evaluate_links(root: Path, artifact: Path) -> dict[str, Any]:
    """Score the future (test) slice with the artifact and with exact matching; write metrics.json."""
    from pipeline.features.context import ExtractedLink
    from pipeline.scorers.links import KNOWN_FALSE_POSITIVES, LinkList

    model = LinkModel.load(artifact)
    cutoff = model.config.trained_on.get("cutoff", DEFAULT_CUTOFF)
    val_start = model.config.trained_on.get("val_start", DEFAULT_VAL_START)
    splits = build_splits(root, cutoff=cutoff, val_start=val_start)
    hosts, labels = splits.test
    y = np.array(labels)
    started = time.perf_counter()
    raw = model.raw(hosts)
    per_host_us = (time.perf_counter() - started) / max(len(hosts), 1) * 1e6
    learned = metrics(y, raw)
    # Exact matching with the list as it stood at the cut-off (what a list-only scorer knew).
    known = LinkList.from_entries(phishing_entries_before(root, cutoff), exclude=KNOWN_FALSE_POSITIVES)
    hit = np.array([known.match(ExtractedLink(h, "", h, (0, 0))) is not None for h in hosts], dtype=float)
    exact = {
        "recall": round(float(hit[y == 1].mean()), 4),
        "false_positive_rate": round(float(hit[y == 0].mean()), 4),
        "auprc": round(float(average_precision_score(y, hit)), 4),
    }
    served = model.score(hosts)
    out = {
        "model_version": model.version,
        "split": splits.summary,
        "test_learned": learned,
        "test_exact_match_list_at_cutoff": exact,
        "served_score_on_test": {
            "flagged_at_0.5_positives": round(float((served[y == 1] >= 0.5).mean()), 4),
            "flagged_at_0.5_negatives": round(float((served[y == 0] >= 0.5).mean()), 4),
            "flagged_at_0.8_positives": round(float((served[y == 1] >= 0.8).mean()), 4),
            "flagged_at_0.8_negatives": round(float((served[y == 0] >= 0.8).mean()), 4),
        },
        "microseconds_per_host_batch": round(per_host_us, 1),
    }
    (artifact / "metrics.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out
