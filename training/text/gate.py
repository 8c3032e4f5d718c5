"""`heron eval candidate`: a candidate text model against the serving one, per category, and the gate.

Both models are run the way they would serve (the forward path each artifact records, unless
`quantize` says otherwise) over the same texts:

- **test**: the fixed test splits, never trained or tuned on. toxicity, hate and spam pool every
  test set that annotates them (`training.text.data.TEST_SOURCES` through `LABEL_MAP`);
  violence, self_harm, sexual, harassment and scam use the taxonomy heads' test splits
  (`training.text.heads_data`).
- **review_labels**: the held-out slice of the review labels (`training.text.labels_data`), the
  rows no candidate trained with these rules has seen.

Per category and slice: F1, precision and recall at each model's own serving threshold (what a
user of that model gets), average precision, the F1 delta and a paired bootstrap 95% interval of
it. The gate (`pipeline.models_registry.gate_verdict`): every category with at least
`min_positives` positives and `min_rows` rows in a slice is gated, and fails when the
candidate's F1 is below serving's by more than the tolerance (default 0.02, absolute; per
category with `tolerances`); a category serving scores and the candidate does not fails too.
Rows too thin to gate on are reported with the reason. Overturned (hard-example) rows of the
held-out slice also get the share each model still flags, for information.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score

from models.text.canonical import model_text
from models.text.engine import TextEngine
from models.text.quantize import serving_quantize
from pipeline.models_registry import REPORT_SCHEMA, artifact_digest, describe_artifact, gate_verdict
from training.text.data import LABELS, load_sets
from training.text.heads_data import HEAD_CATEGORIES, load_category_data
from training.text.labels_data import LabelSet, holdout_targets

BOOTSTRAP = 1000


@dataclass
class Side:
    """One model in the comparison: its name (registry version or folder) and folder."""

    name: str
    path: Path


def test_sets(root: Path, max_examples: int | None = None) -> dict[str, tuple[list[str], np.ndarray, list[str]]]:
    """category -> (model texts, 0/1 labels, source per row) over the fixed test splits."""
    from training.text.heads import cap_part

    out: dict[str, tuple[list[str], np.ndarray, list[str]]] = {}
    tests = load_sets(root, "test", max_examples)
    for j, cat in enumerate(LABELS):
        texts: list[str] = []
        ys: list[np.ndarray] = []
        src: list[str] = []
        for name, split in tests.items():
            keep = ~np.isnan(split.y[:, j])
            texts.extend(t for t, k in zip(split.texts, keep, strict=True) if k)
            ys.append(split.y[keep, j].astype(np.int64))
            src.extend([name] * int(keep.sum()))
        out[cat] = (texts, np.concatenate(ys), src)
    heads = load_category_data(root, seed=0)
    for cat in HEAD_CATEGORIES:
        part = cap_part(heads[cat]["test"], max_examples, 0)
        out[cat] = ([model_text(t) for t in part.raw], part.labels, list(part.source))
    return out


def label_sets(labels: LabelSet) -> tuple[dict[str, tuple[list[str], np.ndarray, list[str]]], list[str]]:
    """category -> (model texts, 0/1, row ids) over the held-out slice, and the overturned rows' texts."""
    per: dict[str, tuple[list[str], list[int], list[str]]] = {}
    hard: list[str] = []
    for row, targets in holdout_targets(labels):
        for cat, v in targets.items():
            t, y, ids = per.setdefault(cat, ([], [], []))
            t.append(row.model_text)
            y.append(v)
            ids.append(row.id)
        if row.hard_example:
            hard.append(row.model_text)
    return {c: (t, np.asarray(y, dtype=np.int64), ids) for c, (t, y, ids) in sorted(per.items())}, hard


def _engine(path: Path, quantize: str, num_threads: int | None) -> TextEngine:
    mode = serving_quantize(path) if quantize == "auto" else quantize
    return TextEngine(path, quantize=mode, num_threads=num_threads, max_batch=32)


def served_probs(engine: TextEngine, texts: list[str]) -> dict[str, np.ndarray]:
    """text -> served probabilities (one row per distinct text, in `engine.served_labels` order)."""
    uniq = sorted(set(texts))
    probs = np.zeros((0, len(engine.served_labels)), np.float32)
    if uniq:
        probs = np.concatenate([engine.served(uniq[i:i + 512]) for i in range(0, len(uniq), 512)])
    return dict(zip(uniq, probs, strict=True))


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def scores(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """F1, precision and recall at `threshold`, and AP: what one model gets on one category."""
    pred = p >= threshold
    tp, fp, fn = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum()), int((~pred & (y == 1)).sum())
    out: dict[str, Any] = {"f1": float(_f1(np.array(tp), np.array(fp), np.array(fn))),
                           "precision": tp / (tp + fp) if tp + fp else 0.0,
                           "recall": tp / (tp + fn) if tp + fn else 0.0,
                           "threshold": float(threshold), "flagged": int(pred.sum())}
    if 0 < y.sum() < len(y):
        out["ap"] = float(average_precision_score(y, p))
    return out


def delta_interval(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, seed: int = 0,
                   n_boot: int = BOOTSTRAP) -> tuple[float, float]:
    """Paired bootstrap 95% interval of F1(b) - F1(a): both models resampled on the same rows,
    so the interval is about the models' difference, not about the test set's luck."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(n_boot, len(y)))
    yy = y[idx] == 1

    def f1(pred: np.ndarray) -> np.ndarray:
        pp = pred[idx]
        return _f1((pp & yy).sum(1), (pp & ~yy).sum(1), (~pp & yy).sum(1))

    d = f1(pred_b) - f1(pred_a)
    return float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))


def compare_slice(data: dict[str, tuple[list[str], np.ndarray, list[str]]], engines: dict[str, TextEngine],
                  probs: dict[str, dict[str, np.ndarray]], min_rows: int, min_positives: int) -> dict[str, Any]:
    """Per category: both models' scores, the delta and its interval, and whether it is gated."""
    cats: dict[str, Any] = {}
    for cat, (texts, y, _src) in data.items():
        row: dict[str, Any] = {"n": len(y), "positives": int(y.sum())}
        preds: dict[str, np.ndarray] = {}
        for who, eng in engines.items():
            if cat not in eng.served_labels or not len(y):
                row[who] = None
                continue
            j = eng.served_labels.index(cat)
            p = np.array([probs[who][t][j] for t in texts], dtype=np.float64)
            t = float(eng.served_thresholds[j])
            row[who] = scores(y, p, t)
            preds[who] = p >= t
        if row["serving"] is not None and row["candidate"] is not None:
            row["delta_f1"] = row["candidate"]["f1"] - row["serving"]["f1"]
            lo, hi = delta_interval(y, preds["serving"], preds["candidate"])
            row["delta_f1_95ci"] = [lo, hi]
        negatives = len(y) - row["positives"]
        thin = [w for w, ok in ((f"{row['positives']} positives < {min_positives}", row["positives"] >= min_positives),
                                (f"{len(y)} rows < {min_rows}", len(y) >= min_rows),
                                ("no negatives", negatives > 0)) if not ok]
        row["gated"] = not thin and row["serving"] is not None and row["candidate"] is not None
        if thin:
            row["not_gated_because"] = "; ".join(thin)
        elif row["serving"] is None:
            row["not_gated_because"] = "serving does not score it (new category)"
        cats[cat] = row
    return {"categories": cats}


def flag_rate(engine: TextEngine, probs: dict[str, np.ndarray], texts: list[str]) -> float | None:
    """Share of `texts` on which any served category reaches its threshold."""
    if not texts:
        return None
    hits = [bool((probs[t] >= engine.served_thresholds).any()) for t in texts]
    return float(np.mean(hits))


def compare(candidate: Side, serving: Side, root: Path, labels: LabelSet | None = None,
            tolerance: float = 0.02, tolerances: dict[str, float] | None = None, max_examples: int | None = None,
            quantize: str = "auto", num_threads: int | None = None, min_rows: int = 20,
            min_positives: int = 5) -> dict[str, Any]:
    """The gate report (a JSON-able dict, schema `heron.gate-report/1`)."""
    started = time.time()
    slices: dict[str, dict[str, tuple[list[str], np.ndarray, list[str]]]] = {"test": test_sets(root, max_examples)}
    hard: list[str] = []
    if labels is not None:
        slices["review_labels"], hard = label_sets(labels)
    texts = sorted({t for sl in slices.values() for tx, _, _ in sl.values() for t in tx} | set(hard))
    engines = {"serving": _engine(serving.path, quantize, num_threads),
               "candidate": _engine(candidate.path, quantize, num_threads)}
    probs = {who: served_probs(e, texts) for who, e in engines.items()}
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA, "kind": "text", "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "candidate": {"version": candidate.name, "path": str(candidate.path),
                      "digest": artifact_digest("text", candidate.path), "quantize": engines["candidate"].quantize,
                      "served_labels": list(engines["candidate"].served_labels), **describe_artifact(candidate.path)},
        "serving": {"version": serving.name, "path": str(serving.path),
                    "digest": artifact_digest("text", serving.path), "quantize": engines["serving"].quantize,
                    "served_labels": list(engines["serving"].served_labels), **describe_artifact(serving.path)},
        "settings": {"tolerance": tolerance, "tolerances": dict(tolerances or {}),
                     "metric": "F1 at each model's own serving threshold; delta = candidate - serving",
                     "min_rows": min_rows, "min_positives": min_positives, "max_examples": max_examples,
                     "bootstrap": BOOTSTRAP, "data_dir": str(root)},
        "slices": {name: compare_slice(sl, engines, probs, min_rows, min_positives) for name, sl in slices.items()},
        "texts_scored": len(texts),
    }
    if labels is not None:
        s = labels.summary()
        report["review_labels"] = {"version": labels.version, "files": s["files"], "holdout_percent": s[
            "holdout_percent"], "holdout_rows": s["holdout_rows"], "skipped": s["skipped"],
            "overturned_holdout_rows": len(hard),
            "overturned_flag_rate": {who: flag_rate(engines[who], probs[who], hard) for who in engines}}
        seen = {report["candidate"].get("encoder_labels_version"), report["candidate"].get("heads_labels_version")}
        if labels.version not in seen:
            report["review_labels"]["note"] = (
                "these labels are not the ones the candidate was trained with; the held-out slice is still "
                "leak-free when both used the same holdout percent (the slice depends only on the text)")
    report["verdict"] = gate_verdict(report)
    report["seconds"] = round(time.time() - started, 1)
    return report


def _fmt(x: Any, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


def markdown(report: dict[str, Any]) -> str:
    """The report for people: one table per slice, the verdict and its reasons first."""
    v = report["verdict"]
    c, s = report["candidate"], report["serving"]
    lines = [f"# Gate report: text candidate {c['version']} vs serving {s['version']}", "",
             f"**Verdict: {'PASS' if v['pass'] else 'FAIL'}** (tolerance {v['tolerance']:.3f} F1"
             + (f"; per category {v['tolerances']}" if v["tolerances"] else "") + ")", ""]
    for r in v["reasons"]:
        lines.append(f"- {r}")
    lines += ["", f"- candidate: `{c['path']}` ({c.get('artifact_version')}"
              + (f", heads {c['heads_version']}" if c.get("heads_version") else "") + f"), path `{c['quantize']}`",
              f"- serving: `{s['path']}` ({s.get('artifact_version')}"
              + (f", heads {s['heads_version']}" if s.get("heads_version") else "") + f"), path `{s['quantize']}`",
              f"- metric: {report['settings']['metric']}; a category is gated with at least "
              f"{report['settings']['min_positives']} positives and {report['settings']['min_rows']} rows",
              f"- texts scored: {report['texts_scored']}"
              + (f" (capped at {report['settings']['max_examples']} per set: a tiny run)"
                 if report["settings"]["max_examples"] else ""), ""]
    for name, sl in report["slices"].items():
        lines += [f"## {name}", "", "| category | n (pos) | serving F1 | candidate F1 | delta | 95% CI | "
                  "tolerance | gated | result |", "|---|---|---|---|---|---|---|---|---|"]
        bad = {r["category"] for r in v["regressions"] if r["slice"] == name}
        for cat, row in sl["categories"].items():
            tol = v["tolerances"].get(cat, v["tolerance"])
            ci = row.get("delta_f1_95ci")
            result = "FAIL" if cat in bad else ("pass" if row["gated"] else row.get("not_gated_because", "–"))
            lines.append(f"| {cat} | {row['n']} ({row['positives']}) | "
                         f"{_fmt(row['serving'] and row['serving']['f1'])} | "
                         f"{_fmt(row['candidate'] and row['candidate']['f1'])} | {_fmt(row.get('delta_f1'), '+.3f')} | "
                         + (f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "–")
                         + f" | {tol:.3f} | {'yes' if row['gated'] else 'no'} | {result} |")
        lines.append("")
    rl = report.get("review_labels")
    if rl:
        fr = rl["overturned_flag_rate"]
        lines += [f"Review labels {rl['version']}: {rl['holdout_rows']} held-out rows ({rl['holdout_percent']}% by "
                  f"text hash), {rl['overturned_holdout_rows']} of them overturned; share of those still flagged: "
                  f"serving {_fmt(fr['serving'])}, candidate {_fmt(fr['candidate'])}."]
        if rl.get("note"):
            lines.append(f"Note: {rl['note']}.")
        lines.append("")
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: Path) -> Path:
    """`path` (JSON) and the same name with .md beside it; returns the Markdown path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    md = path.with_suffix(".md")
    md.write_text(markdown(report) + "\n", "utf-8")
    return md
