"""The audit log: who did what to which subject, written in the transaction of the change itself."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline import db
from pipeline.store.engine import Database, now


def write_audit(
    conn: Connection, tenant_id: str | None, actor: str, event: str, subject: str | None, details: dict[str, Any]
) -> None:
    """One audit row inside the caller's transaction, so a change and its record commit together."""
    conn.execute(
        db.audit_log.insert().values(
            tenant_id=tenant_id, at=now(), actor=actor, event=event, subject=subject, details=details
        )
    )


class AuditLog:
    def __init__(self, database: Database) -> None:
        self.db = database

    def entries(
        self, tenant_id: str, limit: int = 100, event: str | None = None, subject: str | None = None
    ) -> list[dict[str, Any]]:
        q = sa.select(db.audit_log).where(db.audit_log.c.tenant_id == tenant_id)
        if event:
            q = q.where(db.audit_log.c.event == event)
        if subject:
            q = q.where(db.audit_log.c.subject == subject)
        with self.db.engine.connect() as conn:
            rows = conn.execute(q.order_by(db.audit_log.c.id.desc()).limit(limit)).all()
        return [dict(r._mapping) for r in rows]
