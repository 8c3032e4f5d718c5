"""`heron train stacking`: learn the ensemble's weights from review labels, and say whether they beat
the hand-set ones on held-out labels.

Input: a `heron labels export` file. Each label carries the per-scorer signals its decision was made
from (`decision.signals`) and a person's verdict. Per category, a logistic regression over those
signals (features: pipeline/stacking.py) is fitted on a deterministic train slice and compared with
the hand-set ensemble (pipeline/ensemble.py, equal weights) on the held-out slice.

Labels, per category: the reviewer's explicit `categories[c]` when given; otherwise an `overturn`
counts as "violates nothing" (the reviewer allowed the message) and an `uphold` without that
category says nothing about it (left out). One label per decision (the latest verdict): two review
items on one message (a held decision and a report) must not count twice or straddle the split.

Split: by a hash of the label's message id (the chat service's own id), so a label stays on its side
as more labels arrive, the same export always splits the same way, and a re-run of the same traffic
in another database (another tenant id) splits it the same way too.

Guilds: labels from several guilds (communities label differently, and see different traffic) are
also compared guild by guild. A model can win on the pooled labels only by learning which guild a
message looks like it came from (where one guild's reviewers label a category and another's mostly
overturn), which is not better ranking; so a category that beats the hand-set weights pooled but
in no guild on its own (when two or more guilds are there and at least one has enough labels to
judge) is reported as "beats pooled only" and not written, and one that is worse in any guild is
"worse".

Comparison on the held-out slice, per category: AUPRC, log loss, Brier, and F1 at the platform
policy's first threshold for the category (where the default policy starts acting), with paired
bootstrap 95% intervals for the differences. The verdict is "beats" when one of AUPRC or log loss
is better with its interval clear of zero and neither is worse with its interval clear of zero;
"worse" when one is clearly worse; otherwise "no clear difference". Only categories that beat are
written to the file by default (`--keep not-worse` also writes those with no clear difference, pooled
or in every guild): the hand-set weights keep serving the rest, so serving the file cannot make a
category worse than what was measured.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from pipeline.ensemble import EnsembleConfig, combine
from pipeline.labels import read as read_labels
from pipeline.policy import PLATFORM_DEFAULT
from pipeline.stacking import SCHEMA, feature_values, parse
from pipeline.taxonomy import CATEGORY_NAMES
from pipeline.types import Signal

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "models" / "ensemble" / "stacking.json"
REPORT_SCHEMA = "heron.stacking-report/1"
EPS = 1e-4
REQUIRE_SHARE = 0.95  # a scorer present in at least this share of training examples is required at serving
NO_GUILD = "(no guild)"
MIN_JUDGE = 5  # positive and negative held-out labels a comparison needs


@dataclass
class Example:
    key: str  # the decision id: one example per decision
    split_key: str  # the message id: what the split hashes
    label_id: str
    signals: list[Signal]
    labels: dict[str, bool]
    stored_scores: dict[str, float | None] = field(default_factory=dict)
    group: str = NO_GUILD  # the guild the label came from

    @property
    def observed(self) -> dict[str, dict[str, float]]:
        return {s.scorer: dict(s.scores) for s in self.signals if s.scores}


def heldout(key: str, share: float) -> bool:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def examples(rows: list[dict[str, Any]]) -> tuple[list[Example], dict[str, int]]:
    """One example per decision (the latest verdict), with its signals and per-category labels."""
    latest: dict[str, dict[str, Any]] = {}
    counts = {"labels": len(rows), "without_signals": 0, "duplicates": 0}
    for row in rows:
        key = row.get("decision_id") or row["id"]
        prev = latest.get(key)
        if prev is not None:
            counts["duplicates"] += 1
            if (prev.get("provenance") or {}).get("reviewed_at", "") > (row.get("provenance") or {}).get(
                    "reviewed_at", ""):
                continue
        latest[key] = row
    out = []
    for key, row in latest.items():
        decision = row.get("decision") or {}
        stored = decision.get("signals")
        if not stored:
            counts["without_signals"] += 1
            continue
        signals = [Signal(scorer=name, version="label", scores=s["scores"], definitive=bool(s.get("definitive")))
                   for name, s in sorted(stored.items())]
        given = {c: bool(v) for c, v in (row.get("categories") or {}).items() if c in CATEGORY_NAMES}
        labels = {c: given[c] if c in given else False for c in CATEGORY_NAMES
                  if c in given or row.get("verdict") == "overturn"}
        out.append(Example(key, row.get("message_id") or key, row["id"], signals, labels,
                           decision.get("scores") or {}, row.get("guild_id") or NO_GUILD))
    counts["examples"] = len(out)
    return out, counts


def _policy_threshold(category: str) -> float:
    rules = PLATFORM_DEFAULT.thresholds.get(category) or []
    return rules[0].threshold if rules else 0.5


def _metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

    pc = np.clip(p, EPS, 1 - EPS)
    pred = p >= threshold
    has_both = 0 < y.sum() < len(y)
    return {
        "auprc": round(float(average_precision_score(y, p)), 4) if has_both else None,
        "log_loss": round(float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))), 4),
        "brier": round(float(np.mean((p - y) ** 2)), 4),
        "f1": round(float(f1_score(y, pred, zero_division=0)), 4),
        "precision": round(float(precision_score(y, pred, zero_division=0)), 4),
        "recall": round(float(recall_score(y, pred, zero_division=0)), 4),
    }


def _bootstrap(y: np.ndarray, hand: np.ndarray, learned: np.ndarray, seed: int, rounds: int) -> dict[str, Any]:
    """Paired bootstrap of learned - hand-set: log loss and AUPRC (95% percentile intervals)."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(seed)
    n = len(y)
    hl = -(y * np.log(np.clip(hand, EPS, 1 - EPS)) + (1 - y) * np.log(np.clip(1 - hand, EPS, 1 - EPS)))
    ll = -(y * np.log(np.clip(learned, EPS, 1 - EPS)) + (1 - y) * np.log(np.clip(1 - learned, EPS, 1 - EPS)))
    d_ll, d_ap = [], []
    for _ in range(rounds):
        idx = rng.integers(0, n, n)
        d_ll.append(float(ll[idx].mean() - hl[idx].mean()))
        yb = y[idx]
        if 0 < yb.sum() < n:
            d_ap.append(float(average_precision_score(yb, learned[idx]) - average_precision_score(yb, hand[idx])))

    def ci(xs: list[float]) -> list[float] | None:
        return [round(float(np.percentile(xs, 2.5)), 4), round(float(np.percentile(xs, 97.5)), 4)] if xs else None

    return {"log_loss_delta_ci95": ci(d_ll), "auprc_delta_ci95": ci(d_ap)}


def _verdict(ci: dict[str, Any]) -> str:
    ll, ap = ci["log_loss_delta_ci95"], ci["auprc_delta_ci95"]
    better = (ll is not None and ll[1] < 0) or (ap is not None and ap[0] > 0)
    worse = (ll is not None and ll[0] > 0) or (ap is not None and ap[1] < 0)
    if worse:
        return "worse"
    return "beats" if better else "no clear difference"


def _compare(exs: list[Example], hand_scores: list[dict[str, float | None]], split: list[bool],
             learned_cfg: EnsembleConfig, categories: list[str], seed: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Hand-set vs learned on the held-out examples, per category: metrics, bootstrap intervals, verdict."""
    out: dict[str, dict[str, Any]] = {}
    for cat in categories:
        te = [i for i, e in enumerate(exs) if split[i] and cat in e.labels and hand_scores[i][cat] is not None]
        learned = {i: combine(exs[i].signals, learned_cfg).scores[cat] for i in te}

        def judge(idx: list[int], cat: str = cat, learned: dict[int, float | None] = learned) -> dict[str, Any]:
            y = np.array([exs[i].labels[cat] for i in idx], dtype=float)
            info: dict[str, Any] = {"heldout": len(idx), "heldout_positives": int(y.sum())}
            if min(int(y.sum()), len(y) - int(y.sum())) < MIN_JUDGE:
                info["verdict"] = f"too few held-out labels to judge (fewer than {MIN_JUDGE} positive or negative)"
                return info
            hand = np.array([hand_scores[i][cat] for i in idx], dtype=float)
            mine = np.array([learned[i] for i in idx], dtype=float)
            t = _policy_threshold(cat)
            info.update(threshold=t, hand_set=_metrics(y, hand, t), learned=_metrics(y, mine, t))
            info.update(_bootstrap(y, hand, mine, seed, rounds))
            info["verdict"] = _verdict(info)
            return info

        info = out[cat] = judge(te)
        groups = sorted({exs[i].group for i in te})
        if len(groups) < 2:
            continue
        info["by_guild"] = {g: judge([i for i in te if exs[i].group == g]) for g in groups}
        judged = {g: v["verdict"] for g, v in info["by_guild"].items() if v.get("threshold") is not None}
        worse_in = [g for g, v in judged.items() if v == "worse"]
        if worse_in:
            info["pooled_verdict"], info["verdict"] = info["verdict"], "worse"
            info["verdict_note"] = f"worse in guild {', '.join(worse_in)}"
        elif info["verdict"] == "beats" and judged and "beats" not in judged.values():
            info["pooled_verdict"], info["verdict"] = info["verdict"], "beats pooled only"
            info["verdict_note"] = ("better on the pooled labels but in no guild on its own: the gain may come from "
                                    "telling the guilds' labels apart, not from ranking messages better")
    return out


def train(rows: list[dict[str, Any]], *, heldout_share: float = 0.3, min_positives: int = 10, c: float = 1.0,
          seed: int = 0, bootstrap_rounds: int = 1000, labels_version: str | None = None, keep: str = "beats") \
        -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(the stacking file's body, or None when no category could be trained; the report)."""
    from sklearn.linear_model import LogisticRegression

    exs, counts = examples(rows)
    hand_cfg = EnsembleConfig()
    hand_scores = [combine(e.signals, hand_cfg).scores for e in exs]
    matches = sum(1 for e, h in zip(exs, hand_scores, strict=True)
                  if all(e.stored_scores.get(k) is None or h[k] is None or abs(h[k] - e.stored_scores[k]) < 1e-3  # type: ignore[operator]
                         for k in CATEGORY_NAMES))
    split = [heldout(e.split_key, heldout_share) for e in exs]
    categories: dict[str, Any] = {}
    per_category: dict[str, Any] = {}
    for cat in CATEGORY_NAMES:
        usable = [i for i, e in enumerate(exs) if cat in e.labels and hand_scores[i][cat] is not None]
        tr = [i for i in usable if not split[i]]
        te = [i for i in usable if split[i]]
        y_tr = np.array([exs[i].labels[cat] for i in tr], dtype=float)
        info: dict[str, Any] = {"train": len(tr), "train_positives": int(y_tr.sum()), "heldout": len(te),
                                "heldout_positives": int(sum(exs[i].labels[cat] for i in te))}
        per_category[cat] = info
        if min(info["train_positives"], len(tr) - info["train_positives"]) < min_positives:
            info["status"] = f"not trained: fewer than {min_positives} positive and negative training labels"
            continue
        feats = [feature_values(exs[i].observed) for i in tr]
        names = sorted({k for f in feats for k in f})
        x = np.array([[f.get(k, 0.0) for k in names] for f in feats])
        model = LogisticRegression(C=c, max_iter=5000)
        model.fit(x, y_tr)
        scorers = [k for k in names if "/" not in k]  # presence features are named by the scorer alone
        presence = {s: sum(1 for f in feats if s in f) / len(feats) for s in scorers}
        categories[cat] = {
            "intercept": round(float(model.intercept_[0]), 6),
            "weights": {k: round(float(w), 6) for k, w in zip(names, model.coef_[0], strict=True)},
            "requires": sorted(s for s, share in presence.items() if share >= REQUIRE_SHARE),
        }
        info["status"] = "trained"
    if not categories:
        return None, _report(per_category, counts, matches, heldout_share, labels_version, None, "does not beat",
                             "no category had enough labels to train")
    body: dict[str, Any] = {"schema": SCHEMA, "version": "", "categories": categories}
    compared = _compare(exs, hand_scores, split, EnsembleConfig(stacking=parse({**body, "version": "candidate"})),
                        list(categories), seed, bootstrap_rounds)
    for cat, got in compared.items():
        per_category[cat].update(got)
    kept = ("beats",) if keep == "beats" else ("beats", "no clear difference", "beats pooled only")
    for cat in list(categories):
        if per_category[cat].get("verdict") not in kept:
            del categories[cat]  # the hand-set weights keep serving it
            per_category[cat]["status"] = "trained, not written: " + per_category[cat]["verdict"]
    judged = {c: i["verdict"] for c, i in per_category.items() if i.get("verdict") in (
        "beats", "worse", "no clear difference", "beats pooled only")}
    beats = [c for c, v in judged.items() if v == "beats"]
    worse = [c for c, v in judged.items() if v == "worse"]
    pooled_only = [c for c, v in judged.items() if v == "beats pooled only"]
    if beats and not worse:
        overall, why = "beats", f"better on held-out labels for {', '.join(beats)}, worse for none"
    elif not judged:
        overall, why = "does not beat", "no category had enough held-out labels to judge"
    else:
        overall = "does not beat"
        why = (f"worse on {', '.join(worse)}" if worse else "no category clearly better on held-out labels") + \
            (f" (better on {', '.join(beats)})" if beats else "")
    if pooled_only:
        why += (f"; {', '.join(pooled_only)}: better on the pooled labels but in no guild on its own, so not "
                "counted (the gain may come from telling the guilds' labels apart)")
    body["categories"] = categories
    report = _report(per_category, counts, matches, heldout_share, labels_version, body if categories else None,
                     overall, why)
    if not categories:
        return None, report
    body["version"] = "stk-" + hashlib.sha256(json.dumps(categories, sort_keys=True).encode()).hexdigest()[:12]
    body["trained"] = {"labels_version": labels_version, "examples": counts["examples"], "heldout_share": heldout_share,
                       "c": c, "verdict": overall, "at": datetime.now(UTC).isoformat()}
    report["stacking_version"] = body["version"]
    parse(body)  # what serving will load must validate
    return body, report


def _report(per_category: dict[str, Any], counts: dict[str, int], matches: int, heldout_share: float,
            labels_version: str | None, body: dict[str, Any] | None, overall: str, why: str) -> dict[str, Any]:
    return {
        "schema": REPORT_SCHEMA,
        "labels_version": labels_version,
        "counts": {**counts, "hand_set_matches_stored_scores": matches},
        "heldout_share": heldout_share,
        "categories": per_category,
        "written_categories": sorted(body["categories"]) if body else [],
        "verdict": overall,
        "why": why,
        "line": f"Learned stacking {overall} the hand-set ensemble weights on held-out review labels: {why}.",
    }


def _fmt(x: Any) -> str:
    return "n/a" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))


def markdown(report: dict[str, Any]) -> str:
    c = report["counts"]
    out = ["# Learned stacking vs hand-set ensemble weights", "",
           f"Labels: {c['labels']} rows ({c['duplicates']} duplicates of a decision, {c['without_signals']} without "
           f"stored signals), {c['examples']} examples; held-out share {report['heldout_share']} by message-id hash. "
           f"Hand-set scores recomputed from the stored signals match the stored decision scores for "
           f"{c['hand_set_matches_stored_scores']} of {c['examples']}.", "",
           f"**{report['line']}**", "",
           "| category | train (pos) | held-out (pos) | AUPRC hand → learned | log loss hand → learned | "
           "F1@t hand → learned | Δ log loss 95% CI | Δ AUPRC 95% CI | verdict |",
           "|---|---|---|---|---|---|---|---|---|"]
    unlabelled = [cat for cat, i in report["categories"].items() if not i["train"] and not i["heldout"]]
    for cat, i in report["categories"].items():
        if cat in unlabelled:
            continue
        h, lr = i.get("hand_set") or {}, i.get("learned") or {}
        t = i.get("threshold")
        out.append(
            f"| {cat} | {i['train']} ({i['train_positives']}) | {i['heldout']} ({i['heldout_positives']}) | "
            f"{_fmt(h.get('auprc'))} → {_fmt(lr.get('auprc'))} | "
            f"{_fmt(h.get('log_loss'))} → {_fmt(lr.get('log_loss'))} | "
            f"{_fmt(h.get('f1'))} → {_fmt(lr.get('f1'))}{f' (t={t})' if t is not None else ''} | "
            f"{i.get('log_loss_delta_ci95') or 'n/a'} | {i.get('auprc_delta_ci95') or 'n/a'} | "
            f"{i.get('verdict') or i.get('status')} |")
    guild_rows = [(cat, g, v) for cat, i in report["categories"].items() for g, v in (i.get("by_guild") or {}).items()]
    if guild_rows:
        out += ["", "Guild by guild (held-out labels):", "",
                "| category | guild | held-out (pos) | AUPRC hand → learned | log loss hand → learned | "
                "Δ log loss 95% CI | Δ AUPRC 95% CI | verdict |", "|---|---|---|---|---|---|---|---|"]
        for cat, g, v in guild_rows:
            h, lr = v.get("hand_set") or {}, v.get("learned") or {}
            out.append(f"| {cat} | {g} | {v['heldout']} ({v['heldout_positives']}) | "
                       f"{_fmt(h.get('auprc'))} → {_fmt(lr.get('auprc'))} | "
                       f"{_fmt(h.get('log_loss'))} → {_fmt(lr.get('log_loss'))} | "
                       f"{v.get('log_loss_delta_ci95') or 'n/a'} | {v.get('auprc_delta_ci95') or 'n/a'} | "
                       f"{v['verdict']} |")
    if unlabelled:
        out += ["", f"No labels (or no scorer covering them) for: {', '.join(unlabelled)}."]
    out += ["", f"Written to the stacking file: {', '.join(report['written_categories']) or 'nothing'}."]
    return "\n".join(out) + "\n"


def register(train_app: typer.Typer) -> None:
    """Add `heron train stacking` to training/cli.py's `train` group."""

    @train_app.command("stacking")
    def train_stacking_cmd(
        labels: Annotated[Path, typer.Option("--labels", help="a `heron labels export` file (JSON lines)")],
        output: Annotated[Path, typer.Option("--output", "-o", help="the stacking file to write "
                                             "(serve it with HERON_ENSEMBLE_STACKING=path)")] = DEFAULT_OUTPUT,
        report: Annotated[Path | None, typer.Option(help="report path (.json; a .md beside it); default: "
                                                    "OUTPUT with .report.json")] = None,
        heldout_share: Annotated[float, typer.Option(min=0.05, max=0.9, help="share of decisions held out")] = 0.3,
        min_positives: Annotated[int, typer.Option(min=2, help="fewest positive (and negative) training labels "
                                                   "a category needs")] = 10,
        c: Annotated[float, typer.Option("--c", min=1e-6, help="inverse L2 regularisation strength")] = 1.0,
        seed: Annotated[int, typer.Option(help="bootstrap seed")] = 0,
        keep: Annotated[str, typer.Option(help="which categories to write: 'beats' (better than the hand-set "
                                          "weights on held-out labels) or 'not-worse'")] = "beats",
    ) -> None:
        """Learn per-category ensemble weights from review labels and compare them with the hand-set
        weights on held-out labels (JSON + Markdown report)."""
        if keep not in ("beats", "not-worse"):
            typer.echo(f"heron train stacking: --keep must be 'beats' or 'not-worse', got {keep!r}", err=True)
            raise typer.Exit(2)
        if not labels.is_file():
            typer.echo(f"heron train stacking: no labels file at {labels} (make one with `heron labels export`)",
                       err=True)
            raise typer.Exit(2)
        try:
            rows = read_labels(labels)
        except (ValueError, json.JSONDecodeError) as exc:
            typer.echo(f"heron train stacking: {exc}", err=True)
            raise typer.Exit(2) from None
        manifest = Path(str(labels) + ".manifest.json")
        version = json.loads(manifest.read_text("utf-8")).get("version") if manifest.is_file() else \
            hashlib.sha256(labels.read_bytes()).hexdigest()[:16]
        body, rep = train(rows, heldout_share=heldout_share, min_positives=min_positives, c=c, seed=seed,
                          labels_version=version, keep=keep)
        report_path = report or output.with_suffix(".report.json")
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(rep, indent=2) + "\n", "utf-8")
        md = markdown(rep)
        report_path.with_suffix(".md").write_text(md, "utf-8")
        typer.echo(md)
        if body is None:
            typer.echo(f"heron train stacking: nothing written ({rep['why']}); report at {report_path}", err=True)
            raise typer.Exit(1)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", "utf-8")
        typer.echo(f"wrote {output} ({body['version']}; categories {', '.join(sorted(body['categories']))}); "
                   f"report {report_path} (+ .md)", err=True)
