"""Reviewer verdicts as a versioned, labelled dataset (`heron labels export`).

One JSON line per reviewed item: the text and its context, the reviewer's per-category labels,
the verdict and reason, how the reviewers agreed when two looked, the model and policy versions
and scores the decision was made with, each scorer's own scores before the ensemble combined them
(`decision.signals`: what `heron train stacking` learns the ensemble weights from; null for
decisions made before Heron stored them), and where it came from. Overturned decisions (an appeal
won, a model false positive) are marked `hard_example`: the cases a retrain most needs.

Versioned: the manifest written beside the file names the schema and a content hash, so a
training run can record exactly which labels it saw, and two exports of the same verdicts have
the same version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pipeline import db
from pipeline.store.engine import aware
from pipeline.store.review_schema import review_items, review_verdicts

SCHEMA = "heron.review-labels/1"


def _iso(ts: Any) -> str | None:
    return aware(ts).isoformat() if ts is not None else None  # type: ignore[union-attr]


def label_rows(engine: sa.engine.Engine, tenant_id: str) -> Iterator[dict[str, Any]]:
    """Every item with a person's verdict (closed, or waiting for its blind second review), oldest first."""
    t = review_items.c
    v = review_verdicts.c
    m = db.messages.c
    r = db.decision_revisions.c
    with engine.connect() as conn:
        items = conn.execute(
            sa.select(review_items).where(t.tenant_id == tenant_id, t.status.in_(("resolved", "second_review")))
            .order_by(t.id)
        ).all()
        for it in items:
            verdicts = conn.execute(
                sa.select(review_verdicts).where(v.item_id == it.id, v.verdict != "escalate").order_by(v.id)
            ).all()
            if not verdicts:
                continue
            deciding = next((x for x in reversed(verdicts) if x.stage in ("final", "first", "bulk")), verdicts[0])
            first = next((x for x in verdicts if x.stage == "first"), None)
            second = next((x for x in verdicts if x.stage == "second"), None)
            msg = conn.execute(sa.select(m.payload).where(m.tenant_id == tenant_id,
                                                          m.message_id == it.message_id)).first()
            original = conn.execute(sa.select(r.payload).where(r.decision_id == it.decision_id, r.revision == 1)) \
                .first()
            payload = dict(msg.payload) if msg else None
            decided = dict(original.payload) if original else {}
            agreement: dict[str, Any] = {"reviews": len([x for x in verdicts if x.stage in ("first", "second")]) or 1}
            if first is not None and second is not None:
                agreement["verdict"] = first.verdict == second.verdict
                agreement["categories"] = {c: bool(first.categories[c]) == bool(second.categories[c])
                                           for c in sorted(set(first.categories) & set(second.categories))}
            yield {
                "schema": SCHEMA,
                "id": f"{tenant_id}:{it.id}",
                "kind": it.kind,
                "message_id": it.message_id,
                "decision_id": it.decision_id,
                "guild_id": it.guild_id,
                "text": payload.get("text") if payload else None,
                "context": (payload or {}).get("context"),
                "categories": {k: bool(x) for k, x in sorted(deciding.categories.items())},
                "verdict": deciding.verdict,
                "reason": deciding.reason_code,
                "hard_example": deciding.verdict == "overturn",
                "agreement": agreement,
                "decision": {"action": decided.get("action"), "scores": decided.get("scores"),
                             "model_versions": decided.get("model_versions"),
                             "policy_version": decided.get("policy_version"),
                             "signals": decided.get("signals") or None},
                "resulting_action": deciding.resulting_action,
                "provenance": {"source": "heron-review", "tenant_id": tenant_id, "item_id": it.id,
                               "reviewers": [x.reviewer for x in verdicts], "reviewed_at": _iso(deciding.decided_at),
                               "decision_revision": deciding.decision_revision},
            }


def export(engine: sa.engine.Engine, tenant_id: str, output: Path) -> dict[str, Any]:
    """Write the labels and `<output>.manifest.json`; returns the manifest. Lines without text (a message
    Heron did not keep) are left out and counted: a label without its text trains nothing."""
    lines: list[str] = []
    skipped = 0
    for row in label_rows(engine, tenant_id):
        if not row["text"]:
            skipped += 1
            continue
        lines.append(json.dumps(row, ensure_ascii=False, sort_keys=True))
    body = "".join(line + "\n" for line in lines)
    output.write_text(body, "utf-8")
    manifest = {
        "schema": SCHEMA,
        "version": hashlib.sha256(body.encode()).hexdigest()[:16],
        "tenant_id": tenant_id,
        "labels": len(lines),
        "skipped_without_text": skipped,
        "hard_examples": sum(1 for line in lines if json.loads(line)["hard_example"]),
        "exported_at": datetime.now(UTC).isoformat(),
        "file": output.name,
    }
    Path(str(output) + ".manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    return manifest


def read(path: Path) -> list[dict[str, Any]]:
    """The labels of an export, checked against the schema they were written with (for training/)."""
    rows = []
    for n, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("schema") != SCHEMA:
            raise ValueError(f"{path}:{n}: schema {row.get('schema')!r}, expected {SCHEMA!r}")
        rows.append(row)
    return rows
