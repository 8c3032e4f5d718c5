"""Train and evaluate the behaviour model on simulated guild traffic with real texts.

Data: `training/behaviour/simulate.py` streams whose texts come from the real spam and ham sets
(`training/behaviour/texts.py`), one split per seed range, so no text is both trained on and
measured on:

- training seeds 0-39 draw texts from the **train** pool;
- validation seeds 500-509 from the **val** pool (for choices: the figures in the model card's
  "choices" section come from these);
- held-out evaluation seeds 1000-1019 from the **test** pool.

Features come from the real feature stage (`BehaviourExtractor` on the in-process backend, in
batches in time order), so training sees exactly what serving computes; the text side is the
served text model's spam score for each message's text (`TextSpamScores`, cached under var/).
Every training example is used twice, with its text score and without it (NaN), so the one
model serves both a pipeline with the text scorer and one without (see models/behaviour/model.py);
drive-by spammers only with their text (see `WITHOUT_TEXT_EXCLUDES`).

The evaluation reports precision and recall overall and per scenario at the platform policy's
flag (0.6) and hold (0.9) thresholds with the text side; the same without it (text signal
absent); the text model alone; what the served decision does (the ensemble's spam score is at
least the behaviour scorer's floor and the text model's vote, and only the behaviour scorer's
"certain" 1.0 times an author out); and, for every spam actor, whether it is caught (score >=
hold) by its third message.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from models.behaviour.model import BehaviourModel, feature_matrix, load_model, save_model
from pipeline.features import FeatureStage, ScoringItem
from pipeline.features.behaviour import BehaviourExtractor, InProcessBackend
from pipeline.features.links import LinkExtractor
from pipeline.features.text import TextExtractor
from pipeline.scorers.behaviour import served_spam
from training.behaviour.simulate import SCENARIOS, SPAM_SCENARIOS, SimMessage, simulate
from training.behaviour.texts import TextPool, TextSpamScores, load_pools

TRAIN_SEEDS = tuple(range(40))
VAL_SEEDS = tuple(range(500, 510))
EVAL_SEEDS = tuple(range(1000, 1020))
THRESHOLDS = {"flag": 0.6, "hold": 0.9}
BATCH = 64


def split_for(seed: int) -> str:
    """Which text pool a seed draws from: train seeds train, validation seeds val, any other test."""
    if seed in TRAIN_SEEDS:
        return "train"
    if seed in VAL_SEEDS:
        return "val"
    return "test"


@lru_cache(maxsize=1)
def pools(data_dir: str | None = None) -> dict[str, TextPool]:
    from training.text.data import resolve_data_dir

    return load_pools(resolve_data_dir(data_dir))


def featurize(stream: Sequence[SimMessage], tenant: str = "sim") -> list[dict[str, float]]:
    """Counters for every message of one stream, through a fresh in-process feature stage."""
    stage = FeatureStage([TextExtractor(), LinkExtractor(), BehaviourExtractor(InProcessBackend())])
    rows: list[dict[str, float]] = []
    for i in range(0, len(stream), BATCH):
        items = [ScoringItem(s.message, tenant_id=tenant) for s in stream[i : i + BATCH]]
        stage.run(items)
        for it in items:
            if it.context.behaviour is None:
                raise RuntimeError(f"behaviour features failed: {it.context.failed}")
            rows.append(dict(it.context.behaviour.counters))
    return rows


@dataclass
class Dataset:
    rows: list[dict[str, float]]
    text_spam: np.ndarray  # the text model's spam score per message (NaN: no text to score)
    y: np.ndarray
    sims: list[SimMessage]


def dataset(seeds: Sequence[int], scores: TextSpamScores | None = None) -> Dataset:
    """Simulated streams for `seeds` (texts from each seed's split pool), featurised and text-scored."""
    scores = scores or TextSpamScores()
    rows: list[dict[str, float]] = []
    sims: list[SimMessage] = []
    all_pools = pools()
    for seed in seeds:
        stream = simulate(seed, all_pools[split_for(seed)])
        rows += featurize(stream)
        sims += stream
    texts = [s.message.text for s in sims]
    scored = [i for i, t in enumerate(texts) if t.strip()]
    text_spam = np.full(len(sims), np.nan)
    text_spam[scored] = scores.get([texts[i] for i in scored])
    return Dataset(rows, text_spam, np.array([s.label for s in sims]), sims)


# Left out of the copy without text scores: a drive-by spammer is built to behave like a newcomer,
# so without its text the model could only learn the simulator's ratio of drive-bys to newcomers
# (raised so that the text side has enough of them to learn from) and flag newcomers for it.
WITHOUT_TEXT_EXCLUDES = frozenset({"drive_by"})


def fit(data: Dataset, seed: int = 0) -> Any:
    """Gradient boosting on every example twice: with its text score and with none (NaN), the
    second time without the scenarios only the text can tell (`WITHOUT_TEXT_EXCLUDES`)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    X = feature_matrix(data.rows, data.text_spam.tolist())
    keep = np.array([s.scenario not in WITHOUT_TEXT_EXCLUDES for s in data.sims])
    X_without = X[keep].copy()
    X_without[:, -1] = np.nan
    clf = HistGradientBoostingClassifier(
        max_iter=200,
        learning_rate=0.1,
        max_leaf_nodes=15,
        min_samples_leaf=20,
        l2_regularization=1.0,
        random_state=seed,
    )
    return clf.fit(np.vstack([X, X_without]), np.concatenate([data.y, data.y[keep]]))


def _at(p: np.ndarray, y: np.ndarray, sims: Sequence[SimMessage], thr: float) -> dict[str, Any]:
    pred = p >= thr
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    per: dict[str, Any] = {}
    scen = np.array([s.scenario for s in sims])
    for sc in SCENARIOS:
        idx = scen == sc
        if not idx.any():
            continue
        n = int(idx.sum())
        hit = int(pred[idx].sum())
        key = "recall" if sc in SPAM_SCENARIOS else "flagged_rate"
        per[sc] = {"messages": n, "flagged": hit, key: round(hit / n, 4)}
    return {
        "threshold": thr,
        "precision": round(tp / max(1, tp + fp), 4),
        "recall": round(tp / max(1, tp + fn), 4),
        "false_positives": fp,
        "per_scenario": per,
    }


def _caught_by_third(p: np.ndarray, sims: Sequence[SimMessage]) -> dict[str, dict[str, int]]:
    by_actor: dict[str, list[float]] = defaultdict(list)
    scen: dict[str, str] = {}
    for s, score in zip(sims, p, strict=True):
        if s.label:
            by_actor[s.actor].append(float(score))
            scen[s.actor] = s.scenario
    caught: dict[str, list[int]] = defaultdict(list)
    for actor, scores in by_actor.items():
        caught[scen[actor]].append(int(any(v >= THRESHOLDS["hold"] for v in scores[:3])))
    return {sc: {"actors": len(v), "caught": sum(v)} for sc, v in sorted(caught.items())}


def _decisions(p: np.ndarray, data: Dataset) -> dict[str, Any]:
    """What the served decision does per scenario: held or worse (the ensemble's spam >= 0.9, from
    the served scorer's signal and the text model's, combined by `pipeline.ensemble.combine`: the
    behaviour signal supersedes the text vote when it knows the author and read the text) and timed
    out (the behaviour scorer's 1.0)."""
    from pipeline.ensemble import combine
    from pipeline.scorers.behaviour import BehaviourScorer
    from pipeline.types import Signal

    scorer = BehaviourScorer()  # only its signal-building half: the probabilities are `p`
    behaviour = np.array([served_spam(float(v), c) for v, c in zip(p, data.rows, strict=True)])
    text = np.nan_to_num(data.text_spam, nan=0.0)
    spam = np.zeros(len(p))
    for i, (v, c, t) in enumerate(zip(p, data.rows, data.text_spam.tolist(), strict=True)):
        t_or_none = None if np.isnan(t) else float(t)
        signals = [scorer._signal(float(v), c, None, 0.0, t_or_none)]
        if t_or_none is not None:
            signals.append(Signal(scorer="text", version="t", scores={"spam": t_or_none}))
        spam[i] = combine(signals).scores["spam"] or 0.0
    scen = np.array([s.scenario for s in data.sims])
    out: dict[str, Any] = {}
    for sc in SCENARIOS:
        idx = scen == sc
        if idx.any():
            out[sc] = {
                "messages": int(idx.sum()),
                "held_or_worse": round(float((spam[idx] >= THRESHOLDS["hold"]).mean()), 4),
                "held_by_text_alone": round(float((text[idx] >= THRESHOLDS["hold"]).mean()), 4),
                "timed_out": round(float((behaviour[idx] >= 1.0).mean()), 4),
            }
    return out


def evaluate(model: BehaviourModel, seeds: Sequence[int] = EVAL_SEEDS, report: bool = True) -> dict[str, Any]:
    """Precision/recall on held-out seeds with and without the text side, per scenario, the text
    model alone, the served decision, and caught-by-third-message; prints the text-side summary."""
    data = dataset(seeds)
    y, sims = data.y, data.sims
    with_text = model.predict_proba(data.rows, data.text_spam.tolist())
    without = model.predict_proba(data.rows)
    text_alone = np.nan_to_num(data.text_spam, nan=0.0)
    out: dict[str, Any] = {
        "seeds": list(seeds),
        "text_pools": sorted({split_for(s) for s in seeds}),
        "messages": len(y),
        "spam_messages": int(y.sum()),
    }
    for name, thr in THRESHOLDS.items():
        out[name] = _at(with_text, y, sims, thr)
    out["caught_by_third_message"] = _caught_by_third(with_text, sims)
    out["without_text_signal"] = {name: _at(without, y, sims, thr) for name, thr in THRESHOLDS.items()}
    out["without_text_signal"]["caught_by_third_message"] = _caught_by_third(without, sims)
    out["text_model_alone"] = {name: _at(text_alone, y, sims, thr) for name, thr in THRESHOLDS.items()}
    out["served_decision"] = _decisions(with_text, data)
    if report:
        print_text_side(out)
    return out


def print_text_side(metrics: dict[str, Any]) -> None:
    """The figures `heron eval behaviour` adds for the text side (the CLI prints the rest)."""
    print(
        f"seeds {metrics['seeds'][0]}-{metrics['seeds'][-1]} (texts: {', '.join(metrics['text_pools'])} pool), "
        f"{metrics['messages']} messages, {metrics['spam_messages']} spam"
    )
    for label, part in (
        ("with the text side", metrics),
        ("text signal absent", metrics["without_text_signal"]),
        ("text model alone", metrics["text_model_alone"]),
    ):
        cells = []
        for name in THRESHOLDS:
            m = part[name]
            cells.append(f"{name} P {m['precision']:.4f} R {m['recall']:.4f} FP {m['false_positives']}")
        print(f"  {label:20s} " + "; ".join(cells))
    for sc in SCENARIOS:
        cells = []
        for label, part in (
            ("text", metrics),
            ("no text", metrics["without_text_signal"]),
            ("text alone", metrics["text_model_alone"]),
        ):
            v = part["hold"]["per_scenario"].get(sc)
            if v is not None:
                cells.append(f"{label} {v.get('recall', v.get('flagged_rate')):.4f}")
        d = metrics["served_decision"].get(sc)
        if d is not None:
            kind = "recall" if sc in SPAM_SCENARIOS else "flagged"
            print(
                f"  hold {kind:7s} {sc:16s} {d['messages']:6d} msgs  "
                + "  ".join(cells)
                + f"  | decision: held {d['held_or_worse']:.4f} timed out {d['timed_out']:.4f}"
            )


def train_and_save(out: Path, seed: int = 0) -> dict[str, Any]:
    data = dataset(TRAIN_SEEDS)
    clf = fit(data, seed)
    meta = save_model(
        clf,
        out,
        {
            "train_seeds": [TRAIN_SEEDS[0], TRAIN_SEEDS[-1]],
            "train_messages": len(data.y),
            "train_spam": int(data.y.sum()),
            "text_pool": "train",
            "text_model": TextSpamScores().key,
            "text_scored_messages": int(np.isfinite(data.text_spam).sum()),
        },
    )
    metrics = evaluate(load_model(out))
    metrics["version"] = meta["version"]
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", "utf-8")
    return metrics


def validate(seed: int = 0) -> dict[str, Any]:
    """Train on the training seeds and evaluate on the validation seeds (val text pool), without
    writing anything: where the model's choices are made."""
    import tempfile

    data = dataset(TRAIN_SEEDS)
    clf = fit(data, seed)
    with tempfile.TemporaryDirectory() as tmp:
        save_model(clf, Path(tmp), {})
        return evaluate(load_model(Path(tmp)), VAL_SEEDS)


if __name__ == "__main__":  # python -m training.behaviour.train validate
    import sys

    if sys.argv[1:] != ["validate"]:
        raise SystemExit("usage: python -m training.behaviour.train validate")
    result = validate()
    print(json.dumps({k: result[k] for k in ("flag", "hold")}, indent=2))
