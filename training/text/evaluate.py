"""Score the held-out test sets for every trained seed; write metrics.json, predictions and the card.

Nothing here tunes anything: thresholds and temperatures come from the artifact (fitted on
validation splits in `training.text.train`). Benchmark thresholds (`benchmark_thresholds`) were
chosen on each benchmark's own validation split, as every TweetEval entry picks its operating
point on validation; the out-of-domain probes (ETHOS, ToxiGen) use the serving thresholds.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    matthews_corrcoef,
    precision_score,
    recall_score,
    roc_auc_score,
)
from tqdm.auto import tqdm

from models.text.canonical import model_text
from models.text.engine import TextEngine
from models.text.model import ACT_MAX_FILE, CONFIG_FILE, DEFAULT_ARTIFACT_DIR, ArtifactConfig
from models.text.quantize import FASTEST_FIRST, MAX_SERVED_LOSS, QUANTIZE_MODES
from training.text.data import LABELS, Split, load_sets
from training.text.evasion import evasion_suite
from training.text.evasion_heldout import HELDOUT_SEED, HELDOUT_WORD_PROB, heldout_suite
from training.text.evasion_heldout import TRICKS as HELDOUT_TRICKS
from training.text.train import davidson_predict, seed_dir, write_act_max

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "eval_predictions.npz"
EVASION_SEED = 13
EVASION_WORD_PROB = 0.4
SPAM = LABELS.index("spam")  # label column of the spam sets' y

# Published figures the card and the report print beside ours (TweetEval leaderboard; Davidson et al.).
BASELINES = {
    "olid_macro_f1": {"RoBERTa-base": 79.5, "Twitter-RoBERTa": 80.5, "TimeLMs": 82.2},
    "hateval_macro_f1": {"RoBERTa-base": 46.6, "BERTweet": 56.4},
    "davidson_hate_f1": {"Davidson et al. 2017 (LR)": 0.51},
}
TARGETS = {"olid_macro_f1": 82.2, "hateval_macro_f1": 56.4, "davidson_hate_f1": 0.55}


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error (equal-width bins): how far 'a score of 0.8' is from 80%."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.mean() * abs(p[sel].mean() - y[sel].mean())
    return float(total)


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    return float(f1_score(y, pred, average="macro", zero_division=0))


def _probs(engine: TextEngine, texts: list[str], desc: str) -> np.ndarray:
    chunks = [texts[i : i + 512] for i in range(0, len(texts), 512)]
    out = [engine.probs(c) for c in tqdm(chunks, desc=desc, leave=False, mininterval=2.0)]
    return np.concatenate(out) if out else np.zeros((0, len(engine.labels)), dtype=np.float32)


def seed_metrics(
    engine: TextEngine,
    tests: dict[str, Split],
    evasion_texts: list[str] | None,
    seed: int,
    heldout_texts: list[str] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Every test metric of one seed's model, plus the probabilities (all outputs) they came from.

    Benchmarks are scored twice: with the data set's own head (the headline, `<set>_...`) and with
    the head that serves the category in production (`<set>_served_...`). OLID test is also scored
    rewritten by the evasion suite (`_evasion_`) and by the held-out rewriter (`_heldout_`,
    `training.text.evasion_heldout`, whose tricks training never sees), at the clean thresholds.
    """
    cfg = engine.config
    thr = cfg.thresholds
    bench = cfg.benchmark_thresholds
    col = {o: j for j, o in enumerate(engine.outputs)}
    served = {lbl: col[cfg.serving_heads[lbl]] for lbl in engine.labels}
    probs = {k: _probs(engine, s.texts, f"seed {seed} test {k}") for k, s in tests.items()}
    m: dict[str, Any] = {}
    if "olid" in tests:
        y = tests["olid"].extra["label"]
        if evasion_texts is not None:
            probs["olid_evasion"] = _probs(engine, evasion_texts, f"seed {seed} evasion")
        if heldout_texts is not None:
            probs["olid_heldout"] = _probs(engine, heldout_texts, f"seed {seed} held-out evasion")
        for key in ("olid", "olid_served"):
            b = bench.get(key, {"head": cfg.serving_heads["toxicity"], "t": thr["toxicity"]})
            p = probs["olid"][:, col[b["head"]]]
            m[f"{key}_macro_f1"] = 100 * macro_f1(y, (p >= b["t"]).astype(int))
            m[f"{key}_roc_auc"] = float(roc_auc_score(y, p))
            m[f"{key}_ece"] = ece(p, y)
            if evasion_texts is not None:
                pe = probs["olid_evasion"][:, col[b["head"]]]
                m[f"{key}_evasion_macro_f1"] = 100 * macro_f1(y, (pe >= b["t"]).astype(int))
                m[f"{key}_evasion_drop"] = m[f"{key}_macro_f1"] - m[f"{key}_evasion_macro_f1"]
            if heldout_texts is not None:
                ph = probs["olid_heldout"][:, col[b["head"]]]
                m[f"{key}_heldout_macro_f1"] = 100 * macro_f1(y, (ph >= b["t"]).astype(int))
                m[f"{key}_heldout_drop"] = m[f"{key}_macro_f1"] - m[f"{key}_heldout_macro_f1"]
        p = probs["olid"][:, served["toxicity"]]
        m["olid_served_macro_f1_serving_threshold"] = 100 * macro_f1(y, (p >= thr["toxicity"]).astype(int))
    if "hateval" in tests:
        y = tests["hateval"].extra["label"]
        for key in ("hateval", "hateval_served"):
            b = bench.get(key, {"head": cfg.serving_heads["hate"], "t": thr["hate"]})
            p = probs["hateval"][:, col[b["head"]]]
            m[f"{key}_macro_f1"] = 100 * macro_f1(y, (p >= b["t"]).astype(int))
            m[f"{key}_roc_auc"] = float(roc_auc_score(y, p))
        p = probs["hateval"][:, served["hate"]]
        m["hateval_served_macro_f1_serving_threshold"] = 100 * macro_f1(y, (p >= thr["hate"]).astype(int))
    if "davidson" in tests:
        cls = tests["davidson"].extra["class"]
        for key in ("davidson", "davidson_served"):
            b = bench.get(
                key,
                {
                    "abusive_head": cfg.serving_heads["toxicity"],
                    "hate_head": cfg.serving_heads["hate"],
                    "t_abusive": thr["toxicity"],
                    "t_hate": thr["hate"],
                },
            )
            pd_ = probs["davidson"]
            pred = davidson_predict(
                pd_[:, col[b["abusive_head"]]], pd_[:, col[b["hate_head"]]], b["t_abusive"], b["t_hate"]
            )
            per_class = f1_score(cls, pred, labels=[0, 1, 2], average=None, zero_division=0)
            m[f"{key}_hate_f1"] = float(per_class[0])
            m[f"{key}_offensive_f1"] = float(per_class[1])
            m[f"{key}_neither_f1"] = float(per_class[2])
            m[f"{key}_macro_f1"] = float(np.mean(per_class))
    if "ethos" in tests:
        y, p = tests["ethos"].extra["label"], probs["ethos"][:, served["hate"]]
        m["ethos_macro_f1"] = 100 * macro_f1(y, (p >= thr["hate"]).astype(int))
        m["ethos_hate_f1"] = float(f1_score(y, (p >= thr["hate"]).astype(int), zero_division=0))
        m["ethos_roc_auc"] = float(roc_auc_score(y, p))
        m["ethos_toxicity_roc_auc"] = float(roc_auc_score(y, probs["ethos"][:, served["toxicity"]]))
    if "toxigen" in tests:
        y, p = tests["toxigen"].extra["label"], probs["toxigen"]
        flagged = (p[:, served["hate"]] >= thr["hate"]) | (p[:, served["toxicity"]] >= thr["toxicity"])
        neutral = y == 0
        m["toxigen_neutral_fpr"] = float(flagged[neutral].mean())
        m["toxigen_neutral_fpr_hate"] = float((p[neutral, served["hate"]] >= thr["hate"]).mean())
        m["toxigen_hate_recall"] = float(flagged[~neutral].mean())
        m["toxigen_n_neutral"] = int(neutral.sum())
        groups = tests["toxigen"].extra["group"]
        m["toxigen_neutral_fpr_by_group"] = {
            str(g): float(flagged[neutral & (groups == g)].mean()) for g in sorted(set(groups[neutral]))
        }
    for name in ("sms_spam", "youtube_spam"):
        if name in tests:
            y = tests[name].y[:, SPAM].astype(int)
            ps = probs[name][:, served["spam"]]
            pred = (ps >= thr["spam"]).astype(int)
            m[f"{name}_f1"] = float(f1_score(y, pred, zero_division=0))
            m[f"{name}_precision"] = float(precision_score(y, pred, zero_division=0))
            m[f"{name}_recall"] = float(recall_score(y, pred, zero_division=0))
            m[f"{name}_mcc"] = float(matthews_corrcoef(y, pred))
            m[f"{name}_average_precision"] = float(average_precision_score(y, ps))
    return m, probs


QUANT_ORDERS = 3  # random arrival orders averaged per quantisation measurement


def _arrival_order_probs(eng: TextEngine, texts: list[str], column: int, seed: int) -> np.ndarray:
    """Probabilities as the micro-batcher would produce them: random arrival windows of 32, each sorted.

    Dynamic int8 quantises activations per batch, so a text's score depends on its batch-mates; one
    fixed batching is a single draw (measured: ±0.3 macro-F1 on OLID val from the order alone).
    """
    seqs = eng.encode_batch(texts)
    order = np.random.default_rng(seed).permutation(len(seqs))
    out = np.zeros(len(seqs), dtype=np.float32)
    for start in range(0, len(order), 32):
        idx = sorted(order[start : start + 32], key=lambda k: len(seqs[k]))
        ids, mask = eng.pad([seqs[k] for k in idx])
        out[idx] = eng.calibrate(eng.forward_padded(ids, mask))[:, column]
    return out


def _path_quality(artifact: Path, mode: str, val: dict[str, Split], tests: dict[str, Split]) -> dict[str, Any]:
    """One model's macro-F1 on OLID/HatEval val and test through forward path `mode`, the path at its
    own validation-fitted threshold (mean over arrival orders).

    Why its own threshold: a quantised path shifts probabilities a little, so the threshold fitted on
    the fp32 model is not that path's operating point; serving it would be tuned on validation
    like any other choice (issue 22). Per order: the threshold maximising validation macro-F1 on
    that order's validation scores, then validation and test macro-F1 at it. The test figure at the
    fp32 model's benchmark threshold is kept beside it for comparison with older reports.
    """
    from training.text.train import best_binary_threshold

    eng = TextEngine(artifact, quantize=mode, taxonomy_heads=False)
    bench = eng.config.benchmark_thresholds
    col = {o: j for j, o in enumerate(eng.outputs)}
    heads, thr = eng.config.serving_heads, eng.config.thresholds
    orders = 1 if mode == "fp32" else QUANT_ORDERS  # fp32 does not depend on batch-mates
    r: dict[str, Any] = {"orders": orders}
    for name, label in (("olid", "toxicity"), ("hateval", "hate")):
        if name not in val:
            continue
        b = bench.get(name, {"head": heads[label], "t": thr[label]})
        yv = val[name].extra["label"]
        val_f1s, test_f1s, fixed_f1s, ts = [], [], [], []
        for k in range(orders):
            pv = _arrival_order_probs(eng, val[name].texts, col[b["head"]], k)
            t, f = best_binary_threshold(pv, yv)
            ts.append(t)
            val_f1s.append(100 * f)
            if name in tests:
                yt = tests[name].extra["label"]
                pt = _arrival_order_probs(eng, tests[name].texts, col[b["head"]], k)
                test_f1s.append(100 * macro_f1(yt, (pt >= t).astype(int)))
                fixed_f1s.append(100 * macro_f1(yt, (pt >= b["t"]).astype(int)))
        r[f"{name}_threshold"] = float(np.median(ts))
        r[f"{name}_thresholds_per_order"] = ts
        r[f"{name}_val_macro_f1"] = float(np.mean(val_f1s))
        r[f"{name}_val_macro_f1_sd_over_orders"] = float(np.std(val_f1s))
        if test_f1s:
            r[f"{name}_test_macro_f1"] = float(np.mean(test_f1s))
            r[f"{name}_test_macro_f1_sd_over_orders"] = float(np.std(test_f1s))
            r[f"{name}_test_macro_f1_at_fp32_benchmark_threshold"] = float(np.mean(fixed_f1s))
    return r


QUANT_PATHS = QUANTIZE_MODES
SERVED_SEED = "0"  # the committed artifact (`training.text.train.seed_dir`)


def before_int8_reference(artifact: Path) -> dict[str, Any] | None:
    """OLID/HatEval validation macro-F1 of the served model before its weights were stored int8, as
    recorded at training (`val_summary_before_int8`) or at conversion (`weights.before_int8`)."""
    cfg = ArtifactConfig.from_file(artifact / CONFIG_FILE)
    before = cfg.weights.get("before_int8")
    if before:
        return dict(before)
    summary = cfg.training.get("report", {}).get("val_summary_before_int8")
    if summary and "olid_macro_f1" in summary:
        return {"olid_val_macro_f1": 100 * summary["olid_macro_f1"], "source": "training (val_summary_before_int8)"}
    return None


def choose_serving_path(rows: dict[str, dict[str, Any]], reference: dict[str, Any] | None) -> dict[str, Any]:
    """The served seed's path: the fastest in FASTEST_FIRST whose OLID-val macro-F1 (own threshold, mean
    over arrival orders) is at most MAX_SERVED_LOSS below the reference (the model before int8 at rest
    when known, else the same weights in fp32); fp32 when none is."""
    base = rows.get("fp32", {}).get("olid_val_macro_f1")
    ref = (reference or {}).get("olid_val_macro_f1")
    ref_name = "before int8 at rest" if ref is not None else "fp32 forward of the stored weights"
    ref = ref if ref is not None else base
    losses = {m: ref - r["olid_val_macro_f1"] for m, r in rows.items() if ref is not None and "olid_val_macro_f1" in r}
    chosen = "fp32"
    for mode in FASTEST_FIRST:
        if mode in losses and losses[mode] <= MAX_SERVED_LOSS:
            chosen = mode
            break
    return {
        "quantize": chosen,
        "seed": int(SERVED_SEED),
        "reference": ref_name,
        "reference_olid_val_macro_f1": ref,
        "olid_val_loss": losses,
        "max_loss": MAX_SERVED_LOSS,
        "thresholds": {
            m: {k: r[k] for k in ("olid_threshold", "hateval_threshold") if k in r}
            for m, r in rows.items()
            if "error" not in r
        },
        "rule": f"fastest path whose OLID-val macro-F1 for the served seed, at the path's own "
        f"validation-fitted threshold, is at most {MAX_SERVED_LOSS} below the model before int8 at rest",
    }


def quantization_report(artifacts: dict[str, Path], val: dict[str, Split], tests: dict[str, Split]) -> dict[str, Any]:
    """Quality of each forward path on OLID/HatEval validation (decides) and test (reported), every path
    at its own validation-fitted threshold; chooses the served seed's path and records it in that
    seed's config.json (`serving`), where `models.text.quantize.serving_quantize` reads it.

    Why per served model: one model's int8 loss moves by ±0.3 from seed to seed (measured: -0.51,
    +0.01 and -0.38 for the three seeds of one recipe), so a mean over seeds can pass a path that
    loses more on the model that actually serves. The other seeds' figures are kept for reference.
    """
    per_seed: dict[str, dict[str, Any]] = {}  # seed -> path -> figures
    for seed, artifact in artifacts.items():
        rows: dict[str, Any] = {}
        for mode in QUANT_PATHS:
            try:
                rows[mode] = _path_quality(artifact, mode, val, tests)
            except Exception as exc:  # noqa: BLE001 - a missing onnxruntime must not sink the evaluation
                rows[mode] = {"error": f"{type(exc).__name__}: {exc}"}
        base = rows.get("fp32", {})
        for r in rows.values():
            for key in ("olid_val", "olid_test", "hateval_val", "hateval_test"):
                if f"{key}_macro_f1" in r and f"{key}_macro_f1" in base:
                    r[f"{key}_delta"] = r[f"{key}_macro_f1"] - base[f"{key}_macro_f1"]
        per_seed[seed] = rows
    report: dict[str, Any] = {"per_seed": per_seed, "orders": QUANT_ORDERS, "seeds": len(artifacts)}
    if SERVED_SEED in artifacts:
        artifact = artifacts[SERVED_SEED]
        reference = before_int8_reference(artifact)
        serving = choose_serving_path(per_seed[SERVED_SEED], reference)
        if reference:
            serving["before_int8"] = reference
        report["paths"] = per_seed[SERVED_SEED]
        report["chosen"] = serving["quantize"]
        report["rule"] = serving["rule"]
        report["serving"] = serving
        cfg_path = artifact / CONFIG_FILE
        cfg = ArtifactConfig.from_file(cfg_path)
        cfg.serving = serving
        cfg_path.write_text(cfg.to_json(), "utf-8")
    return report


def _mean_sd(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": len(arr)}


def evaluate_all(
    data_dir: Path,
    artifact: Path = DEFAULT_ARTIFACT_DIR,
    runs_dir: Path | None = None,
    seeds: list[int] | None = None,
    max_examples: int | None = None,
    quantized: bool = True,
    replace_partial: bool = False,
) -> dict[str, Any]:
    """Evaluate every available seed, aggregate mean ± sd, save metrics/predictions, write the card.

    When fewer seeds have a model here than the artifact's metrics.json was computed over, the
    results go to `runs_dir` instead, unless `replace_partial`.
    """
    from training.text.card import write_model_card

    started = time.time()
    artifact = Path(artifact)
    runs_dir = Path(runs_dir) if runs_dir else artifact / "_runs"
    seeds = seeds or [0, 1, 2]
    tests = load_sets(data_dir, "test", max_examples)
    val = load_sets(data_dir, "val", max_examples)
    evasion_raw = evasion_suite(tests["olid"].raw, seed=EVASION_SEED, word_prob=EVASION_WORD_PROB)
    evasion_texts = [model_text(t) for t in evasion_raw]
    heldout_texts = [model_text(t) for t in heldout_suite(tests["olid"].raw)]
    per_seed: dict[str, Any] = {}
    preds: dict[str, np.ndarray] = {}
    for seed in seeds:
        d = seed_dir(artifact, runs_dir, seed)
        if not (d / CONFIG_FILE).is_file():
            print(f"seed {seed}: no model at {d}, skipped", flush=True)
            continue
        # The taxonomy heads are not scored here (`heron eval text-heads` does), and heads fitted on an
        # earlier encoder must not stop the encoder's own evaluation after a retrain.
        engine = TextEngine(d, quantize="fp32", taxonomy_heads=False)
        m, probs = seed_metrics(engine, tests, evasion_texts, seed, heldout_texts)
        m["val_report"] = ArtifactConfig.from_file(d / CONFIG_FILE).training.get("report", {})
        per_seed[str(seed)] = m
        for k, v in probs.items():
            preds[f"seed{seed}/test/{k}"] = v.astype(np.float16)
        if seed == 0:
            for k, s in val.items():
                preds[f"seed0/val/{k}"] = engine.probs(s.texts).astype(np.float16)
        print(f"seed {seed}: " + ", ".join(f"{k}={v:.4f}" for k, v in m.items() if isinstance(v, float)), flush=True)
    if "0" not in per_seed:
        raise FileNotFoundError(f"no seed-0 artifact at {artifact}")
    keys = [k for k, v in per_seed["0"].items() if isinstance(v, float | int) and not isinstance(v, bool)]
    summary = {k: _mean_sd([per_seed[s][k] for s in per_seed if k in per_seed[s]]) for k in keys}
    cfg = ArtifactConfig.from_file(artifact / CONFIG_FILE)
    metrics: dict[str, Any] = {
        "version": cfg.version,
        "seeds": [int(s) for s in per_seed],
        "summary": summary,
        "per_seed": per_seed,
        "baselines": BASELINES,
        "targets": TARGETS,
        "evasion": {
            "seed": EVASION_SEED,
            "word_prob": EVASION_WORD_PROB,
            "techniques": ["leet", "homoglyph", "zero_width", "spaced", "punctuation", "repeat"],
            "heldout": {
                "generator": "training/text/evasion_heldout.py",
                "seed": HELDOUT_SEED,
                "word_prob": HELDOUT_WORD_PROB,
                "tricks": list(HELDOUT_TRICKS),
            },
        },
        "thresholds": cfg.thresholds,
        "benchmark_thresholds": cfg.benchmark_thresholds,
        "outputs": cfg.outputs,
        "serving_heads": cfg.serving_heads,
        "temperature": cfg.temperature,
        "max_examples": max_examples,
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
        },
    }
    if quantized:
        seed_dirs = {k: seed_dir(artifact, runs_dir, int(k)) for k in per_seed}
        for d in seed_dirs.values():
            if not (d / ACT_MAX_FILE).is_file():  # artifacts trained before the SmoothQuant path
                print(f"measuring feed-forward activation maxima on training texts for {d}", flush=True)
                write_act_max(d, data_dir, max_examples)
        metrics["quantization"] = quantization_report(seed_dirs, val, tests)
    metrics["eval_seconds"] = time.time() - started
    print_summary(metrics)
    kept = _kept_seeds(artifact, [int(s) for s in per_seed])
    if kept and not replace_partial:
        # Fewer seeds than the artifact's metrics.json covers (a clean checkout ships seed 0 only):
        # that file also decides the serving path (`quantization.chosen`, over every seed), so a
        # one-seed run must not quietly rewrite it, the card and the served default.
        runs_dir.mkdir(parents=True, exist_ok=True)
        out = runs_dir / f"metrics.seeds-{'-'.join(per_seed)}.json"
        out.write_text(json.dumps(metrics, indent=2) + "\n", "utf-8")
        print(
            f"\nseeds {kept} were evaluated before but have no model here (train them with `heron train text "
            + " ".join(f"--seeds {k}" for k in kept)
            + "`); the artifact's metrics.json, predictions and card "
            f"were left as they are. This run's figures: {out} (--replace-partial writes them to the artifact).",
            flush=True,
        )
        return metrics
    (artifact / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", "utf-8")
    np.savez_compressed(artifact / PREDICTIONS_FILE, **preds)
    write_model_card(artifact, metrics)
    return metrics


def _kept_seeds(artifact: Path, evaluated: list[int]) -> list[int]:
    """Seeds in the artifact's current metrics.json that this evaluation lacks."""
    path = artifact / METRICS_FILE
    if not path.is_file():
        return []
    try:
        before = json.loads(path.read_text("utf-8")).get("seeds", [])
    except (ValueError, OSError):
        return []
    return sorted(int(s) for s in before if int(s) not in evaluated)


def print_summary(metrics: dict[str, Any]) -> None:
    s = metrics["summary"]

    def fmt(k: str, scale: float = 1.0, digits: int = 2) -> str:
        if k not in s:
            return "n/a"
        return f"{s[k]['mean'] * scale:.{digits}f} ± {s[k]['sd'] * scale:.{digits}f} (n={s[k]['n']})"

    print("\n== text model evaluation ==")
    print("(data set's own head / head serving the category)")
    print(
        f"OLID test macro-F1        {fmt('olid_macro_f1')} / {fmt('olid_served_macro_f1')}   "
        f"(target ≥ {TARGETS['olid_macro_f1']})"
    )
    print(
        f"OLID evasion macro-F1     {fmt('olid_evasion_macro_f1')} / {fmt('olid_served_evasion_macro_f1')}   "
        f"drop {fmt('olid_evasion_drop')} / {fmt('olid_served_evasion_drop')}"
    )
    print(
        f"OLID held-out evasion     {fmt('olid_heldout_macro_f1')} / {fmt('olid_served_heldout_macro_f1')}   "
        f"drop {fmt('olid_heldout_drop')} / {fmt('olid_served_heldout_drop')}"
    )
    print(
        f"HatEval test macro-F1     {fmt('hateval_macro_f1')} / {fmt('hateval_served_macro_f1')}   "
        f"(target ≥ {TARGETS['hateval_macro_f1']})"
    )
    print(
        f"Davidson hate-class F1    {fmt('davidson_hate_f1', digits=3)} / {fmt('davidson_served_hate_f1', digits=3)}"
        f"   (target ≥ {TARGETS['davidson_hate_f1']})"
    )
    print(
        f"Davidson macro-F1         {fmt('davidson_macro_f1', digits=3)} / {fmt('davidson_served_macro_f1', digits=3)}"
    )
    print(f"ETHOS (OOD) macro-F1      {fmt('ethos_macro_f1')}   AUC {fmt('ethos_roc_auc', digits=3)}")
    print(f"ToxiGen neutral FPR       {fmt('toxigen_neutral_fpr', digits=3)}")
    print(f"SMS spam F1               {fmt('sms_spam_f1', digits=3)}")
    print(f"YouTube spam F1           {fmt('youtube_spam_f1', digits=3)}")
    q = metrics.get("quantization")
    if q:
        for mode, r in q.get("paths", {}).items():
            print(
                f"  {mode:11s} "
                + ", ".join(f"{k}={v:.2f}" for k, v in r.items() if isinstance(v, float) and "sd_over" not in k)
            )
        print(f"  serving default: {q['chosen']} ({q['rule']})")
