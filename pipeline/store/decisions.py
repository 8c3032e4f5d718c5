"""Decisions and their revisions, written with their outbox events in one transaction.

One decision per (tenant, message): a message processed twice (a worker killed mid-task, Redis
losing a task and the sweeper re-sending it) is still decided once. A later outcome for the same
message (an image verdict, a spam-wave cluster, a reviewer, an appeal, a tenant's override) is the
next *revision* of that decision: the `decisions` row holds the current one, `decision_revisions`
every one, and each revision gets one outbox event per sink in the same transaction, so no
revision can exist without its deliveries, and none can be delivered that was not committed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline import db
from pipeline.store.audit import write_audit
from pipeline.store.engine import Database, aware, now
from pipeline.store.outbox import OutboxRouter, write_events
from pipeline.types import Decision


@dataclass(frozen=True)
class RevisionRecord:
    revision: int
    cause: str
    actor: str
    action: str
    created_at: datetime
    decision: Decision


@dataclass(frozen=True)
class DecisionPage:
    items: list[Decision]
    next_cursor: str | None


def encode_cursor(created_at: datetime, decision_id: str) -> str:
    raw = json.dumps([aware(created_at).isoformat(), decision_id])  # type: ignore[union-attr]
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a page ends at; ValueError for anything a client made up."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, did = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return datetime.fromisoformat(created), str(did)
    except Exception as exc:  # noqa: BLE001 - any malformed cursor is the caller's error
        raise ValueError("invalid cursor; pass back the next_cursor of a previous page") from exc


class Decisions:
    def __init__(self, database: Database, router: OutboxRouter) -> None:
        self.db = database
        self.router = router

    # ---- writing -------------------------------------------------------------------------------
    def save_many(
        self,
        items: Sequence[tuple[str, Decision]],
        *,
        actor: str = "system:pipeline",
        path: str = "async",
        request_ids: dict[str, str | None] | None = None,
    ) -> list[tuple[str, Decision]]:
        """Store first decisions in one transaction; returns those that were new.

        A decision that already exists for its (tenant, message) is left as it is. For the new
        ones, in the same transaction: the message is marked decided, revision 1 is recorded, the
        audit log names the scorer and policy versions, and each sink gets its outbox event. One
        transaction per batch: at hundreds of messages per second a transaction per decision
        costs more CPU than scoring.
        """
        if not items:
            return []
        # The same message answered twice in quick succession (a client retry on the sync path)
        # lands in one write-behind batch as two copies of one decision: keep the first, or the
        # second copy's revision 1 breaks the whole batch's transaction and loses all of it.
        first: dict[tuple[str, str], tuple[str, Decision]] = {}
        for t, d in items:
            first.setdefault((t, d.id), (t, d))
        items = list(first.values())
        ts = now()
        rows = [
            {
                "id": d.id,
                "tenant_id": t,
                "message_id": d.message_id,
                "guild_id": d.guild_id,
                "action": d.action.value,
                "payload": d.model_dump(mode="json"),
                "revision": 1,
                "created_at": ts,
                "updated_at": ts,
            }
            for t, d in items
        ]
        with self.db.engine.begin() as conn:
            result = conn.execute(
                self.db.insert(db.decisions).on_conflict_do_nothing().returning(db.decisions.c.id), rows
            )
            created_ids = {r.id for r in result}
            new = [(t, d) for t, d in items if d.id in created_ids]
            # Every message here has a decision now, new or not: one decided on the sync path and
            # then submitted to the async one must not stay pending (and be re-swept) forever.
            by_tenant: dict[str, list[str]] = {}
            for t, d in items:
                by_tenant.setdefault(t, []).append(d.message_id)
            m = db.messages.c
            for t, mids in by_tenant.items():
                conn.execute(
                    db.messages.update()
                    .where(m.tenant_id == t, m.message_id.in_(mids), m.status == "pending")
                    .values(status="decided", decided_at=ts)
                )
            if not new:
                return []
            conn.execute(
                db.decision_revisions.insert(),
                [self._revision_row(t, d, "initial", actor, ts) for t, d in new],
            )
            conn.execute(
                db.audit_log.insert(),
                [
                    {
                        "tenant_id": t,
                        "at": ts,
                        "actor": actor,
                        "event": "decision",
                        "subject": d.message_id,
                        "details": {
                            "decision_id": d.id,
                            "revision": 1,
                            "action": d.action.value,
                            "path": path,
                            "model_versions": d.model_versions,
                            "policy_version": d.policy_version,
                            "missing_signals": d.missing_signals,
                        },
                    }
                    for t, d in new
                ],
            )
            write_events(conn, self.router, [(t, d) for t, d in new], ts, request_ids)
        return new

    @staticmethod
    def _revision_row(tenant_id: str, d: Decision, cause: str, actor: str, ts: datetime) -> dict[str, Any]:
        return {
            "tenant_id": tenant_id,
            "decision_id": d.id,
            "message_id": d.message_id,
            "revision": d.revision,
            "cause": cause,
            "actor": actor,
            "action": d.action.value,
            "payload": d.model_dump(mode="json"),
            "created_at": ts,
        }

    def revise(
        self, tenant_id: str, decision: Decision, *, cause: str, actor: str, note: str | None = None,
        request_id: str | None = None,
    ) -> Decision:
        """Make `decision` the next revision of its message's decision (or its first, if none yet).

        The row is locked for the read-modify-write, so two revisions of one message (a reviewer
        and an image verdict at once) get consecutive numbers instead of colliding.
        """
        with self.db.engine.begin() as conn:
            return self.revise_in(conn, tenant_id, decision, cause=cause, actor=actor, note=note,
                                  request_id=request_id)

    def revise_in(
        self, conn: Connection, tenant_id: str, decision: Decision, *, cause: str, actor: str,
        note: str | None = None, request_id: str | None = None,
    ) -> Decision:
        """`revise` inside the caller's transaction: a change that causes the revision (a reviewer's
        verdict closing a review item) commits with it, or neither does."""
        ts = now()
        c = db.decisions.c
        q = sa.select(c.revision).where(c.tenant_id == tenant_id, c.message_id == decision.message_id)
        current = conn.execute(q.with_for_update() if self.db.is_postgres else q).scalar()
        revision = 1 if current is None else int(current) + 1
        new = decision.model_copy(update={"revision": revision, "decided_at": ts})
        payload = new.model_dump(mode="json")
        if current is None:
            conn.execute(
                db.decisions.insert().values(
                    id=new.id, tenant_id=tenant_id, message_id=new.message_id, guild_id=new.guild_id,
                    action=new.action.value, payload=payload, revision=1, created_at=ts, updated_at=ts,
                )
            )
            conn.execute(
                db.messages.update()
                .where(db.messages.c.tenant_id == tenant_id, db.messages.c.message_id == new.message_id)
                .values(status="decided", decided_at=ts)
            )
        else:
            conn.execute(
                db.decisions.update()
                .where(c.tenant_id == tenant_id, c.message_id == new.message_id)
                .values(action=new.action.value, payload=payload, revision=revision, updated_at=ts)
            )
        conn.execute(db.decision_revisions.insert().values(**self._revision_row(tenant_id, new, cause, actor, ts)))
        write_audit(
            conn, tenant_id, actor, "decision_revised" if revision > 1 else "decision", new.message_id,
            {"decision_id": new.id, "revision": revision, "cause": cause, "action": new.action.value,
             **({"note": note} if note else {})},
        )
        write_events(conn, self.router, [(tenant_id, new)], ts, {new.message_id: request_id})
        return new

    # ---- reading -------------------------------------------------------------------------------
    def get(self, tenant_id: str, decision_or_message_id: str) -> Decision | None:
        c = db.decisions.c
        with self.db.engine.connect() as conn:
            row = conn.execute(
                sa.select(c.payload).where(
                    c.tenant_id == tenant_id,
                    sa.or_(c.id == decision_or_message_id, c.message_id == decision_or_message_id),
                )
            ).first()
        return Decision.model_validate(row.payload) if row else None

    def revisions(self, tenant_id: str, decision_id: str) -> list[RevisionRecord]:
        r = db.decision_revisions.c
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                sa.select(db.decision_revisions)
                .where(r.tenant_id == tenant_id, sa.or_(r.decision_id == decision_id, r.message_id == decision_id))
                .order_by(r.revision)
            ).all()
        return [
            RevisionRecord(row.revision, row.cause, row.actor, row.action, aware(row.created_at),  # type: ignore[arg-type]
                           Decision.model_validate(row.payload))
            for row in rows
        ]

    def payload(self, decision_id: str, revision: int, conn: Connection | None = None) -> dict[str, Any] | None:
        """The decision as it was at `revision` (what that revision's webhook event carries)."""
        r = db.decision_revisions.c
        q = sa.select(r.payload).where(r.decision_id == decision_id, r.revision == revision)
        if conn is not None:
            row = conn.execute(q).first()
        else:
            with self.db.engine.connect() as c:
                row = c.execute(q).first()
        return dict(row.payload) if row else None

    def page(
        self,
        tenant_id: str,
        *,
        guild_id: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> DecisionPage:
        """Decisions oldest first (by when first decided), filtered, in pages: what a chat service
        reads to reconcile its own state after an outage. The cursor is keyset, so pages stay
        correct while new decisions arrive."""
        c = db.decisions.c
        q = sa.select(c.payload, c.created_at, c.id).where(c.tenant_id == tenant_id)
        if guild_id is not None:
            q = q.where(c.guild_id == guild_id)
        if action is not None:
            q = q.where(c.action == action)
        if since is not None:
            q = q.where(c.created_at >= since)
        if until is not None:
            q = q.where(c.created_at < until)
        if cursor:
            after_ts, after_id = decode_cursor(cursor)
            q = q.where(sa.or_(c.created_at > after_ts, sa.and_(c.created_at == after_ts, c.id > after_id)))
        with self.db.engine.connect() as conn:
            rows = conn.execute(q.order_by(c.created_at, c.id).limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        items = [Decision.model_validate(r.payload) for r in rows]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
        return DecisionPage(items, next_cursor)

    def count(self, tenant_id: str | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(db.decisions)
        if tenant_id:
            q = q.where(db.decisions.c.tenant_id == tenant_id)
        with self.db.engine.connect() as conn:
            return int(conn.execute(q).scalar() or 0)
