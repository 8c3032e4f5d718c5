"""The store, by role: tenants, guilds, messages, decisions (+ revisions), outbox, webhooks, audit.

One `Store` holds one repository per role over a shared engine (SQLite for the embedded default,
PostgreSQL in production). The guarantees the queue relies on live in the database, in unique
constraints, conditional updates and row locks, not in process memory:
- a message is stored once per (tenant, message id) before it is acknowledged to the caller;
- a decision is stored once per (tenant, message id); later outcomes are numbered revisions;
- each revision's outbox events are written in the revision's own transaction.

Callers that need only one role take that repository (or a Protocol in `protocols.py`), so the
service and the sinks never import SQLAlchemy.
"""

from __future__ import annotations

import sqlalchemy as sa

from pipeline.store.audit import AuditLog
from pipeline.store.banks import Banks
from pipeline.store.decisions import DecisionPage, Decisions, RevisionRecord
from pipeline.store.engine import Database, make_engine, now
from pipeline.store.guilds import Guilds
from pipeline.store.messages import Messages, StoredMessage
from pipeline.store.outbox import Attempt, Outbox, OutboxEvent, OutboxRouter
from pipeline.store.tenants import Tenants
from pipeline.store.webhooks import Webhook, Webhooks

__all__ = [
    "Attempt", "Banks", "DecisionPage", "Decisions", "Guilds", "Messages", "Outbox", "OutboxEvent", "OutboxRouter",
    "RevisionRecord", "Store", "StoredMessage", "Tenants", "Webhook", "Webhooks", "make_engine", "now",
]


class Store:
    def __init__(self, engine: sa.engine.Engine, pepper: str = "heron-dev-pepper", cache_ttl_s: float = 2.0,
                 router: OutboxRouter | None = None) -> None:
        self.engine = engine
        database = Database(engine)
        self.tenants = Tenants(database, pepper, cache_ttl_s)
        self.guilds = Guilds(database, cache_ttl_s)
        self.messages = Messages(database)
        self.outbox = Outbox(database)
        self.decisions = Decisions(database, router or OutboxRouter())
        self.webhooks = Webhooks(database)
        self.audit = AuditLog(database)
        self.banks = Banks(database)

    @classmethod
    def from_url(cls, url: str, pepper: str = "heron-dev-pepper") -> Store:
        return cls(make_engine(url), pepper)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def schema_revision(self) -> str | None:
        with self.engine.connect() as conn:
            try:
                return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            except sa.exc.DBAPIError:
                return None

    def dispose(self) -> None:
        self.engine.dispose()
