"""Choosing the spam-text model's settings on validation rows only: `python -m training.spam.select`.

The figure `heron eval spam` reports for YouTube is leave-one-video-out on the held-out video's
*test* rows. This runs the same protocol one level down, on rows no test figure uses: for each
video, fit on the SMS train split and the other four videos' train rows, choose the threshold on
the other videos' val rows, and score the held-out video's *val* rows; pooled over the five
videos. The text model never trained on val rows, so the served combination (the mean of its
spam score and the spam-text model's) is measured cleanly too.

Variants: the regularisation `C`, and whether the Mendeley smishing rows that are not UCI SMS
copies (`training/behaviour/texts.py:smishing_clean`, training-only by their PROVENANCE) join the
training texts. Whatever wins here is what `heron train spam` uses (`training/spam/evaluate.py`:
`C`, `WITH_SMISHING`); models/spam/MODEL_CARD.md records the outcome.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from models.spam.model import SpamTextConfig, SpamTextModel, counts, fit_idf, tfidf
from training.spam.data import sms, youtube
from training.spam.evaluate import best_threshold, text_model_spam

VARIANTS: tuple[tuple[float, bool], ...] = tuple((c, smish) for smish in (False, True) for c in (1.0, 3.0, 10.0, 30.0))


def _fit(texts: list[str], y: np.ndarray, c: float) -> SpamTextModel:
    from sklearn.linear_model import LogisticRegression

    X = counts([t.lower() for t in texts])
    idf = fit_idf(X)
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=3000, solver="liblinear").fit(tfidf(X, idf), y)
    cfg = SpamTextConfig(version="select", combined_threshold=0.5, own_threshold=0.5)
    return SpamTextModel(idf, clf.coef_.ravel(), float(clf.intercept_[0]), cfg)


def lovo_val(root: Path, c: float, with_smishing: bool) -> dict[str, Any]:
    """Pooled leave-one-video-out F1 on the held-out videos' val rows (see the module docstring)."""
    from training.behaviour.texts import smishing_clean

    s, yt = sms(root), youtube(root)
    yt["text_spam"] = text_model_spam(yt["text"].tolist())
    extra = smishing_clean(root) if with_smishing else pd.DataFrame({"text": [], "y": []})
    ys, own_pred, comb_pred = [], [], []
    for video in sorted(yt.video.unique()):
        rest, held = yt[yt.video != video], yt[(yt.video == video) & (yt.split == "val")]
        train = pd.concat([s[s.split == "train"], rest[rest.split == "train"], extra], ignore_index=True)
        model = _fit(train["text"].astype(str).tolist(), train["y"].to_numpy().astype(int), c)
        val = rest[rest.split == "val"]
        own_v = model.score(val["text"].tolist())
        t_own = best_threshold(val["y"].to_numpy(), own_v)
        t_comb = best_threshold(val["y"].to_numpy(), 0.5 * own_v + 0.5 * val["text_spam"].to_numpy())
        own = model.score(held["text"].tolist())
        ys.append(held["y"].to_numpy())
        own_pred.append((own >= t_own).astype(int))
        comb_pred.append((0.5 * own + 0.5 * held["text_spam"].to_numpy() >= t_comb).astype(int))
    y = np.concatenate(ys)
    return {
        "C": c,
        "with_smishing": with_smishing,
        "rows": int(len(y)),
        "spam_text_f1": round(float(f1_score(y, np.concatenate(own_pred))), 4),
        "combined_f1": round(float(f1_score(y, np.concatenate(comb_pred))), 4),
    }


def main() -> None:
    from training.text.data import resolve_data_dir

    root = resolve_data_dir(None)
    rows = [lovo_val(root, c, smish) for c, smish in VARIANTS]
    for r in rows:
        print(json.dumps(r))
    best = max(rows, key=lambda r: (r["combined_f1"], r["spam_text_f1"]))
    print("best on validation:", json.dumps(best))


if __name__ == "__main__":
    main()
