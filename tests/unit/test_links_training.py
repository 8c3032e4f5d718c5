"""The link benchmark's split and metrics: temporal, grouped by site, and measured honestly."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.features.domains import registrable_domain
from training.links.train import recall_at_fpr


def test_recall_at_fpr_never_exceeds_the_allowed_false_positives() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(500), np.zeros(1000)].astype(int)
    s = np.r_[rng.normal(2, 1, 500), rng.normal(0, 1, 1000)]
    for fpr in (0.01, 0.001):
        recall, thr = recall_at_fpr(y, s, fpr)
        assert (s[y == 0] > thr).mean() <= fpr
        assert recall == pytest.approx((s[y == 1] > thr).mean())
    perfect = np.r_[np.ones(500), np.zeros(1000)]
    assert recall_at_fpr(y, perfect, 0.01)[0] == 1.0


def test_splits_are_temporal_and_grouped_by_site() -> None:
    from training.links.data import build_splits
    from training.text.data import resolve_data_dir

    try:
        root = resolve_data_dir(None)
    except FileNotFoundError:
        pytest.skip("shared data not on this machine")
    splits = build_splits(root)
    sites = {}
    for name in ("train", "val", "test"):
        hosts, labels = getattr(splits, name)
        sites[name] = {registrable_domain(h) or h for h in hosts}
        assert sum(labels) > 1000 and len(labels) - sum(labels) > 1000
    assert not sites["train"] & sites["test"] and not sites["val"] & sites["test"] and not sites["train"] & sites["val"]
    assert splits.summary["test_first_seen_range"][0] >= splits.summary["cutoff"]
