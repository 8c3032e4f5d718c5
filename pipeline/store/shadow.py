"""Shadow decisions: what a candidate model or policy would have decided, stored beside the live one.

One row per (tenant, message, shadow version): a message decided twice by the async path (a task
re-sent by the sweeper) is still shadowed once per candidate, and rows from different candidates
sit side by side for comparison. Rows carry what the report needs without reading the decision
back (the live action and per-category actions at the time: a reviewer's later revision must not
rewrite what the live model did). Migration 0007 creates the table; nothing here is on the
delivery path: no outbox events, no audit rows, no webhooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pipeline.db import TS, metadata
from pipeline.store.engine import Database, aware
from pipeline.store.review_schema import review_items

shadow_decisions = sa.Table(
    "shadow_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(128), nullable=False),
    sa.Column("decision_id", sa.String(64), nullable=False),
    sa.Column("guild_id", sa.String(128), nullable=True),
    # Names the candidate: "text=<artifact version>;policy=<file>@<hash>;stacking=<version>".
    sa.Column("shadow_version", sa.String(255), nullable=False),
    sa.Column("live_action", sa.String(32), nullable=False),
    sa.Column("shadow_action", sa.String(32), nullable=False),
    sa.Column("live_categories", sa.JSON, nullable=False),  # category -> the action its rule chose
    sa.Column("shadow_categories", sa.JSON, nullable=False),
    sa.Column("live_scores", sa.JSON, nullable=False),
    sa.Column("shadow_scores", sa.JSON, nullable=False),
    sa.Column("shadow_reasons", sa.JSON, nullable=False),
    sa.Column("shadow_model_versions", sa.JSON, nullable=False),
    sa.Column("live_policy_version", sa.Integer, nullable=False),
    sa.Column("shadow_policy", sa.String(128), nullable=True),  # None: each guild's own policy
    sa.Column("created_at", TS, nullable=False),
    sa.UniqueConstraint("tenant_id", "message_id", "shadow_version", name="uq_shadow_decisions_key"),
    sa.Index("ix_shadow_decisions_report", "tenant_id", "created_at"),
)


@dataclass(frozen=True)
class FinalVerdict:
    """A person's last word on a message: uphold (it violates) or overturn (it does not)."""

    verdict: str
    kind: str
    resolved_at: datetime


class ShadowDecisions:
    def __init__(self, database: Database) -> None:
        self.db = database

    @classmethod
    def for_engine(cls, engine: sa.engine.Engine) -> ShadowDecisions:
        return cls(Database(engine))

    def save_many(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert shadow rows; a (tenant, message, version) already recorded is left as it was.
        Returns how many were new."""
        if not rows:
            return 0
        with self.db.engine.begin() as conn:
            result = conn.execute(
                self.db.insert(shadow_decisions).on_conflict_do_nothing().returning(shadow_decisions.c.id), list(rows)
            )
            return len(result.all())

    def rows(self, tenant_id: str | None = None, since: datetime | None = None,
             version: str | None = None) -> list[dict[str, Any]]:
        """Shadow rows, oldest first, optionally for one tenant, since a time, for one candidate."""
        c = shadow_decisions.c
        q = sa.select(shadow_decisions)
        if tenant_id is not None:
            q = q.where(c.tenant_id == tenant_id)
        if since is not None:
            q = q.where(c.created_at >= since)
        if version is not None:
            q = q.where(c.shadow_version == version)
        with self.db.engine.connect() as conn:
            out = []
            for r in conn.execute(q.order_by(c.id)).mappings():
                row = dict(r)
                row["created_at"] = aware(row["created_at"])
                out.append(row)
            return out

    def final_verdicts(self, tenant_id: str | None = None) -> dict[tuple[str, str], FinalVerdict]:
        """(tenant, message) -> the latest closed review verdict on it (a held decision, a report or
        an appeal; escalations and items still waiting for their blind second review excluded)."""
        t = review_items.c
        q = sa.select(t.tenant_id, t.message_id, t.verdict, t.kind, t.resolved_at).where(
            t.status == "resolved", t.verdict.in_(("uphold", "overturn")))
        if tenant_id is not None:
            q = q.where(t.tenant_id == tenant_id)
        out: dict[tuple[str, str], FinalVerdict] = {}
        with self.db.engine.connect() as conn:
            for r in conn.execute(q.order_by(t.resolved_at, t.id)):
                out[(r.tenant_id, r.message_id)] = FinalVerdict(r.verdict, r.kind, aware(r.resolved_at))  # type: ignore[arg-type]
        return out
