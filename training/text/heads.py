"""Train and evaluate the taxonomy heads (violence, self_harm, sexual, harassment, scam).

`heron train text-heads` / `heron eval text-heads`. For each category, in the same run and on the
same rows (`training.text.heads_data`):
- the head: logistic regression or a one-hidden-layer MLP over the frozen pooled embedding of the
  served encoder (chosen per category by validation average precision), Platt-scaled on
  validation, threshold = the validation-F1-best point;
- the baseline: TF-IDF (word 1-2 grams) + logistic regression, C and threshold chosen the same way.
Both are scored on the test split (never used for fitting or choosing). Seeds change the cross
negatives sampled and the MLP's initialisation; seed 0's heads are written to the artifact.

Why frozen embeddings and not fine-tuning: one encoder forward must serve every category, and the
encoder's own heads (toxicity/hate/spam) must not move; a head on the pooled vector leaves both
untouched and trains in seconds from cached embeddings.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score
from sklearn.neural_network import MLPClassifier

from models.text.canonical import model_text
from models.text.heads import HEADS_CONFIG, save_heads
from models.text.model import CONFIG_FILE, DEFAULT_ARTIFACT_DIR, ArtifactConfig
from training.text.embed_cache import embed_texts
from training.text.heads_data import HEAD_CATEGORIES, Part, load_category_data, load_sources

METRICS_FILE = "heads_metrics.json"
DEFAULT_CACHE = Path(__file__).resolve().parents[2] / "var" / "text_heads_cache"
# Per category: the test sources whose F1 is a named target or is worth its own line.
NAMED_TESTS: dict[str, dict[str, tuple[str, ...]]] = {
    "violence": {"edos": ("edos",), "toxic_spans": ("toxic_spans",)},
    "self_harm": {"reddit_suicidewatch": ("rmhd",), "cssrs_posts": ("cssrs",)},
    "sexual": {"convabuse_sex_harassment": ("convabuse",)},
    "harassment": {"convabuse_abusive": ("convabuse",), "olid_ind_public_test": ("olid_ind",)},
    "scam": {"mendeley_smishing_dedup": ("smishing",)},
}
NATURAL = "natural"  # the pooled test split without the team's seed rows


def _best_threshold(p: np.ndarray, y: np.ndarray) -> float:
    grid = np.unique(np.round(p, 3))
    best, best_t = -1.0, 0.5
    for t in grid:
        f = f1_score(y, p >= t, zero_division=0)
        if f > best:
            best, best_t = f, float(t)
    return best_t


def _platt(logit: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    lr = LogisticRegression(C=1e4, max_iter=1000).fit(logit.reshape(-1, 1), y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _scores(y: np.ndarray, p: np.ndarray, t: float) -> dict[str, float]:
    pred = p >= t
    out = {"n": int(len(y)), "positives": int(y.sum()), "f1": float(f1_score(y, pred, zero_division=0)),
           "precision": float(precision_score(y, pred, zero_division=0)),
           "recall": float(recall_score(y, pred, zero_division=0))}
    if 0 < y.sum() < len(y):
        out["ap"] = float(average_precision_score(y, p))
    return out


def fit_head(xtr: np.ndarray, ytr: np.ndarray, xva: np.ndarray, yva: np.ndarray,
             seed: int) -> tuple[str, list[tuple[np.ndarray, np.ndarray]], dict[str, float]]:
    """The best of a few LR/MLP heads by validation AP, as dense layers on the raw pooled vector
    (standardisation folded into the first layer). Returns (kind, layers, val APs of candidates)."""
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    ztr, zva = (xtr - mu) / sd, (xva - mu) / sd
    cands: dict[str, Any] = {}
    for c in (0.01, 0.1, 1.0):
        cands[f"logreg_C{c}"] = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(ztr, ytr)
    for h in (64, 256):
        cands[f"mlp_{h}"] = MLPClassifier(hidden_layer_sizes=(h,), alpha=1e-2, early_stopping=True,
                                          validation_fraction=0.15, max_iter=300, random_state=seed).fit(ztr, ytr)
    aps = {k: float(average_precision_score(yva, m.predict_proba(zva)[:, 1])) for k, m in cands.items()}
    kind = max(aps, key=lambda k: aps[k])
    m = cands[kind]
    if kind.startswith("logreg"):
        w = (m.coef_[0] / sd).reshape(-1, 1).astype(np.float32)
        b = np.array([m.intercept_[0] - float((m.coef_[0] * mu / sd).sum())], dtype=np.float32)
        layers = [(w, b)]
    else:
        w1 = (m.coefs_[0] / sd[:, None]).astype(np.float32)
        b1 = (m.intercepts_[0] - (mu / sd) @ m.coefs_[0]).astype(np.float32)
        layers = [(w1, b1), (m.coefs_[1].astype(np.float32), m.intercepts_[1].astype(np.float32))]
    return kind, layers, aps


def head_logit(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    h = x
    for k, (w, b) in enumerate(layers):
        h = h @ w + b
        if k < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h[:, 0]


def fit_baseline(ttr: list[str], ytr: np.ndarray, tva: list[str], yva: np.ndarray) -> tuple[Any, Any, float]:
    """TF-IDF + logistic regression; C by validation AP, threshold by validation F1."""
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=100_000)
    xtr, xva = vec.fit_transform(ttr), vec.transform(tva)
    best = None
    for c in (1.0, 10.0, 100.0):
        m = LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(xtr, ytr)
        ap = average_precision_score(yva, m.predict_proba(xva)[:, 1])
        if best is None or ap > best[0]:
            best = (ap, m)
    assert best is not None
    m = best[1]
    return vec, m, _best_threshold(m.predict_proba(xva)[:, 1], yva)


def _subsets(part: Part, cat: str) -> dict[str, np.ndarray]:
    src = np.array(part.source)
    out = {NATURAL: src != "seed", "seed_set": src == "seed"}
    for name, sources in NAMED_TESTS[cat].items():
        out[name] = np.isin(src, sources)
    return {k: v for k, v in out.items() if v.any()}


def run_seed(data: dict[str, dict[str, Part]], emb: dict[str, np.ndarray], seed: int
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """One seed: fit heads + baselines for every category, score the test splits.
    Returns (metrics, heads for the artifact)."""
    metrics: dict[str, Any] = {}
    heads: dict[str, Any] = {"layers": {}, "platt": {}, "thresholds": {}, "kind": {}}
    for cat in HEAD_CATEGORIES:
        t0 = time.perf_counter()
        parts = data[cat]
        texts = {s: [model_text(t) for t in parts[s].raw] for s in parts}
        x = {s: np.stack([emb[t] for t in texts[s]]) for s in parts}
        y = {s: parts[s].labels for s in parts}
        kind, layers, aps = fit_head(x["train"], y["train"], x["val"], y["val"], seed)
        a, b = _platt(head_logit(layers, x["val"]), y["val"])
        p = {s: _sig(a * head_logit(layers, x[s]) + b) for s in parts}
        t = _best_threshold(p["val"], y["val"])
        vec, base, bt = fit_baseline(texts["train"], y["train"], texts["val"], y["val"])
        bp = {s: base.predict_proba(vec.transform(texts[s]))[:, 1] for s in ("val", "test")}
        subsets = _subsets(parts["test"], cat)
        metrics[cat] = {
            "head": kind, "val_ap_candidates": aps, "threshold": t, "baseline_threshold": bt,
            "train": {"n": int(len(y["train"])), "positives": int(y["train"].sum())},
            "val": {"head": _scores(y["val"], p["val"], t), "baseline": _scores(y["val"], bp["val"], bt)},
            "test": {name: {"head": _scores(y["test"][m], p["test"][m], t),
                            "baseline": _scores(y["test"][m], bp["test"][m], bt)} for name, m in subsets.items()},
            "seconds": time.perf_counter() - t0,
        }
        heads["layers"][cat] = layers
        heads["platt"][cat] = (a, b)
        heads["thresholds"][cat] = t
        heads["kind"][cat] = kind
    return metrics, heads


def _mean_sd(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": len(arr)}


def summarise(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """mean ± sd over seeds of every test F1/AP, head and baseline, and the head-baseline gap."""
    out: dict[str, Any] = {}
    first = next(iter(per_seed.values()))
    for cat, m in first.items():
        out[cat] = {}
        for name in m["test"]:
            row: dict[str, Any] = {}
            for who in ("head", "baseline"):
                for k in ("f1", "ap", "precision", "recall"):
                    vals = [per_seed[s][cat]["test"][name][who].get(k) for s in per_seed]
                    if all(v is not None for v in vals):
                        row[f"{who}_{k}"] = _mean_sd(vals)
            row["f1_gain"] = _mean_sd([per_seed[s][cat]["test"][name]["head"]["f1"]
                                       - per_seed[s][cat]["test"][name]["baseline"]["f1"] for s in per_seed])
            row["n"], row["positives"] = m["test"][name]["head"]["n"], m["test"][name]["head"]["positives"]
            out[cat][name] = row
    return out


def embeddings_for(texts: set[str], cache_dir: Path, artifact: Path) -> dict[str, np.ndarray]:
    ordered = sorted(texts)
    return dict(zip(ordered, embed_texts(ordered, cache_dir, artifact), strict=True))


def toxigen_flag_rate(root: Path, cache_dir: Path, artifact: Path, heads: Any) -> dict[str, Any]:
    """Share of ToxiGen *neutral* lines on which any taxonomy head reaches its threshold."""
    from training.text.data import toxigen

    tg = toxigen(root)
    neutral = [model_text(t) for t, lab in zip(tg.raw, tg.extra["label"], strict=True) if lab == 0]
    emb = embeddings_for(set(neutral), cache_dir, artifact)
    x = np.stack([emb[t] for t in neutral])
    per = {}
    anyflag = np.zeros(len(neutral), dtype=bool)
    for cat in HEAD_CATEGORIES:
        a, b = heads["platt"][cat]
        f = _sig(a * head_logit(heads["layers"][cat], x) + b) >= heads["thresholds"][cat]
        per[cat] = float(f.mean())
        anyflag |= f
    return {"n": len(neutral), "any_head": float(anyflag.mean()), "per_category": per}


def train_heads(root: Path, artifact: Path = DEFAULT_ARTIFACT_DIR, cache_dir: Path = DEFAULT_CACHE,
                seeds: list[int] | None = None) -> dict[str, Any]:
    """Fit every seed, write seed 0's heads + heads_metrics.json + the card section into `artifact`."""
    seeds = seeds or [0, 1, 2]
    cfg = ArtifactConfig.from_file(artifact / CONFIG_FILE)
    loaded = load_sources(root)
    datas = {s: load_category_data(root, seed=s, loaded=loaded) for s in seeds}
    texts = {model_text(t) for d in datas.values() for c in d.values() for p in c.values() for t in p.raw}
    emb = embeddings_for(texts, cache_dir, artifact)
    per_seed, heads0 = {}, None
    for s in seeds:
        m, h = run_seed(datas[s], emb, s)
        per_seed[s] = m
        if s == seeds[0]:
            heads0 = h
        print(f"seed {s}: " + ", ".join(f"{c} F1 {m[c]['test'][NATURAL]['head']['f1']:.3f} "
                                        f"(baseline {m[c]['test'][NATURAL]['baseline']['f1']:.3f})" for c in m),
              flush=True)
    assert heads0 is not None
    meta = {"encoder_version": cfg.version, "kind": heads0["kind"], "seed": seeds[0],
            "trained_on": "pooled embedding of the served encoder (fp32), model texts truncated at "
                          f"{cfg.max_length} tokens",
            "data": "training/text/heads_data.py; seed set training/text/seed/seed_v1.csv"}
    save_heads(artifact, list(HEAD_CATEGORIES), heads0["layers"], heads0["platt"],
               heads0["thresholds"], meta)
    metrics = {"encoder_version": cfg.version, "seeds": seeds, "summary": summarise(per_seed),
               "per_seed": {str(k): v for k, v in per_seed.items()},
               "toxigen_neutral": toxigen_flag_rate(root, cache_dir, artifact, heads0)}
    (artifact / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", "utf-8")
    return metrics


def eval_heads(root: Path, artifact: Path = DEFAULT_ARTIFACT_DIR, cache_dir: Path = DEFAULT_CACHE) -> dict[str, Any]:
    """Re-score the committed heads (heads.json) on the test splits; returns per-category test F1."""
    from models.text.heads import load_heads

    cfg = ArtifactConfig.from_file(artifact / CONFIG_FILE)
    heads = load_heads(artifact, cfg.version)
    if heads is None:
        raise FileNotFoundError(f"no {HEADS_CONFIG} in {artifact}; run `heron train text-heads`")
    seed = int(heads.config.get("seed", 0))
    data = load_category_data(root, seed=seed)
    out: dict[str, Any] = {}
    texts = {model_text(t) for c in data.values() for t in c["test"].raw}
    emb = embeddings_for(texts, cache_dir, artifact)
    for j, cat in enumerate(heads.categories):
        part = data[cat]["test"]
        x = np.stack([emb[model_text(t)] for t in part.raw])
        p = heads.probs(x)[:, j]
        out[cat] = {name: _scores(part.labels[m], p[m], heads.thresholds[cat])
                    for name, m in _subsets(part, cat).items()}
    return out
