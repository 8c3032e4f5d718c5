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
import random
import shutil
import time
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
)
from sklearn.neural_network import MLPClassifier

from models.text.canonical import model_text as _model_text
from models.text.heads import HEADS_CONFIG, HEADS_WEIGHTS, LEXICAL_WEIGHTS, Blend, Lexical, TaxonomyHeads, save_heads
from models.text.lexical import LexicalFeatures, fit_vocab
from models.text.model import CONFIG_FILE, DEFAULT_ARTIFACT_DIR, ArtifactConfig
from training.text.embed_cache import embed_texts, embed_window_means
from training.text.heads_data import EVAL_ONLY, HEAD_CATEGORIES, Part, load_category_data, load_sources
from training.text.labels_data import SOURCE as LABELS_SOURCE
from training.text.labels_data import LabelSet, head_rows

METRICS_FILE = "heads_metrics.json"


@lru_cache(maxsize=200_000)
def model_text(raw: str) -> str:
    """`models.text.canonical.model_text`, memoised: every seed and category re-reads the same rows."""
    return _model_text(raw)


DEFAULT_CACHE = Path(__file__).resolve().parents[2] / "var" / "text_heads_cache"
# Per category: the test sources whose F1 is a named target or is worth its own line.
NAMED_TESTS: dict[str, dict[str, tuple[str, ...]]] = {
    "violence": {"edos": ("edos",), "toxic_spans": ("toxic_spans",)},
    "self_harm": {"reddit_suicidewatch": ("rmhd",), "cssrs_posts": ("cssrs",)},
    "sexual": {"convabuse_sex_harassment": ("convabuse",)},
    "harassment": {"convabuse_abusive": ("convabuse",), "olid_ind_public_test": ("olid_ind",)},
    "scam": {"mendeley_smishing_dedup": ("smishing",)},
}
NATURAL = "natural"  # the pooled test split without the team's seed rows and eval-only sets


def _best_threshold(p: np.ndarray, y: np.ndarray) -> float:
    """The validation-F1-best threshold (scores rounded to 3 decimals, as served scores are 4)."""
    prec, rec, thr = precision_recall_curve(y, np.round(p, 3))
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)[:-1]
    return float(thr[int(np.argmax(f1))])


def _platt(logit: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    lr = LogisticRegression(C=1e4, max_iter=1000).fit(logit.reshape(-1, 1), y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _scores(y: np.ndarray, p: np.ndarray, t: float) -> dict[str, float]:
    pred = p >= t
    out = {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
    }
    if 0 < y.sum() < len(y):
        out["ap"] = float(average_precision_score(y, p))
    return out


# Categories fitted with the wider head search (`fit_head(wide=True)`): chosen on validation (3 seeds;
# the card's violence and self_harm notes give the figures). self_harm was tried too and not adopted.
WIDE_SEARCH: frozenset[str] = frozenset({"violence"})


def _as_layers(m: Any, mu: np.ndarray, sd: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """A fitted LR or one-hidden-layer MLP as dense layers on the raw pooled vector (standardisation folded in)."""
    if isinstance(m, LogisticRegression):
        w = (m.coef_[0] / sd).reshape(-1, 1).astype(np.float32)
        b = np.array([m.intercept_[0] - float((m.coef_[0] * mu / sd).sum())], dtype=np.float32)
        return [(w, b)]
    w1 = (m.coefs_[0] / sd[:, None]).astype(np.float32)
    b1 = (m.intercepts_[0] - (mu / sd) @ m.coefs_[0]).astype(np.float32)
    return [(w1, b1), (m.coefs_[1].astype(np.float32), m.intercepts_[1].astype(np.float32))]


def _ensemble_layers(
    lr: list[tuple[np.ndarray, np.ndarray]], mlp: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The sum of the LR's and the MLP's logits, each standardised by its mean and sd on `x` (the training
    rows), as one two-layer stack: the linear logit rides through the ReLU as relu(z) - relu(-z)."""
    za, zb = head_logit(lr, x), head_logit(mlp, x)
    (ma, sa), (mb, sb) = (za.mean(), za.std() + 1e-6), (zb.mean(), zb.std() + 1e-6)
    (w, b), ((w1, b1), (w2, b2)) = lr[0], mlp
    hidden_w = np.concatenate([w1, w, -w], axis=1).astype(np.float32)
    hidden_b = np.concatenate([b1, b, -b]).astype(np.float32)
    out_w = np.concatenate([w2 / sb, np.array([[1 / sa], [-1 / sa]])]).astype(np.float32)
    out_b = np.array([b2[0] / sb - mb / sb - ma / sa], dtype=np.float32)
    return [(hidden_w, hidden_b), (out_w, out_b)]


def fit_head(
    xtr: np.ndarray, ytr: np.ndarray, xva: np.ndarray, yva: np.ndarray, seed: int, wide: bool = False
) -> tuple[str, list[tuple[np.ndarray, np.ndarray]], dict[str, float]]:
    """The best of a few LR/MLP heads by validation AP, as dense layers on the raw pooled vector
    (standardisation folded into the first layer). Returns (kind, layers, val APs of candidates).

    `wide` adds a finer C grid, MLPs with a stronger penalty and MLPs trained on positives oversampled to
    balance (the early-stopped MLPs see ~5 % positives), and the sum of the best LR's and the best MLP's
    standardised logits: for rare categories whose validation AP is low, where one family alone is noisy."""
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    ztr, zva = (xtr - mu) / sd, (xva - mu) / sd
    cands: dict[str, Any] = {}
    for c in (0.003, 0.01, 0.03, 0.1, 1.0) if wide else (0.01, 0.1, 1.0):
        cands[f"logreg_C{c}"] = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(ztr, ytr)
    for h in (64, 256):
        cands[f"mlp_{h}"] = MLPClassifier(
            hidden_layer_sizes=(h,),
            alpha=1e-2,
            early_stopping=True,
            validation_fraction=0.15,
            max_iter=300,
            random_state=seed,
        ).fit(ztr, ytr)
    if wide:
        rng = np.random.default_rng(seed)
        pos, neg = np.flatnonzero(ytr == 1), np.flatnonzero(ytr == 0)
        idx = np.concatenate([neg, rng.choice(pos, size=len(neg), replace=True)])
        with warnings.catch_warnings():  # 60 epochs on the balanced rows, stopped on purpose before convergence
            warnings.simplefilter("ignore", ConvergenceWarning)
            for h in (64, 256):
                cands[f"mlp_{h}_a0.1"] = MLPClassifier(
                    hidden_layer_sizes=(h,),
                    alpha=0.1,
                    early_stopping=True,
                    validation_fraction=0.15,
                    max_iter=300,
                    random_state=seed,
                ).fit(ztr, ytr)
                for a in (1e-2, 1e-1):
                    cands[f"mlp_{h}_a{a}_balanced"] = MLPClassifier(
                        hidden_layer_sizes=(h,), alpha=a, max_iter=60, random_state=seed
                    ).fit(ztr[idx], ytr[idx])
    layers = {k: _as_layers(m, mu, sd) for k, m in cands.items()}
    aps = {k: float(average_precision_score(yva, m.predict_proba(zva)[:, 1])) for k, m in cands.items()}
    if wide:
        best_lr = max((k for k in aps if k.startswith("logreg")), key=lambda k: aps[k])
        best_mlp = max((k for k in aps if k.startswith("mlp")), key=lambda k: aps[k])
        name = f"ensemble_{best_lr}+{best_mlp}"
        layers[name] = _ensemble_layers(layers[best_lr], layers[best_mlp], xtr)
        aps[name] = float(average_precision_score(yva, head_logit(layers[name], xva)))
    kind = max(aps, key=lambda k: aps[k])
    return kind, layers[kind], aps


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
    out = {NATURAL: ~np.isin(src, ["seed", *EVAL_ONLY]), "seed_set": src == "seed"}
    for name, sources in NAMED_TESTS[cat].items():
        out[name] = np.isin(src, sources)
    return {k: v for k, v in out.items() if v.any()}


# The adopted recipe per category (chosen on validation, 3 seeds, 2026-12-04; the card's notes give the figures
# of every candidate, and harassment's hybrid gained only +0.006 validation AP, under the 0.01 rule):
# `input` "first" reads the first 64-token window's pooled vector, "windows" the mean over the text's
# windows (`models.text.heads.window_ids`); `hybrid` blends the embedding head's logit with the lexical
# model's (`models.text.lexical`), the weight chosen on validation AP.
RECIPE: dict[str, dict[str, Any]] = {
    "violence": {"input": "first", "hybrid": True},
    "self_harm": {"input": "first", "hybrid": True},
    "sexual": {"input": "first", "hybrid": True},
    "harassment": {"input": "first", "hybrid": False},
    "scam": {"input": "first", "hybrid": True},
}
BLEND_GRID = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
LEXICAL_C = (1.0, 10.0, 100.0)


def fit_lexical(xtr: Any, ytr: np.ndarray, xva: Any, yva: np.ndarray) -> tuple[LogisticRegression, float]:
    """The lexical model of one category: class-balanced logistic regression, C by validation AP."""
    best: tuple[float, LogisticRegression, float] | None = None
    for c in LEXICAL_C:
        m = LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(xtr, ytr)
        ap = float(average_precision_score(yva, m.decision_function(xva)))
        if best is None or ap > best[0]:
            best = (ap, m, c)
    assert best is not None
    return best[1], best[2]


def fit_blend(head_val: np.ndarray, lex_val: np.ndarray, yva: np.ndarray) -> tuple[Blend, dict[str, float]]:
    """The blend weight by validation AP (ties: the larger head weight), standardised on validation."""
    blends = {
        float(w): Blend(
            float(w),
            float(head_val.mean()),
            float(head_val.std() + 1e-9),
            float(lex_val.mean()),
            float(lex_val.std() + 1e-9),
        )
        for w in BLEND_GRID
    }
    aps = {w: float(average_precision_score(yva, b(head_val, lex_val))) for w, b in blends.items()}
    w = max(sorted(aps, reverse=True), key=lambda k: aps[k])
    return blends[w], aps


def category_inputs(
    parts: dict[str, Part], emb: dict[str, np.ndarray], win: dict[str, np.ndarray] | None, cat: str
) -> dict[str, np.ndarray]:
    """Per split, the pooled vectors this category's head reads (first window or the windows' mean)."""
    table = win if RECIPE[cat]["input"] == "windows" else emb
    assert table is not None, f"{cat} reads windows: pass their embeddings"
    return {s: np.stack([table[model_text(t)] for t in parts[s].raw]) for s in parts}


def run_seed(
    data: dict[str, dict[str, Part]], emb: dict[str, np.ndarray], seed: int, win: dict[str, np.ndarray] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One seed: fit heads (hybrid where the recipe says) + baselines for every category, score the test
    splits. Returns (metrics, heads for the artifact)."""
    metrics: dict[str, Any] = {}
    heads: dict[str, Any] = {
        "layers": {},
        "platt": {},
        "thresholds": {},
        "kind": {},
        "blends": {},
        "inputs": {},
        "lexical": {},
    }
    t0 = time.perf_counter()
    train_texts = sorted({model_text(t) for parts in data.values() for t in parts["train"].raw})
    vocab, idf = fit_vocab(train_texts)
    feats = LexicalFeatures(vocab, idf)
    heads["vocab"], heads["idf"] = vocab, idf
    vocab_seconds = time.perf_counter() - t0
    for cat in HEAD_CATEGORIES:
        t0 = time.perf_counter()
        parts = data[cat]
        texts = {s: [model_text(t) for t in parts[s].raw] for s in parts}
        x = category_inputs(parts, emb, win, cat)
        y = {s: parts[s].labels for s in parts}
        kind, layers, aps = fit_head(x["train"], y["train"], x["val"], y["val"], seed, wide=cat in WIDE_SEARCH)
        z = {s: head_logit(layers, x[s]) for s in parts}
        extra: dict[str, Any] = {"input": RECIPE[cat]["input"]}
        if RECIPE[cat]["hybrid"]:
            fx = {s: feats.transform(texts[s]) for s in parts}
            lex, c = fit_lexical(fx["train"], y["train"], fx["val"], y["val"])
            # the weights as stored (float16), so the figures here are the served model's
            coef = lex.coef_[0].astype(np.float16).astype(np.float32)
            lz = {s: np.asarray(fx[s] @ coef, dtype=np.float32) + np.float32(lex.intercept_[0]) for s in parts}
            blend, blend_aps = fit_blend(z["val"], lz["val"], y["val"])
            z = {s: blend(z[s], lz[s]) for s in parts}
            heads["blends"][cat] = blend
            heads["lexical"][cat] = (coef, float(lex.intercept_[0]))
            extra.update(
                {
                    "lexical_C": c,
                    "blend_w": blend.w,
                    "blend_val_ap": blend_aps,
                    "lexical_val_ap": float(average_precision_score(y["val"], lz["val"])),
                    "head_only_val_ap": aps[kind],
                }
            )
        a, b = _platt(z["val"], y["val"])
        p = {s: _sig(a * z[s] + b) for s in parts}
        t = _best_threshold(p["val"], y["val"])
        vec, base, bt = fit_baseline(texts["train"], y["train"], texts["val"], y["val"])
        bp = {s: base.predict_proba(vec.transform(texts[s]))[:, 1] for s in ("val", "test")}
        subsets = _subsets(parts["test"], cat)
        metrics[cat] = {
            "head": kind,
            "val_ap_candidates": aps,
            "threshold": t,
            "baseline_threshold": bt,
            **extra,
            "train": {"n": int(len(y["train"])), "positives": int(y["train"].sum())},
            "val": {"head": _scores(y["val"], p["val"], t), "baseline": _scores(y["val"], bp["val"], bt)},
            "test": {
                name: {
                    "head": _scores(y["test"][m], p["test"][m], t),
                    "baseline": _scores(y["test"][m], bp["test"][m], bt),
                }
                for name, m in subsets.items()
            },
            "seconds": time.perf_counter() - t0 + vocab_seconds / len(HEAD_CATEGORIES),
        }
        heads["layers"][cat] = layers
        heads["platt"][cat] = (a, b)
        heads["thresholds"][cat] = t
        heads["kind"][cat] = kind
        heads["inputs"][cat] = RECIPE[cat]["input"]
    return metrics, heads


def lexical_of(heads: dict[str, Any]) -> Lexical | None:
    """run_seed's lexical models as the artifact stores them (one featuriser, a column per hybrid category)."""
    cats = tuple(c for c in HEAD_CATEGORIES if c in heads["lexical"])
    if not cats:
        return None
    weight = np.stack([heads["lexical"][c][0] for c in cats], axis=1)
    bias = np.array([heads["lexical"][c][1] for c in cats], dtype=np.float32)
    return Lexical(cats, heads["vocab"], heads["idf"], weight, bias)


def served_heads(heads: dict[str, Any], config: dict[str, Any] | None = None) -> TaxonomyHeads:
    """run_seed's heads as the TaxonomyHeads serving loads (for scoring them exactly as served)."""
    return TaxonomyHeads(
        tuple(HEAD_CATEGORIES),
        heads["layers"],
        heads["platt"],
        heads["thresholds"],
        config or {},
        heads["inputs"],
        heads["blends"],
        lexical_of(heads),
    )


def heads_probs(heads: TaxonomyHeads, raw: list[str], cache_dir: Path, artifact: Path) -> np.ndarray:
    """(n, categories) served probabilities of raw texts, from cached fp32 embeddings (and windows)."""
    texts = [model_text(t) for t in raw]
    pooled = embed_texts(texts, cache_dir, artifact, verbose=False)
    windows = embed_window_means(texts, cache_dir, artifact, verbose=False) if heads.needs_windows else None
    return heads.probs(pooled, texts, windows)


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
            row["f1_gain"] = _mean_sd(
                [
                    per_seed[s][cat]["test"][name]["head"]["f1"] - per_seed[s][cat]["test"][name]["baseline"]["f1"]
                    for s in per_seed
                ]
            )
            row["n"], row["positives"] = m["test"][name]["head"]["n"], m["test"][name]["head"]["positives"]
            out[cat][name] = row
    return out


def embeddings_for(texts: set[str], cache_dir: Path, artifact: Path) -> dict[str, np.ndarray]:
    ordered = sorted(texts)
    return dict(zip(ordered, embed_texts(ordered, cache_dir, artifact), strict=True))


def window_embeddings_for(texts: set[str], cache_dir: Path, artifact: Path) -> dict[str, np.ndarray]:
    """Model text -> mean pooled vector over its windows (`embed_window_means`)."""
    ordered = sorted(texts)
    return dict(zip(ordered, embed_window_means(ordered, cache_dir, artifact), strict=True))


def toxigen_flag_rate(
    root: Path, cache_dir: Path, artifact: Path, heads: Any, max_examples: int | None = None
) -> dict[str, Any]:
    """Share of ToxiGen *neutral* lines on which any taxonomy head reaches its threshold."""
    from training.text.data import toxigen

    tg = toxigen(root)
    neutral = [model_text(t) for t, lab in zip(tg.raw, tg.extra["label"], strict=True) if lab == 0]
    if max_examples is not None and len(neutral) > max_examples:
        neutral = random.Random(13).sample(neutral, max_examples)
    probs = heads_probs(served_heads(heads), neutral, cache_dir, artifact)
    per = {}
    anyflag = np.zeros(len(neutral), dtype=bool)
    for j, cat in enumerate(HEAD_CATEGORIES):
        f = probs[:, j] >= heads["thresholds"][cat]
        per[cat] = float(f.mean())
        anyflag |= f
    return {"n": len(neutral), "any_head": float(anyflag.mean()), "per_category": per}


def cap_part(part: Part, n: int | None, seed: int) -> Part:
    """At most `n` rows of a category split, seeded (tiny runs). Keeps the positive share, but at
    least min(positives, max(2, n // 5)) positives, so a head still has something to learn and a
    threshold something to find."""
    if n is None or len(part.y) <= n:
        return part
    rng = random.Random(seed)
    pos = [i for i, v in enumerate(part.y) if v == 1]
    neg = [i for i, v in enumerate(part.y) if v != 1]
    k_pos = min(len(pos), max(round(n * len(pos) / len(part.y)), min(len(pos), max(2, n // 5))))
    keep = sorted(rng.sample(pos, k_pos) + rng.sample(neg, min(len(neg), n - k_pos)))
    return Part([part.raw[i] for i in keep], [part.y[i] for i in keep], [part.source[i] for i in keep])


def add_review_labels(data: dict[str, dict[str, Part]], labels: LabelSet) -> dict[str, int]:
    """Append the labels' training slice to every category's train split (source "review_labels");
    returns the rows added per category (after hard-example repeats)."""
    added = {}
    for cat in HEAD_CATEGORIES:
        texts, ys = head_rows(labels, cat)
        data[cat]["train"].add(texts, ys, LABELS_SOURCE)
        added[cat] = len(texts)
    return added


# What a heads-only candidate copies from the encoder artifact it is fitted on: everything but the
# heads' own files, so the candidate is a complete artifact (the format of models/text/artifact).
HEAD_FILES = (HEADS_CONFIG, HEADS_WEIGHTS, LEXICAL_WEIGHTS, METRICS_FILE)


def copy_encoder(src: Path, dst: Path) -> None:
    """The encoder artifact's files (not its heads) into `dst`, which must not hold an artifact yet."""
    if (dst / CONFIG_FILE).exists():
        raise FileExistsError(f"{dst} already holds an artifact; pick a new --out")
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and f.name not in HEAD_FILES:
            shutil.copy2(f, dst / f.name)


def train_heads(
    root: Path,
    artifact: Path = DEFAULT_ARTIFACT_DIR,
    cache_dir: Path = DEFAULT_CACHE,
    seeds: list[int] | None = None,
    labels: LabelSet | None = None,
    max_examples: int | None = None,
    out: Path | None = None,
) -> dict[str, Any]:
    """Fit every seed, write seed 0's heads + heads_metrics.json + the card section into `out`
    (default: `artifact` itself; another folder gets a copy of the encoder first, so the heads'
    artifact is complete). `labels`: review labels whose training slice joins every category's
    training rows; `max_examples`: cap every category split (tiny runs)."""
    seeds = seeds or [0, 1, 2]
    out = out or artifact
    if out.resolve() != artifact.resolve():
        copy_encoder(artifact, out)
    cfg = ArtifactConfig.from_file(out / CONFIG_FILE)
    loaded = load_sources(root)
    datas = {s: load_category_data(root, seed=s, loaded=loaded) for s in seeds}
    if max_examples is not None:
        datas = {
            s: {c: {sp: cap_part(p, max_examples, s) for sp, p in parts.items()} for c, parts in d.items()}
            for s, d in datas.items()
        }
    added: dict[str, int] = {}
    if labels is not None:
        for d in datas.values():
            added = add_review_labels(d, labels)
    texts = {model_text(t) for d in datas.values() for c in d.values() for p in c.values() for t in p.raw}
    emb = embeddings_for(texts, cache_dir, out)
    win_texts = {
        model_text(t)
        for d in datas.values()
        for c, parts in d.items()
        if RECIPE[c]["input"] == "windows"
        for p in parts.values()
        for t in p.raw
    }
    win = window_embeddings_for(win_texts, cache_dir, out) if win_texts else None
    per_seed, heads0 = {}, None
    for s in seeds:
        m, h = run_seed(datas[s], emb, s, win)
        per_seed[s] = m
        if s == seeds[0]:
            heads0 = h
        print(
            f"seed {s}: "
            + ", ".join(
                f"{c} F1 {m[c]['test'][NATURAL]['head']['f1']:.3f} "
                f"(baseline {m[c]['test'][NATURAL]['baseline']['f1']:.3f})"
                for c in m
            ),
            flush=True,
        )
    assert heads0 is not None
    version = f"heads-s{seeds[0]}-{time.strftime('%Y%m%dT%H%M%S')}"
    if labels is not None:
        version += f"-labels-{labels.version[:8]}"
    meta: dict[str, Any] = {
        "encoder_version": cfg.version,
        "encoder_weights_sha256": cfg.weights.get("sha256"),
        "version": version,
        "kind": heads0["kind"],
        "seed": seeds[0],
        "trained_on": "pooled embedding of the served encoder (fp32), model texts truncated at "
        f"{cfg.max_length} tokens",
        "data": "training/text/heads_data.py; seed set training/text/seed/seed_v1.csv",
    }
    if max_examples is not None:
        meta["max_examples"] = max_examples
    if labels is not None:
        meta["review_labels"] = {**labels.summary(), "head_rows": added}
    save_heads(
        out,
        list(HEAD_CATEGORIES),
        heads0["layers"],
        heads0["platt"],
        heads0["thresholds"],
        meta,
        heads0["inputs"],
        heads0["blends"],
        lexical_of(heads0),
    )
    metrics = {
        "encoder_version": cfg.version,
        "heads_version": version,
        "seeds": seeds,
        "summary": summarise(per_seed),
        "per_seed": {str(k): v for k, v in per_seed.items()},
        "toxigen_neutral": toxigen_flag_rate(root, cache_dir, out, heads0, max_examples),
    }
    if labels is not None:
        metrics["review_labels"] = meta["review_labels"]
    if max_examples is not None:
        metrics["max_examples"] = max_examples
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", "utf-8")
    return metrics


def eval_heads(root: Path, artifact: Path = DEFAULT_ARTIFACT_DIR, cache_dir: Path = DEFAULT_CACHE) -> dict[str, Any]:
    """Re-score the committed heads (heads.json) on the test splits; returns per-category test F1, each
    row with the seed-0 TF-IDF baseline's figures beside it (`baseline`).

    Also writes `category_predictions.npz` (every served category's test scores, ours and the
    baseline's, with labels; `training.text.heads_curves`), which the per-category PR-curve notebook
    reads, and prints the eight categories' figures from it.
    """
    from models.text.heads import load_heads
    from training.text.heads_curves import print_table, scores, write_category_predictions

    cfg = ArtifactConfig.from_file(artifact / CONFIG_FILE)
    heads = load_heads(artifact, cfg.version, cfg.weights.get("sha256"))
    if heads is None:
        raise FileNotFoundError(f"no {HEADS_CONFIG} in {artifact}; run `heron train text-heads`")
    seed = int(heads.config.get("seed", 0))
    data = load_category_data(root, seed=seed)
    out: dict[str, Any] = {}
    for j, cat in enumerate(heads.categories):
        part = data[cat]["test"]
        p = heads_probs(heads, part.raw, cache_dir, artifact)[:, j]
        out[cat] = {
            name: _scores(part.labels[m], p[m], heads.thresholds[cat]) for name, m in _subsets(part, cat).items()
        }
    preds = write_category_predictions(root, artifact, cache_dir)
    for cat, rows in out.items():
        for name, row in rows.items():
            r = scores(preds[cat], name)
            row["baseline"] = {k.removeprefix("baseline_"): v for k, v in r.items() if k.startswith("baseline_")}
    print_table(preds)
    return out


# -- served-model checks: probes and ToxiGen through the real serving path ---------------------------
PROBES_CSV = Path(__file__).resolve().parent / "probes" / "violence_probes_v1.csv"


def served_probe_report(artifact: Path = DEFAULT_ARTIFACT_DIR, quantize: str = "auto") -> dict[str, Any]:
    """Run the served scorer (the path `heron serve` picks) on the violence probe set and on ToxiGen's
    neutral lines; error rates at the heads' thresholds and under the platform default policy."""
    import csv

    from pipeline.ensemble import combine
    from pipeline.policy import PLATFORM_DEFAULT, decide
    from pipeline.scorers.base import ScoringItem
    from pipeline.scorers.text import TextScorer
    from pipeline.types import Action, Message

    with PROBES_CSV.open(newline="", encoding="utf-8") as f:
        probes = list(csv.DictReader(f))
    scorer = TextScorer(quantize=quantize, cache_size=0, artifact_dir=artifact).load()
    try:
        assert scorer.engine is not None
        thr = dict(zip(scorer.engine.served_labels, scorer.engine.served_thresholds.tolist(), strict=True))

        def run(texts: list[str]) -> list[tuple[dict[str, float], Action]]:
            items = [ScoringItem(message=Message(text=t), tenant_id="eval") for t in texts]
            out = []
            for sig in scorer.score(items):
                action, _ = decide(combine([sig]), Message(text="x"), PLATFORM_DEFAULT)
                out.append((sig.scores, action))
            return out

        res = run([p["text"] for p in probes])
        rows = []
        for p, (scores, action) in zip(probes, res, strict=True):
            rows.append(
                {
                    "text": p["text"],
                    "kind": p["kind"],
                    "threat": int(p["threat"]),
                    "violence": scores.get("violence"),
                    "action": action.value,
                    "violence_hit": bool(scores.get("violence", 0.0) >= thr.get("violence", 0.5)),
                }
            )
        benign = [r for r in rows if not r["threat"]]
        threats = [r for r in rows if r["threat"]]
        report: dict[str, Any] = {
            "quantize": scorer.quantize,
            "n_benign": len(benign),
            "n_threats": len(threats),
            "violence_threshold": thr.get("violence"),
            "benign_violence_rate": sum(r["violence_hit"] for r in benign) / len(benign),
            "benign_not_allowed_rate": sum(r["action"] != "allow" for r in benign) / len(benign),
            "threat_miss_rate": sum(not r["violence_hit"] for r in threats) / len(threats),
            "threat_allowed_rate": sum(r["action"] == "allow" for r in threats) / len(threats),
            "rows": rows,
        }
        from training.text.data import resolve_data_dir, toxigen

        tg = toxigen(resolve_data_dir())
        neutral = [t for t, lab in zip(tg.raw, tg.extra["label"], strict=True) if lab == 0]
        tres = run(neutral)
        head_hit = [any(s.get(c, 0.0) >= thr[c] for c in HEAD_CATEGORIES if c in s) for s, _ in tres]
        report["toxigen_neutral"] = {
            "n": len(neutral),
            "any_new_head_at_threshold": sum(head_hit) / len(neutral),
            "any_category_at_threshold": sum(any(v >= thr[c] for c, v in s.items()) for s, _ in tres) / len(neutral),
            "not_allowed_platform_default": sum(a.value != "allow" for _, a in tres) / len(neutral),
        }
        return report
    finally:
        scorer.close()


# -- model card section -----------------------------------------------------------------------------
CARD_START, CARD_END = "<!-- taxonomy-heads:start -->", "<!-- taxonomy-heads:end -->"
CARD_NOTES: dict[str, dict[str, str]] = {
    "violence": {
        "data": "EDOS category 1 (threats, plans to harm, incitement; Gab/Reddit, all aimed at women) train/dev, "
        "Toxic Spans Threat posts (>= 2 annotators = 1, 0 annotators = 0: toxic non-threats; the "
        "single-annotator band left out; our seeded split), every training negative of both (not a sample), "
        "the team seed set (threats and requests to hurt vs figurative/technical/news look-alikes), SMS and "
        "Reddit-control cross negatives. Test: EDOS test + Toxic Spans test. Head: the wide search "
        "(`fit_head(wide=True)`), which picked the sum of an LR's and a class-balanced MLP's standardised "
        "logits for every seed.",
        "failures": "EDOS positives all target women, so threats at other targets lean on Toxic Spans and the seed "
        "set; news reports of violence and violent fiction can score high; indirect or coded threats "
        '("it would be a shame if something happened") are weak. Tried (2026-12-03, '
        "3 seeds, validation decides; rule: mean validation AP +0.01 with validation F1 not lower, then "
        "the highest AP; test measured for the adopted one): subsampled negatives with the original "
        "search (the refit): validation AP 0.291, F1 0.336, natural test F1 0.283 ± 0.014; (1) the wide "
        "search alone: 0.304 / 0.353; (2) every training negative alone: 0.332 / 0.411; (3) both: "
        "0.374 / 0.405, adopted, natural test F1 0.295 ± 0.013 (baseline on the same rows 0.319 ± "
        "0.009, up from 0.271), probe-set threats missed 9 of 20 instead of 12, benign probes flagged "
        '3 of 30 instead of 2. The issue\'s "I am going to find where you live and stab you" now reaches '
        "the head's threshold (0.49 on the served int8 path alone, 0.49-0.61 with batch-mates, 0.65 in "
        "fp32) but not the platform default's violence flag line (0.5), and it also scores self_harm "
        "~0.5, so alone it routes to `support`."
        " Tried (2026-12-04, 3 seeds, validation decides; rule written before any test figure: adopt the "
        "candidate with the highest mean validation AP if it beats the current recipe's by >= 0.01 with "
        "mean validation F1 not lower; test figures looked at only after the decision; the adopted recipe "
        "is `RECIPE` in `training/text/heads.py`): "
        "the head alone (the 2026-12-03 recipe): validation AP 0.373, F1 0.403; the lexical model alone: "
        "0.308 / 0.395; hybrid (head weight 0.7-0.8): 0.405 / 0.436, adopted (natural test F1 of that "
        "experiment 0.350 ± 0.019 against the head alone's 0.314 ± 0.013 and the baseline's 0.319 ± 0.009: "
        "+3 points, short of the +5 target). More seed-set variety was not tried in this round. Costs of "
        "the hybrid on the served path (measured after adoption, not a selection criterion): the issue's "
        "threat above scores violence 0.19-0.21 on int8 (0.29 fp32), under the head's threshold "
        "(0.268), and routes to `allow` (self_harm 0.28); probe-set threats missed 10 of 20 (was 9), "
        "`allow`ed under the platform default 13 of 20 (was 10), benign probes over the threshold 4 of "
        "30 (was 3). The lexical side learnt EDOS/Toxic Spans wording, which is not how a chat threat "
        "reads; chat-style threats in the seed set are the next lever.",
    },
    "self_harm": {
        "data": "Reddit Mental Health (Low et al. 2020): r/suicidewatch = 1, 25 other subreddits (15 mental-health "
        "hard negatives, 10 controls) = 0, EDAnonymous left out; seed set (crisis statements vs distress "
        'without intent, recovery, supporting others, figurative "kill me now"). C-SSRS Reddit posts '
        "(Ideation/Behavior/Attempt users = 1, Supportive = 0) are evaluation only: user-level labels on "
        "concept-tagged text; training on them cut r/suicidewatch test F1 from 0.575 to 0.41 (seed 0).",
        "failures": "The embedding head reads a post's first 64 tokens, the lexical side the whole post; short chat "
        "crisis messages come mostly from the seed set. Depression/BPD posts that mention suicide are "
        "labelled 0 in RMHD (label noise), "
        "so recall on passive ideation is limited. Routed to `support`, never to punishment. Far from "
        "the F1 >= 0.80 target. Tried (2026-12-03, 3 seeds, validation decides, same rule as violence): "
        "the refit: validation AP 0.432, F1 0.476; (1) the wide head search: AP 0.461, F1 0.475 (its "
        "test F1 0.567 ± 0.025 against the refit's 0.557 ± 0.009: within seed noise); (2) every RMHD "
        "training negative (4,550 instead of 2,000): 0.445 / 0.452; (3) both: 0.468 / 0.474. None raised "
        "validation F1, so the original recipe stays. "
        "Tried (2026-12-04, 3 seeds, validation decides; rule written before any test figure: adopt the "
        "candidate with the highest mean validation AP if it beats the current recipe's by >= 0.01 with "
        "mean validation F1 not lower; test figures looked at only after the decision; the adopted recipe "
        "is `RECIPE` in `training/text/heads.py`): "
        "the head alone: validation AP 0.432, F1 0.476; the lexical model alone (whole post): 0.473 / "
        "0.472; hybrid (head weight 0.3-0.5): 0.516 / 0.492, adopted (test F1 of that experiment 0.591 ± "
        "0.021). Reading the whole post as 64-token windows (up to 8, `models.text.heads.window_ids`; "
        "serving support kept: `inputs: windows` in heads.json) was rejected: a head on the mean of the "
        "windows' pooled vectors 0.407 / 0.433, its hybrid 0.498 / 0.489 (test 0.448 ± 0.028 and 0.534 ± "
        "0.012); on seed 0 five other poolings were all below the first window's AP 0.462 (first + mean "
        "concatenated 0.434, max-pooled embeddings 0.379, max / mean of the first-window head's logits "
        "over windows 0.388 / 0.380, a head trained on every window with the post's label, max / mean "
        "0.384 / 0.406): the opening of a r/suicidewatch post carries most of what separates it from the "
        "hard-negative subreddits, and later windows read like them. Still far from F1 0.80: RMHD labels a "
        "subreddit, not a post, and its depression/BPD/anxiety posts often mention suicide.",
    },
    "sexual": {
        "data": "ConvAbuse sexual harassment (strict majority of annotators; users abusing chatbots), the seed set "
        "(solicitation and explicit descriptions in plain words vs sexual-health and relationship talk), "
        "SMS and Reddit-control cross negatives. EDOS vector 2.3 was not used (mixes dehumanising insults).",
        "failures": "Few natural positives (96 train); explicit content that is not aimed at the reader (stories) "
        "and slang/emoji-coded solicitation are weak; sexual-health questions with explicit anatomy "
        "words can score high."
        " Tried (2026-12-04, 3 seeds, validation decides; rule written before any test figure: adopt the "
        "candidate with the highest mean validation AP if it beats the current recipe's by >= 0.01 with "
        "mean validation F1 not lower; test figures looked at only after the decision; the adopted recipe "
        "is `RECIPE` in `training/text/heads.py`): "
        "the head alone: validation AP 0.780, F1 0.766; the lexical model alone: 0.718 / 0.660; hybrid "
        "(head weight 0.4-0.5): 0.836 / 0.823, adopted (test F1 of that experiment 0.707 ± 0.036 against "
        "0.622 ± 0.014).",
    },
    "harassment": {
        "data": "ConvAbuse abusive (strict majority), OLID subtask C IND (insult/threat at an individual; our val "
        "slice of the training file; test = OLID test = TweetEval public benchmark, never trained on), "
        "seed set (targeted insults/bullying vs banter/self-deprecation), cross negatives.",
        "failures": "ConvAbuse abuse targets chatbots, OLID IND includes insults at politicians: person-to-person "
        "bullying in a chat is only partly represented; profanity between friends can read as "
        "harassment."
        " Tried (2026-12-04, 3 seeds, validation decides; rule written before any test figure: adopt the "
        "candidate with the highest mean validation AP if it beats the current recipe's by >= 0.01 with "
        "mean validation F1 not lower; test figures looked at only after the decision; the adopted recipe "
        "is `RECIPE` in `training/text/heads.py`): "
        "the head alone: validation AP 0.776, F1 0.728; the lexical model alone: 0.697 / 0.650; hybrid "
        "(head weight 0.8): 0.782 / 0.733: +0.006 AP, under the rule's 0.01, so the head alone stays "
        "(hybrid's test F1 0.618 ± 0.009 against the head's 0.611 ± 0.013, measured after the decision). "
        "The refit of the same recipe (2026-12-04, one torch thread) is not bit-identical to the "
        "2026-12-03 fit: seed 0's early-stopped MLP reached validation AP 0.772 instead of 0.779 and "
        "its threshold fell from 0.388 to 0.339, which raised the ToxiGen neutral lines over the "
        "harassment threshold from 0.030 to 0.111 (fp32): the threshold sits on a steep part of the "
        "score distribution of identity-group sentences.",
    },
    "scam": {
        "data": "Mendeley SMS smishing (deduplicated against UCI SMS: `derived_dedup_vs_uci.csv`; smishing = 1, ham "
        "and promotional spam = 0; our seeded 70/15/15 split), seed set (delivery/bank/giveaway lures vs "
        "real notifications and people warning about scams), chat/Reddit cross negatives.",
        "failures": "Links are canonicalised to one `url` token, so the head judges the wording, not the domain "
        "(the link scorer judges domains); 2010s UK/Singapore SMS; crypto/investment and romance "
        "scams in chat are mostly seed-set only."
        " Tried (2026-12-04, 3 seeds, validation decides; rule written before any test figure: adopt the "
        "candidate with the highest mean validation AP if it beats the current recipe's by >= 0.01 with "
        "mean validation F1 not lower; test figures looked at only after the decision; the adopted recipe "
        "is `RECIPE` in `training/text/heads.py`): "
        "the head alone: validation AP 0.889, F1 0.832; the lexical model alone (n-grams + "
        "link/phone/money/shortener/urgency cues): 0.960 / 0.902; hybrid (head weight 0-0.3): 0.961 / "
        "0.908, adopted. The same-rows TF-IDF baseline is level on validation (AP 0.953, F1 0.914) and on "
        "test (that experiment: hybrid 0.840 ± 0.018, head alone 0.847 ± 0.022, baseline 0.866 ± 0.011): "
        "the dedup Mendeley split is small (141 test rows), its smishing/promotional-spam boundary is "
        "noisy, and 0.95 is not reached.",
    },
}


def _fmt(row: dict[str, Any], key: str) -> str:
    v = row.get(key)
    if not v:
        return "n/a"
    return f"{v['mean']:.3f} ± {v['sd']:.3f}"


# The encoder's own categories (toxicity, hate, spam), for the per-category part of the card. Their
# training is described in the card's first half; this says the same per category, with the baseline.
ENCODER_NOTES: dict[str, dict[str, str]] = {
    "toxicity": {
        "data": "Served by the `olid_offensive` head: OLID (TweetEval offensive) train rows and the templated "
        "identity-neutral sentences; the shared encoder below it is fine-tuned on every set of the label map "
        "(OLID, HatEval, Davidson, HateXplain, Jigsaw samples, SMS/YouTube spam). Test: OLID test "
        "(TweetEval public benchmark, never trained or tuned on).",
        "how": "Fine-tuned MiniLM-L6 encoder, one sigmoid output per head (sections above); temperature-scaled and "
        "thresholded on validation.",
        "failures": "Dialect bias inherited from the labels (African-American English over-labelled offensive); "
        "profanity between friends and quoted slurs read as offensive; novel obfuscation (masking with "
        "`*`) is not covered; ToxiGen neutral lines naming some groups are flagged (Bias probes).",
    },
    "hate": {
        "data": "Served by the shared `hate` head: every training row that annotates hate (HatEval, Davidson, "
        "HateXplain, Jigsaw samples, identity-neutral sentences). Test: HatEval test (TweetEval public "
        "benchmark).",
        "how": "The same encoder and recipe as toxicity; the shared head generalises to HatEval's shifted test set "
        "better than HatEval's own head (Results).",
        "failures": "Implicit hate without slurs is mostly missed (ToxiGen hate recall, Bias probes); HatEval's "
        "targets are only immigrants and women; identity terms alone can flag (ToxiGen neutral lines).",
    },
    "spam": {
        "data": "Served by the shared `spam` head: SMS Spam Collection and YouTube Spam Collection train rows "
        "(dedup splits), with every abuse-set row as a spam negative. Test: both sets' test splits.",
        "how": "The same encoder and recipe; the scam head (below) covers smishing and fraud lures separately.",
        "failures": "2000s-era SMS and YouTube comments only: chat spam (crypto, Discord invites, link floods) "
        "transfers weakly; links are canonicalised to one `url` token, so domains are the link scorer's "
        "job.",
    },
}


def per_category_section(artifact: Path) -> list[str]:
    """Markdown lines: one table for all eight categories (seed 0, test, ours beside the baseline, from
    `category_predictions.npz`) and a data / how built / metrics / failures block for each encoder
    category. Empty when `heron eval text-heads` has not written the predictions yet."""
    from training.text.heads_curves import CURVES_FILE, load_predictions, scores

    if not (artifact / CURVES_FILE).is_file():
        return []
    preds, _ = load_predictions(artifact / CURVES_FILE)
    enc_path = artifact / "metrics.json"
    enc = json.loads(enc_path.read_text("utf-8")).get("summary", {}) if enc_path.is_file() else {}

    def ms(key: str, scale: float = 1.0, digits: int = 3) -> str:
        v = enc.get(key)
        return f"{v['mean'] * scale:.{digits}f} ± {v['sd'] * scale:.{digits}f}" if v else "n/a"

    def ap(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    lines = [
        "## Every served category: test figures beside the baseline\n",
        "_Generated by `training/text/heads.py` from `category_predictions.npz` (written by `heron eval "
        "text-heads`); precision–recall curves of every row below: `notebooks/text_categories.ipynb`._\n",
        "Seed 0 (the committed encoder, fp32 forward, and the committed heads), each model at its own operating "
        "threshold chosen on validation. Baselines: TF-IDF (word 1–2 grams) + logistic regression trained on "
        "the same rows as the model output it is compared with (toxicity: OLID + identity-neutral rows, which "
        "`olid_offensive` learnt from; hate and spam: every row that annotates the shared head; the five heads: "
        "their own training rows). For toxicity and hate the benchmark figure (macro-F1, threshold chosen on "
        "that benchmark's validation split) is given too; the 3-seed means are in Results and below.\n",
        "| category | test set | n (pos) | ours F1 | baseline F1 | gain (points) | ours AP | baseline AP | "
        "macro-F1 ours / baseline |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cat, p in preds.items():
        for sub in p.subsets:
            r = scores(p, sub)
            macro = ""
            if "ours_macro" in p.extra_thresholds:
                y, t = p.label.astype(int), p.extra_thresholds
                macro = (
                    f"{100 * f1_score(y, p.ours >= t['ours_macro'], average='macro'):.1f} / "
                    f"{100 * f1_score(y, p.baseline >= t['baseline_macro'], average='macro'):.1f}"
                )
            lines.append(
                f"| {cat} | {sub} | {r['n']} ({r['positives']}) | {r['ours_f1']:.3f} | "
                f"{r['baseline_f1']:.3f} | {100 * (r['ours_f1'] - r['baseline_f1']):+.1f} | "
                f"{ap(r['ours_ap'])} | {ap(r['baseline_ap'])} | {macro} |"
            )
    lines.append("")
    headline = {
        "toxicity": f"OLID test macro-F1 {ms('olid_macro_f1', digits=1)} over 3 seeds "
        f"({ms('olid_served_macro_f1_serving_threshold', digits=1)} at the serving threshold)",
        "hate": f"HatEval test macro-F1 {ms('hateval_served_macro_f1', digits=1)} over 3 seeds (serving head; "
        f"{ms('hateval_served_macro_f1_serving_threshold', digits=1)} at the serving threshold)",
        "spam": f"SMS spam F1 {ms('sms_spam_f1')}, YouTube spam F1 {ms('youtube_spam_f1')} over 3 seeds",
    }
    for cat, notes in ENCODER_NOTES.items():
        if cat not in preds:
            continue
        p = preds[cat]
        r = scores(p)
        lines.append(f"### {cat}\n")
        lines.append(f"**Data.** {notes['data']}\n")
        lines.append(f"**How built.** {notes['how']} Operating threshold {p.threshold:.2f}.\n")
        lines.append(
            f"**Metrics beside the baseline.** {headline[cat]}. Seed 0 on {p.headline}: F1 "
            f"{r['ours_f1']:.3f} against the TF-IDF baseline's {r['baseline_f1']:.3f}, AP {ap(r['ours_ap'])} "
            f"against {ap(r['baseline_ap'])} (table above).\n"
        )
        lines.append(f"**Known failure modes.** {notes['failures']}\n")
    return lines


def _validation_lines(metrics: dict[str, Any], cat: str) -> list[str]:
    """The validation figures the recipe was chosen on (mean ± sd over seeds): the served score against
    the baseline, and for a hybrid head the embedding head alone, the lexical model alone and the blend."""
    runs = [metrics["per_seed"][str(s)][cat] for s in metrics["seeds"]]

    def ms(vals: list[float]) -> str:
        v = _mean_sd(vals)
        return f"{v['mean']:.3f} ± {v['sd']:.3f}"

    text = (
        f"**Validation** (what the recipe was chosen on; {len(runs)} seeds): served score F1 "
        f"{ms([r['val']['head']['f1'] for r in runs])}, AP {ms([r['val']['head']['ap'] for r in runs])}; "
        f"baseline F1 {ms([r['val']['baseline']['f1'] for r in runs])}, AP "
        f"{ms([r['val']['baseline']['ap'] for r in runs])}."
    )
    if all("blend_w" in r for r in runs):
        text += (
            f" Hybrid: embedding head alone AP {ms([r['head_only_val_ap'] for r in runs])}, lexical model "
            f"alone AP {ms([r['lexical_val_ap'] for r in runs])}, blend AP "
            f"{ms([max(r['blend_val_ap'].values()) for r in runs])} at head weights "
            f"{[r['blend_w'] for r in runs]} (lexical C {[r['lexical_C'] for r in runs]})."
        )
    return [text + "\n"]


def card_section(metrics: dict[str, Any], per_category: list[str] | None = None) -> str:
    """Markdown for MODEL_CARD.md: every category beside its baseline (`per_category`), then one section
    per taxonomy head."""
    s = metrics["summary"]
    per0 = metrics["per_seed"][str(metrics["seeds"][0])]
    lines = [
        CARD_START,
        *(per_category or []),
        "## Taxonomy heads: violence, self_harm, sexual, harassment, scam\n",
        "_Generated by `training/text/heads.py` (`heron train text-heads`, `heron eval text-heads`) from "
        "`heads_metrics.json`; do not edit by hand._\n",
        "How they are built: each category is a small head (logistic regression or a one-hidden-layer MLP, "
        "chosen by validation average precision) over the served encoder's pooled embedding, so one encoder "
        "forward serves all eight categories. The backbone (all-MiniLM-L6-v2) was trained for sentence "
        "similarity, which is what lets a head learn a rare category (threats, plain-language sexual content) "
        "from a few hundred natural and seeded examples. Hybrid heads (every category since 2026-12-04, "
        "chosen on validation: `RECIPE` in `training/text/heads.py`): the head's logit is blended with a "
        "lexical model's, a class-balanced logistic regression over hashed character 2–5-gram and word "
        "1–2-gram TF-IDF of the whole model text (the spam-text model's features, `models.text.lexical`, "
        "vocabulary = hashed n-grams in at least 2 training texts of the run) plus 0/1 structural cues (link, "
        "shortener, bare domain, phone number, short code, money amount, urgency, prize and account words), "
        "fitted on the same training rows; C and the blend weight (of the two logits, each standardised on "
        "validation) by validation AP. One featurisation per message serves every category "
        "(`heads_lexical.safetensors`, weights float16 at rest). Probabilities are Platt-scaled on validation; "
        "each threshold is the validation-F1-best point. Nothing is fitted or chosen on a test split. The "
        "encoder and its toxicity/hate/spam heads are unchanged (heads live in `heads.safetensors`, "
        "`heads_lexical.safetensors` + `heads.json`, which records the encoder's version and weights sha256; "
        "heads fitted on other weights are refused at load).\n",
        "Baseline: TF-IDF (word 1–2 grams) + logistic regression on exactly the same rows, C and threshold "
        "chosen on the same validation split, in the same run. Seeds "
        f"{metrics['seeds']} change the sampled cross negatives and the MLP initialisation; figures are "
        "mean ± sd over seeds. The seed set (`training/text/seed/`, written by the team, split by template) "
        "is in training and validation; its test rows are reported separately and are not in the "
        "`natural` row.\n",
        "Subsampling (embedding budget on 2 shared CPU cores): every positive is kept; training negatives are "
        "sampled (EDOS 1,500, OLID 2,500, RMHD 2,000, Toxic Spans 800), except that violence trains on every "
        "EDOS and Toxic Spans training negative (`heads_data.violence_rest`); OLID validation negatives "
        "1,200; test splits are whole.\n",
        "Encoder: the heads are fitted on the pooled embedding of the encoder as committed (weights int8 at "
        "rest, fp32 forward). The first heads (2026-12-03) had been fitted before the encoder's weights were "
        "stored int8 under the same version string; on the int8 encoder those unchanged heads scored violence "
        "natural test F1 0.287 instead of 0.271 and C-SSRS 0.256 instead of 0.276 (seed 0), the other "
        "categories identically. They were refitted here; the refit's validation AP was level or higher for "
        "four categories and 0.002 lower for sexual (seed 0). On 2026-12-04 the encoder was retrained "
        "(`minilm6-multilabel-s0-20261204`, normaliser 3) and the adopted hybrid recipe refitted on it: the "
        "tables and the probe set below are that refit's; the figures inside each category's 'Tried' notes "
        "(and the served-path costs quoted there) were measured on the previous encoder.\n",
    ]
    for cat, rows in s.items():
        m0 = per0[cat]
        lines.append(f"### {cat}\n")
        lines.append(
            f"**Data.** {CARD_NOTES[cat]['data']} Training rows {m0['train']['n']:,} "
            f"({m0['train']['positives']:,} positive).\n"
        )
        lines.append(f"**Head (seed {metrics['seeds'][0]}).** `{m0['head']}`, threshold {m0['threshold']:.3f}.\n")
        lines.extend(_validation_lines(metrics, cat))
        lines.append("| test set | n (pos) | head F1 | baseline F1 | F1 gain | head AP | baseline AP |")
        lines.append("|---|---|---|---|---|---|---|")
        for name, row in rows.items():
            lines.append(
                f"| {name} | {row['n']} ({row['positives']}) | {_fmt(row, 'head_f1')} | "
                f"{_fmt(row, 'baseline_f1')} | {_fmt(row, 'f1_gain')} | {_fmt(row, 'head_ap')} | "
                f"{_fmt(row, 'baseline_ap')} |"
            )
        lines.append(f"\n**Known failure modes.** {CARD_NOTES[cat]['failures']}\n")
    tg = metrics.get("toxigen_neutral")
    if tg:
        lines.append(
            f"ToxiGen neutral lines (n = {tg['n']}) on which any taxonomy head reaches its threshold "
            f"(seed {metrics['seeds'][0]}, fp32 embeddings): {tg['any_head']:.3f} "
            f"({', '.join(f'{k} {v:.3f}' for k, v in tg['per_category'].items())}).\n"
        )
    pr = metrics.get("served_probes")
    if pr:
        lines.append("### Probe set: figurative/technical language vs genuine threats\n")
        lines.append(
            f"`training/text/probes/violence_probes_v1.csv` (hand-written, not used in training): "
            f"{pr['n_benign']} figurative, technical, sport, fiction and everyday uses of violent words, "
            f"{pr['n_threats']} genuine threats and requests to hurt someone. Served path "
            f"(`{pr['quantize']}`), violence threshold {pr['violence_threshold']:.3f}:\n"
        )
        lines.append("| measure | rate |")
        lines.append("|---|---|")
        lines.append(f"| benign probes scored violence ≥ threshold | {pr['benign_violence_rate']:.3f} |")
        lines.append(
            f"| benign probes not `allow` under the platform default policy | {pr['benign_not_allowed_rate']:.3f} |"
        )
        lines.append(f"| threats with violence below threshold (missed) | {pr['threat_miss_rate']:.3f} |")
        lines.append(f"| threats `allow`ed under the platform default policy | {pr['threat_allowed_rate']:.3f} |")
        t = pr["toxigen_neutral"]
        lines.append(
            f"\nToxiGen neutral lines through the served scorer (n = {t['n']}): any taxonomy head at its "
            f"threshold {t['any_new_head_at_threshold']:.3f}; any of the eight categories at its threshold "
            f"{t['any_category_at_threshold']:.3f}; not `allow` under the platform default "
            f"{t['not_allowed_platform_default']:.3f}.\n"
        )
        missed = [r["text"] for r in pr["rows"] if r["threat"] and not r["violence_hit"]]
        wrong = [r["text"] for r in pr["rows"] if not r["threat"] and r["violence_hit"]]
        if wrong:
            lines.append("Benign probes scored as violence: " + "; ".join(f"“{x}”" for x in wrong) + ".\n")
        if missed:
            lines.append("Threats missed: " + "; ".join(f"“{x}”" for x in missed) + ".\n")
    lines.append(
        "Reproduce: `heron train text-heads` (fits 3 seeds + baselines, writes the heads, "
        "`heads_metrics.json` and this section), `heron eval text-heads` (re-scores the committed heads "
        "and runs the probe set through the served path).\n"
    )
    lines.append(CARD_END)
    return "\n".join(lines) + "\n"


def write_card_section(artifact: Path) -> Path:
    """Put (or replace) the taxonomy section in MODEL_CARD.md, leaving the rest of the card alone.

    A card written while the heads were fitted on an earlier encoder (after `heron train text`,
    before the refit) says so in its encoder part; once they match, that part is written again from
    the encoder's metrics.json (`training.text.card.write_model_card`, which then calls back here).
    """
    from training.text.card import CARD_FILE, HEADS_PENDING, write_model_card

    path = artifact / CARD_FILE
    text = path.read_text("utf-8") if path.is_file() else ""
    encoder_metrics = artifact / "metrics.json"
    if HEADS_PENDING in text and encoder_metrics.is_file():
        config = json.loads((artifact / "config.json").read_text("utf-8"))
        heads = json.loads((artifact / "heads.json").read_text("utf-8"))
        if heads.get("encoder_version") == config.get("version"):
            return write_model_card(artifact, json.loads(encoder_metrics.read_text("utf-8")))
    metrics = json.loads((artifact / METRICS_FILE).read_text("utf-8"))
    section = card_section(metrics, per_category_section(artifact))
    if CARD_START in text and CARD_END in text:
        head, rest = text.split(CARD_START, 1)
        text = head + section + rest.split(CARD_END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, "utf-8")
    return path
