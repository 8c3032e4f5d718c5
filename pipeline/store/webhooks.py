"""Each tenant's webhook: one URL and its signing secret."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from pipeline import db
from pipeline.store.audit import write_audit
from pipeline.store.engine import Database, now


@dataclass(frozen=True)
class Webhook:
    tenant_id: str
    url: str
    secret: str


class Webhooks:
    def __init__(self, database: Database) -> None:
        self.db = database

    def set(self, tenant_id: str, url: str, actor: str = "api") -> Webhook:
        """Register or replace the tenant's webhook; a new signing secret is issued each time."""
        secret = "whsec_" + secrets.token_urlsafe(32)
        with self.db.engine.begin() as conn:
            conn.execute(db.webhooks.delete().where(db.webhooks.c.tenant_id == tenant_id))
            conn.execute(db.webhooks.insert().values(tenant_id=tenant_id, url=url, secret=secret, created_at=now()))
            write_audit(conn, tenant_id, actor, "webhook_registered", url, {})
        return Webhook(tenant_id, url, secret)

    def get(self, tenant_id: str) -> Webhook | None:
        with self.db.engine.connect() as conn:
            row = conn.execute(sa.select(db.webhooks).where(db.webhooks.c.tenant_id == tenant_id)).first()
        return Webhook(row.tenant_id, row.url, row.secret) if row else None

    def get_many(self, tenant_ids: list[str]) -> dict[str, Webhook]:
        if not tenant_ids:
            return {}
        with self.db.engine.connect() as conn:
            rows = conn.execute(sa.select(db.webhooks).where(db.webhooks.c.tenant_id.in_(tenant_ids))).all()
        return {r.tenant_id: Webhook(r.tenant_id, r.url, r.secret) for r in rows}

    def delete(self, tenant_id: str, actor: str = "api") -> bool:
        with self.db.engine.begin() as conn:
            res = conn.execute(db.webhooks.delete().where(db.webhooks.c.tenant_id == tenant_id))
            if res.rowcount:
                write_audit(conn, tenant_id, actor, "webhook_deleted", None, {})
        return bool(res.rowcount)
