"""Per-category test predictions (ours and the TF-IDF baseline) for precision-recall curves.

Why a committed file: the notebook (`notebooks/text_categories.ipynb`) must draw every category's
PR curve from a clean checkout, without the shared data folder and without retraining. `heron eval
text-heads` therefore writes `category_predictions.npz` next to the artifact: for each of the eight
served categories, every test row's label, our calibrated score, the baseline's score, the test set
the row came from, and both operating thresholds (tens of kB).

What is compared, per category:
- toxicity (OLID test), hate (HatEval test), spam (SMS + YouTube spam tests): the committed encoder's
  serving head (seed 0, fp32 forward, as `heron eval text` scores it) against TF-IDF (word 1-2
  grams) + logistic regression trained on that benchmark's own training split, C chosen by
  validation AP and thresholds on its validation split (positive-class F1 for the operating point,
  macro-F1 for the benchmark figure, as the encoder's own thresholds were chosen);
- violence, self_harm, sexual, harassment, scam: the committed heads (`heads.json`) against the
  seed-0 TF-IDF baseline of `training.text.heads`, refitted on exactly the rows the heads used.
Nothing here is fitted or chosen on a test split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve

from models.text.model import CONFIG_FILE, DEFAULT_ARTIFACT_DIR, ArtifactConfig

CURVES_FILE = "category_predictions.npz"
CATEGORIES: tuple[str, ...] = ("toxicity", "hate", "spam", "violence", "self_harm", "sexual", "harassment", "scam")
ENCODER_CATEGORIES: tuple[str, ...] = CATEGORIES[:3]


@dataclass
class CategoryPredictions:
    """One category's test rows: 0/1 labels, our score, the baseline's score, and each row's source."""

    category: str
    label: np.ndarray  # (n,) int8
    ours: np.ndarray  # (n,) float32, calibrated probability
    baseline: np.ndarray  # (n,) float32
    source: np.ndarray  # (n,) str, the data set each row came from
    threshold: float  # our operating threshold (what serving uses)
    baseline_threshold: float  # the baseline's, chosen on validation the same way
    subsets: dict[str, list[str]]  # named test set -> sources it pools; the first is the headline
    test_set: str  # one line describing the headline test set
    baseline_recipe: str
    extra_thresholds: dict[str, float]  # e.g. the benchmark (macro-F1) thresholds for OLID/HatEval

    def mask(self, subset: str) -> np.ndarray:
        return np.isin(self.source, self.subsets[subset])

    @property
    def headline(self) -> str:
        return next(iter(self.subsets))


def _f1_at(y: np.ndarray, p: np.ndarray, t: float, average: str = "binary") -> float:
    return float(f1_score(y, (p >= t).astype(int), average=average, zero_division=0))


def scores(pred: CategoryPredictions, subset: str | None = None) -> dict[str, Any]:
    """F1/precision/recall at both operating thresholds and AP, ours and the baseline, on one subset."""
    m = pred.mask(subset or pred.headline)
    y, out = pred.label[m].astype(int), {"n": int(m.sum()), "positives": int(pred.label[m].sum())}
    for who, p, t in (("ours", pred.ours[m], pred.threshold), ("baseline", pred.baseline[m], pred.baseline_threshold)):
        hit = p >= t
        tp = int((hit & (y == 1)).sum())
        out[f"{who}_f1"] = _f1_at(y, p, t)
        out[f"{who}_precision"] = tp / max(int(hit.sum()), 1)
        out[f"{who}_recall"] = tp / max(int(y.sum()), 1)
        out[f"{who}_ap"] = float(average_precision_score(y, p)) if 0 < y.sum() < len(y) else None
    return out


# -- building the predictions -------------------------------------------------------------------------
def _annotated(sets: dict[str, Any], col: int) -> tuple[list[str], np.ndarray]:
    """Model texts and 0/1 labels of every row whose data set annotates output `col` (the rows that
    output learnt from: masked binary cross-entropy skips the others)."""
    texts: list[str] = []
    ys: list[np.ndarray] = []
    for split in sets.values():
        keep = ~np.isnan(split.y[:, col])
        texts += [t for t, k in zip(split.texts, keep, strict=True) if k]
        ys.append(split.y[keep, col].astype(int))
    return texts, np.concatenate(ys) if ys else np.zeros(0, dtype=int)


def encoder_category_predictions(root: Path, artifact: Path = DEFAULT_ARTIFACT_DIR) -> dict[str, CategoryPredictions]:
    """toxicity / hate / spam: the committed encoder's serving heads against TF-IDF baselines trained on
    the same rows as each serving head (every training row whose data set annotates that head)."""
    from models.text.engine import TextEngine
    from training.text.data import LABELS, OUTPUTS, load_sets
    from training.text.heads import fit_baseline
    from training.text.train import best_binary_threshold

    cfg = ArtifactConfig.from_file(artifact / CONFIG_FILE)
    engine = TextEngine(artifact, quantize="fp32")
    train, val, test = (load_sets(root, w) for w in ("train", "val", "test"))
    out: dict[str, CategoryPredictions] = {}
    recipe = ("TF-IDF (word 1-2 grams) + logistic regression on every training row that annotates the serving "
              "head (`training/text/data.py` label map; no augmentation); C by validation AP and threshold by "
              "validation F1 on the pooled validation rows, as the serving threshold was chosen")
    tests = {"toxicity": {"olid_test": "olid"}, "hate": {"hateval_test": "hateval"},
             "spam": {"natural": None, "sms_spam": "sms_spam", "youtube_spam": "youtube_spam"}}
    for cat in LABELS:
        head = cfg.serving_heads[cat]
        col = OUTPUTS.index(head)
        sources = [s for s in tests[cat].values() if s]
        vec, model, _ = fit_baseline(*_annotated(train, col), *_annotated(val, col))
        vt, vy = _annotated(val, col)
        t_op, _ = best_binary_threshold(model.predict_proba(vec.transform(vt))[:, 1], vy, average="binary")
        te_texts = [t for s in sources for t in test[s].texts]
        labels = np.concatenate([test[s].y[:, LABELS.index(cat)] for s in sources]).astype(np.int8)
        extra: dict[str, float] = {}
        if cat in ("toxicity", "hate"):  # the benchmark figure: macro-F1, threshold on the benchmark's val split
            bench = cfg.benchmark_thresholds.get(f"{sources[0]}_served", {})
            bv = val[sources[0]]
            t_macro, _ = best_binary_threshold(model.predict_proba(vec.transform(bv.texts))[:, 1],
                                               bv.extra["label"], average="macro")
            extra = {"ours_macro": float(bench.get("t", cfg.thresholds[cat])), "baseline_macro": t_macro}
        out[cat] = CategoryPredictions(
            cat, labels, engine.probs(te_texts)[:, OUTPUTS.index(head)].astype(np.float32),
            model.predict_proba(vec.transform(te_texts))[:, 1].astype(np.float32),
            np.array([s for s in sources for _ in range(len(test[s]))]), float(cfg.thresholds[cat]), t_op,
            {name: [s] if s else sources for name, s in tests[cat].items()},
            {"toxicity": "OLID (TweetEval offensive) test, official split", "hate": "HatEval (TweetEval hate) test, "
             "official split", "spam": "UCI SMS spam + YouTube spam tests (dedup splits)"}[cat], recipe, extra)
    return out


def head_category_predictions(root: Path, artifact: Path, cache_dir: Path) -> dict[str, CategoryPredictions]:
    """violence ... scam: the committed heads on the test splits, beside the seed-0 TF-IDF baseline
    refitted on the very rows (`load_category_data(seed=heads' seed)`) the heads were fitted on."""
    from models.text.heads import HEADS_CONFIG, load_heads
    from training.text.heads import NAMED_TESTS, NATURAL, _subsets, fit_baseline, heads_probs, model_text
    from training.text.heads_data import EVAL_ONLY, load_category_data

    cfg = ArtifactConfig.from_file(artifact / CONFIG_FILE)
    heads = load_heads(artifact, cfg.version, cfg.weights.get("sha256"))
    if heads is None:
        raise FileNotFoundError(f"no {HEADS_CONFIG} in {artifact}; run `heron train text-heads`")
    data = load_category_data(root, seed=int(heads.config.get("seed", 0)))
    out: dict[str, CategoryPredictions] = {}
    for j, cat in enumerate(heads.categories):
        parts = data[cat]
        texts = {s: [model_text(t) for t in parts[s].raw] for s in ("train", "val", "test")}
        ours = heads_probs(heads, parts["test"].raw, cache_dir, artifact)[:, j]
        vec, base, bt = fit_baseline(texts["train"], parts["train"].labels, texts["val"], parts["val"].labels)
        bp = base.predict_proba(vec.transform(texts["test"]))[:, 1]
        part = parts["test"]
        present = set(_subsets(part, cat))
        sources = sorted(set(part.source))
        subsets = {NATURAL: [s for s in sources if s not in ("seed", *EVAL_ONLY)], "seed_set": ["seed"],
                   **{name: list(srcs) for name, srcs in NAMED_TESTS[cat].items()}}
        out[cat] = CategoryPredictions(
            cat, part.labels.astype(np.int8), ours.astype(np.float32), bp.astype(np.float32), np.array(part.source),
            float(heads.thresholds[cat]), float(bt), {k: v for k, v in subsets.items() if k in present},
            "pooled natural test splits: " + ", ".join(NAMED_TESTS[cat]),
            "TF-IDF (word 1-2 grams) + logistic regression on exactly the heads' training rows (seed-0 sample); C by "
            "validation AP, threshold by validation F1", {})
    return out


# -- file format ------------------------------------------------------------------------------------------
def save_predictions(path: Path, preds: dict[str, CategoryPredictions], provenance: dict[str, Any]) -> None:
    """One compressed npz: `{cat}/label|ours|baseline|source` arrays + a JSON `meta` string (no pickles)."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"provenance": provenance, "categories": {}}
    for cat, p in preds.items():
        names = sorted(set(p.source.tolist()))
        arrays[f"{cat}/label"] = p.label.astype(np.int8)
        arrays[f"{cat}/ours"] = p.ours.astype(np.float32)
        arrays[f"{cat}/baseline"] = p.baseline.astype(np.float32)
        arrays[f"{cat}/source"] = np.searchsorted(names, p.source).astype(np.int8)
        meta["categories"][cat] = {"sources": names, "threshold": p.threshold,
                                   "baseline_threshold": p.baseline_threshold, "subsets": p.subsets,
                                   "test_set": p.test_set, "baseline_recipe": p.baseline_recipe,
                                   "extra_thresholds": p.extra_thresholds}
    arrays["meta"] = np.array(json.dumps(meta))
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_predictions(path: Path = DEFAULT_ARTIFACT_DIR / CURVES_FILE) -> tuple[dict[str, CategoryPredictions],
                                                                               dict[str, Any]]:
    """(category -> predictions, provenance) from `category_predictions.npz`, in serving order."""
    z = np.load(path, allow_pickle=False)
    meta = json.loads(str(z["meta"]))
    out = {}
    for cat in [c for c in CATEGORIES if c in meta["categories"]]:
        m = meta["categories"][cat]
        out[cat] = CategoryPredictions(
            cat, z[f"{cat}/label"], z[f"{cat}/ours"], z[f"{cat}/baseline"], np.array(m["sources"])[z[f"{cat}/source"]],
            float(m["threshold"]), float(m["baseline_threshold"]), m["subsets"], m["test_set"], m["baseline_recipe"],
            m.get("extra_thresholds", {}))
    return out, meta["provenance"]


def write_category_predictions(root: Path, artifact: Path, cache_dir: Path) -> dict[str, CategoryPredictions]:
    """Build every category's predictions and write `category_predictions.npz` into the artifact."""
    cfg = ArtifactConfig.from_file(artifact / CONFIG_FILE)
    heads_cfg = json.loads((artifact / "heads.json").read_text("utf-8"))
    preds = {**encoder_category_predictions(root, artifact), **head_category_predictions(root, artifact, cache_dir)}
    provenance = {"encoder_version": cfg.version, "encoder_forward": "fp32 (as `heron eval text` scores)",
                  "heads_seed": heads_cfg.get("seed", 0), "heads_kind": heads_cfg.get("kind", {}),
                  "written_by": "heron eval text-heads (training/text/heads_curves.py)"}
    save_predictions(artifact / CURVES_FILE, preds, provenance)
    return preds


def print_table(preds: dict[str, CategoryPredictions]) -> None:
    """Every category and test set: ours beside the baseline, each at its own operating threshold."""
    print("\n== per-category test figures, ours vs TF-IDF baseline (operating thresholds; seed 0) ==")
    for cat, p in preds.items():
        for sub in p.subsets:
            r = scores(p, sub)
            ap = (f"AP {r['ours_ap']:.3f} vs {r['baseline_ap']:.3f}" if r["ours_ap"] is not None else "AP n/a")
            print(f"{cat:<11} {sub:<26} n={r['n']:<5} pos={r['positives']:<4} F1 {r['ours_f1']:.3f} vs "
                  f"{r['baseline_f1']:.3f}  {ap}", flush=True)
        if "ours_macro" in p.extra_thresholds:
            y, m = p.label.astype(int), p.mask(p.headline)
            print(f"{cat:<11} {p.headline:<26} macro-F1 at the benchmark thresholds: "
                  f"{100 * _f1_at(y[m], p.ours[m], p.extra_thresholds['ours_macro'], 'macro'):.1f} vs "
                  f"{100 * _f1_at(y[m], p.baseline[m], p.extra_thresholds['baseline_macro'], 'macro'):.1f}",
                  flush=True)


# -- plotting (the notebook and its test call these) -----------------------------------------------------
def drawable(p: CategoryPredictions, subset: str) -> bool:
    """A PR curve needs both classes (the self_harm seed rows, for one, are all negatives)."""
    y = p.label[p.mask(subset)]
    return 0 < int(y.sum()) < len(y)


def plot_pr_curves(preds: dict[str, CategoryPredictions], panels: list[tuple[str, str]] | None = None,
                   ncols: int = 4) -> Any:
    """PR curves of ours (solid) and the baseline (dashed), each operating threshold marked with a dot.
    One panel per (category, test set) in `panels`; by default each category's headline test set."""
    import matplotlib.pyplot as plt

    panels = [pn for pn in (panels or [(c, p.headline) for c, p in preds.items()]) if drawable(preds[pn[0]], pn[1])]
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.8 * nrows), squeeze=False)
    for ax, (cat, sub) in zip(axes.flat, panels, strict=False):
        p = preds[cat]
        m = p.mask(sub)
        y = p.label[m].astype(int)
        r = scores(p, sub)
        for who, s, t, style in (("ours", p.ours[m], p.threshold, "-"),
                                 ("TF-IDF LR", p.baseline[m], p.baseline_threshold, "--")):
            key = "ours" if who == "ours" else "baseline"
            prec, rec, _ = precision_recall_curve(y, s)
            (line,) = ax.plot(rec, prec, style, label=f"{who} AP {r[f'{key}_ap']:.2f}")
            ax.plot([r[f"{key}_recall"]], [r[f"{key}_precision"]], "o", color=line.get_color(),
                    label=f"@{t:.2f}: F1 {r[f'{key}_f1']:.2f}")
        ax.axhline(y.mean(), color="grey", lw=0.8, ls=":")
        ax.set(title=f"{cat} — {sub} (n={r['n']}, pos={r['positives']})", xlabel="recall", ylabel="precision",
               xlim=(0, 1.01), ylim=(0, 1.02))
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, loc="lower left")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return fig
