"""The store: tenants and keys, guild policies and lists, messages, decisions, audit, webhooks.

One class over SQLAlchemy Core that works on SQLite (embedded default) and PostgreSQL. The
guarantees the queue relies on live here, in unique constraints and conditional updates, not
in process memory:
- a message is stored once per (tenant, message id) before it is acknowledged to the caller;
- a decision is stored once per (tenant, message id), so a message processed twice (a worker
  killed mid-task, Redis losing and the sweeper re-sending a task) is still decided once;
- a webhook delivery row is created in the same transaction as the decision, so it cannot be lost.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline import db
from pipeline.guilds import GuildConfig, lists_from_json
from pipeline.policy import PLATFORM_DEFAULT, GuildPolicy
from pipeline.types import Decision, Message


def now() -> datetime:
    return datetime.now(UTC)


def _aware(ts: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything Heron compares is UTC."""
    if ts is None:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@dataclass(frozen=True)
class StoredMessage:
    row_id: int
    tenant_id: str
    message: Message
    status: str
    attempts: int


@dataclass(frozen=True)
class Delivery:
    id: int
    tenant_id: str
    decision_id: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    last_status_code: int | None


@dataclass(frozen=True)
class Webhook:
    tenant_id: str
    url: str
    secret: str


def make_engine(url: str) -> Engine:
    """An engine tuned for the backend: SQLite gets WAL and a busy timeout for concurrent threads."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Store:
    def __init__(self, engine: Engine, pepper: str = "heron-dev-pepper", cache_ttl_s: float = 2.0) -> None:
        self.engine = engine
        self._pepper = pepper.encode()
        self._cache_ttl = cache_ttl_s
        self._key_cache: dict[str, tuple[float, str | None]] = {}
        self._guild_cache: dict[tuple[str, str], tuple[float, GuildConfig | None]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, pepper: str = "heron-dev-pepper") -> Store:
        return cls(make_engine(url), pepper)

    # ---- health -------------------------------------------------------------------------------
    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def schema_revision(self) -> str | None:
        with self.engine.connect() as conn:
            try:
                return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            except sa.exc.DBAPIError:
                return None

    # ---- tenants and keys -----------------------------------------------------------------------
    def _hash_key(self, raw: str) -> str:
        return hmac.new(self._pepper, raw.encode(), hashlib.sha256).hexdigest()

    def ensure_tenant(self, name: str) -> str:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(db.tenants.c.id).where(db.tenants.c.name == name)).first()
            if row:
                return str(row.id)
            tenant_id = "t_" + secrets.token_hex(8)
            conn.execute(db.tenants.insert().values(id=tenant_id, name=name, created_at=now()))
            self._audit(conn, tenant_id, "system:cli", "tenant_created", name, {})
            return tenant_id

    def create_api_key(self, tenant_name: str) -> tuple[str, str]:
        """Create (or reuse) a tenant and issue a new key; only the key's HMAC is stored."""
        tenant_id = self.ensure_tenant(tenant_name)
        raw = "hk_" + secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(
                db.api_keys.insert().values(
                    tenant_id=tenant_id, key_hash=self._hash_key(raw), prefix=raw[:10], created_at=now()
                )
            )
            self._audit(conn, tenant_id, "system:cli", "api_key_created", raw[:10], {})
        return tenant_id, raw

    def _fresh(self, cache: dict[Any, tuple[float, Any]], key: Any) -> tuple[bool, Any]:
        """(True, value) when `key` is cached and younger than the TTL; never touches the database."""
        hit = cache.get(key)
        if hit and time.monotonic() - hit[0] < self._cache_ttl:
            return True, hit[1]
        return False, None

    def cached_tenant(self, raw: str) -> tuple[bool, str | None]:
        """The tenant for an API key if it is in the short-lived cache: lets an event loop answer
        most requests without a thread hop, and call `tenant_for_key` in a thread otherwise."""
        return self._fresh(self._key_cache, raw)

    def cached_guild(self, tenant_id: str, guild_id: str) -> tuple[bool, GuildConfig | None]:
        """Like `cached_tenant`, for `guild`."""
        return self._fresh(self._guild_cache, (tenant_id, guild_id))

    def tenant_for_key(self, raw: str) -> str | None:
        t = time.monotonic()
        fresh, cached = self.cached_tenant(raw)
        if fresh:
            return cached  # type: ignore[no-any-return]
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(db.api_keys.c.tenant_id).where(
                    db.api_keys.c.key_hash == self._hash_key(raw), db.api_keys.c.revoked_at.is_(None)
                )
            ).first()
        tenant = str(row.tenant_id) if row else None
        with self._lock:
            if len(self._key_cache) > 10_000:
                self._key_cache.clear()
            self._key_cache[raw] = (t, tenant)
        return tenant

    # ---- guilds -----------------------------------------------------------------------------------
    def guild(self, tenant_id: str, guild_id: str) -> GuildConfig | None:
        """The guild's config, or None if the tenant never registered it. Cached briefly."""
        key = (tenant_id, guild_id)
        t = time.monotonic()
        fresh, cached = self._fresh(self._guild_cache, key)
        if fresh:
            return cached  # type: ignore[no-any-return]
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(db.guilds).where(db.guilds.c.tenant_id == tenant_id, db.guilds.c.guild_id == guild_id)
            ).first()
        config = self._guild_from_row(row) if row else None
        with self._lock:
            self._guild_cache[key] = (t, config)
        return config

    @staticmethod
    def _guild_from_row(row: Any) -> GuildConfig:
        policy = GuildPolicy.model_validate(row.policy) if row.policy else PLATFORM_DEFAULT
        lists = lists_from_json(row.lists or {}, row.lists_version)
        return GuildConfig(row.guild_id, policy, row.policy_version, lists)

    def upsert_guild(
        self,
        tenant_id: str,
        guild_id: str,
        *,
        policy: GuildPolicy | None = None,
        lists: dict[str, Any] | None = None,
        actor: str = "api",
    ) -> GuildConfig:
        """Create the guild if new; a given policy or lists becomes a new version, kept in history."""
        ts = now()
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(db.guilds)
                .where(db.guilds.c.tenant_id == tenant_id, db.guilds.c.guild_id == guild_id)
                .with_for_update()
            ).first()
            if row is None:
                conn.execute(
                    db.guilds.insert().values(
                        tenant_id=tenant_id,
                        guild_id=guild_id,
                        policy=None,
                        policy_version=0,
                        lists=None,
                        lists_version=0,
                        created_at=ts,
                        updated_at=ts,
                    )
                )
                self._audit(conn, tenant_id, actor, "guild_created", guild_id, {})
                policy_version, lists_version = 0, 0
            else:
                policy_version, lists_version = row.policy_version, row.lists_version
            values: dict[str, Any] = {"updated_at": ts}
            versions = {"policy": policy_version, "lists": lists_version}
            bodies = {"policy": policy.model_dump(mode="json") if policy is not None else None, "lists": lists}
            for kind, body in bodies.items():
                if body is None:
                    continue
                version = versions[kind] + 1
                values.update({kind: body, f"{kind}_version": version})
                conn.execute(
                    db.policy_versions.insert().values(
                        tenant_id=tenant_id, guild_id=guild_id, kind=kind, version=version, body=body, created_at=ts
                    )
                )
                self._audit(conn, tenant_id, actor, f"{kind}_updated", guild_id, {"version": version})
            conn.execute(
                db.guilds.update()
                .where(db.guilds.c.tenant_id == tenant_id, db.guilds.c.guild_id == guild_id)
                .values(**values)
            )
            row = conn.execute(
                sa.select(db.guilds).where(db.guilds.c.tenant_id == tenant_id, db.guilds.c.guild_id == guild_id)
            ).one()
        config = self._guild_from_row(row)
        with self._lock:
            self._guild_cache[(tenant_id, guild_id)] = (time.monotonic(), config)
        return config

    def guild_row(self, tenant_id: str, guild_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(db.guilds).where(db.guilds.c.tenant_id == tenant_id, db.guilds.c.guild_id == guild_id)
            ).first()
        return dict(row._mapping) if row else None

    def policy_history(self, tenant_id: str, guild_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(db.policy_versions)
                .where(db.policy_versions.c.tenant_id == tenant_id, db.policy_versions.c.guild_id == guild_id)
                .order_by(db.policy_versions.c.id)
            ).all()
        return [dict(r._mapping) for r in rows]

    # ---- messages -----------------------------------------------------------------------------------
    def insert_message(self, tenant_id: str, message: Message) -> tuple[int, bool]:
        """Store an incoming message; returns (row id, created). A repeat id is not stored twice."""
        return self.insert_messages([(tenant_id, message)])[0]

    def insert_messages(self, items: list[tuple[str, Message]]) -> list[tuple[int, bool]]:
        """Store many incoming messages in one transaction (group commit); (row id, created) each."""
        if not items:
            return []
        ts = now()
        rows = [
            {
                "tenant_id": t,
                "message_id": m.id,
                "guild_id": m.guild_id,
                "payload": m.model_dump(mode="json"),
                "status": "pending",
                "attempts": 0,
                "received_at": ts,
            }
            for t, m in items
        ]
        c = db.messages.c
        with self.engine.begin() as conn:
            result = conn.execute(
                self._insert(db.messages).on_conflict_do_nothing().returning(c.id, c.tenant_id, c.message_id), rows
            )
            created = {(r.tenant_id, r.message_id): int(r.id) for r in result}
            missing = [(t, m.id) for t, m in items if (t, m.id) not in created]
            existing: dict[tuple[str, str], int] = {}
            for t in {t for t, _ in missing}:
                mids = [mid for tt, mid in missing if tt == t]
                for r in conn.execute(sa.select(c.id, c.message_id).where(c.tenant_id == t, c.message_id.in_(mids))):
                    existing[(t, r.message_id)] = int(r.id)
        out: list[tuple[int, bool]] = []
        seen: set[tuple[str, str]] = set()
        for t, m in items:
            key = (t, m.id)
            if key in created and key not in seen:
                out.append((created[key], True))
                seen.add(key)
            else:
                out.append((created.get(key) or existing[key], False))
        return out

    def mark_enqueued(self, row_ids: list[int]) -> None:
        if not row_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(db.messages.update().where(db.messages.c.id.in_(row_ids)).values(enqueued_at=now()))

    def load_messages(self, row_ids: list[int]) -> list[StoredMessage]:
        with self.engine.begin() as conn:
            conn.execute(
                db.messages.update().where(db.messages.c.id.in_(row_ids)).values(attempts=db.messages.c.attempts + 1)
            )
            rows = conn.execute(sa.select(db.messages).where(db.messages.c.id.in_(row_ids))).all()
        return [StoredMessage(r.id, r.tenant_id, Message.model_validate(r.payload), r.status, r.attempts) for r in rows]

    def claim_stale_pending(self, older_than_s: float, limit: int = 500) -> list[int]:
        """Pending messages whose task may have been lost; claimed by bumping enqueued_at."""
        cutoff = now() - timedelta(seconds=older_than_s)
        claimed: list[int] = []
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(db.messages.c.id, db.messages.c.enqueued_at)
                .where(
                    db.messages.c.status == "pending",
                    sa.or_(db.messages.c.enqueued_at.is_(None), db.messages.c.enqueued_at < cutoff),
                    db.messages.c.received_at < cutoff,
                )
                .order_by(db.messages.c.id)
                .limit(limit)
            ).all()
            for r in rows:
                cond = (
                    db.messages.c.enqueued_at.is_(None)
                    if r.enqueued_at is None
                    else db.messages.c.enqueued_at == r.enqueued_at
                )
                res = conn.execute(db.messages.update().where(db.messages.c.id == r.id, cond).values(enqueued_at=now()))
                if res.rowcount == 1:
                    claimed.append(int(r.id))
        return claimed

    def message_status(self, tenant_id: str, message_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(db.messages.c.status).where(
                    db.messages.c.tenant_id == tenant_id, db.messages.c.message_id == message_id
                )
            ).scalar()

    # ---- decisions ------------------------------------------------------------------------------------
    def _insert(self, table: sa.Table) -> Any:
        """An INSERT that can say ON CONFLICT DO NOTHING on this backend."""
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
        return dialect_insert(table)

    def save_decision(
        self, tenant_id: str, decision: Decision, actor: str = "system:pipeline", deliver: bool = True
    ) -> tuple[Decision, bool]:
        """Store one decision once; if one exists for this message, return it unchanged (created=False)."""
        created = self.save_decisions([(tenant_id, decision)], deliver=deliver, actor=actor)
        if created:
            return decision, True
        existing = self.get_decision(tenant_id, decision.message_id)
        return (existing or decision), False

    def save_decisions(
        self,
        items: list[tuple[str, Decision]],
        *,
        deliver: bool = True,
        actor: str = "system:pipeline",
        path: str = "async",
    ) -> list[tuple[str, Decision]]:
        """Store decisions in one transaction; returns those that were new.

        A decision that already exists for its (tenant, message) is left as it is: a message
        processed twice is decided once. For the new ones, in the same transaction, the message
        is marked decided, the audit log gets a row naming the scorer and policy versions, and,
        with `deliver`, a webhook delivery is queued for tenants that have a webhook. One
        transaction per batch: at hundreds of messages per second a transaction per decision
        costs more CPU than scoring.
        """
        if not items:
            return []
        ts = now()
        rows = [
            {
                "id": d.id,
                "tenant_id": t,
                "message_id": d.message_id,
                "guild_id": d.guild_id,
                "action": d.action.value,
                "payload": d.model_dump(mode="json"),
                "created_at": ts,
            }
            for t, d in items
        ]
        with self.engine.begin() as conn:
            result = conn.execute(
                self._insert(db.decisions).on_conflict_do_nothing().returning(db.decisions.c.id), rows
            )
            created_ids = {r.id for r in result}
            new = [(t, d) for t, d in items if d.id in created_ids]
            if not new:
                return []
            by_tenant: dict[str, list[str]] = {}
            for t, d in new:
                by_tenant.setdefault(t, []).append(d.message_id)
            for t, mids in by_tenant.items():
                conn.execute(
                    db.messages.update()
                    .where(db.messages.c.tenant_id == t, db.messages.c.message_id.in_(mids))
                    .values(status="decided", decided_at=ts)
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
            if deliver:
                hooked = set(
                    conn.execute(
                        sa.select(db.webhooks.c.tenant_id).where(db.webhooks.c.tenant_id.in_(list(by_tenant)))
                    ).scalars()
                )
                deliveries = [
                    {
                        "tenant_id": t,
                        "decision_id": d.id,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": ts,
                        "created_at": ts,
                    }
                    for t, d in new
                    if t in hooked
                ]
                if deliveries:
                    conn.execute(db.deliveries.insert(), deliveries)
        return new

    def save_sync_decisions(self, items: list[tuple[str, Decision]]) -> int:
        """Bulk-store decisions already returned to their callers (no webhook: they have the answer)."""
        return len(self.save_decisions(items, deliver=False, path="sync"))

    def get_decision(self, tenant_id: str, decision_or_message_id: str) -> Decision | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(db.decisions.c.payload).where(
                    db.decisions.c.tenant_id == tenant_id,
                    sa.or_(
                        db.decisions.c.id == decision_or_message_id, db.decisions.c.message_id == decision_or_message_id
                    ),
                )
            ).first()
        return Decision.model_validate(row.payload) if row else None

    def count_decisions(self, tenant_id: str | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(db.decisions)
        if tenant_id:
            q = q.where(db.decisions.c.tenant_id == tenant_id)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar() or 0)

    # ---- audit ----------------------------------------------------------------------------------------
    def _audit(
        self,
        conn: Connection,
        tenant_id: str | None,
        actor: str,
        event: str,
        subject: str | None,
        details: dict[str, Any],
    ) -> None:
        conn.execute(
            db.audit_log.insert().values(
                tenant_id=tenant_id, at=now(), actor=actor, event=event, subject=subject, details=details
            )
        )

    def audit(
        self, tenant_id: str | None, actor: str, event: str, subject: str | None, details: dict[str, Any]
    ) -> None:
        with self.engine.begin() as conn:
            self._audit(conn, tenant_id, actor, event, subject, details)

    def audit_entries(self, tenant_id: str, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(db.audit_log)
                .where(db.audit_log.c.tenant_id == tenant_id)
                .order_by(db.audit_log.c.id.desc())
                .limit(limit)
            ).all()
        return [dict(r._mapping) for r in rows]

    # ---- webhooks and deliveries ----------------------------------------------------------------------
    def set_webhook(self, tenant_id: str, url: str, actor: str = "api") -> Webhook:
        """Register or replace the tenant's webhook; a new signing secret is issued each time."""
        secret = "whsec_" + secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(db.webhooks.delete().where(db.webhooks.c.tenant_id == tenant_id))
            conn.execute(db.webhooks.insert().values(tenant_id=tenant_id, url=url, secret=secret, created_at=now()))
            self._audit(conn, tenant_id, actor, "webhook_registered", url, {})
        return Webhook(tenant_id, url, secret)

    def get_webhook(self, tenant_id: str) -> Webhook | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.webhooks).where(db.webhooks.c.tenant_id == tenant_id)).first()
        return Webhook(row.tenant_id, row.url, row.secret) if row else None

    def delete_webhook(self, tenant_id: str) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(db.webhooks.delete().where(db.webhooks.c.tenant_id == tenant_id))
        return bool(res.rowcount)

    @staticmethod
    def _delivery(row: Any) -> Delivery:
        return Delivery(
            row.id,
            row.tenant_id,
            row.decision_id,
            row.status,
            row.attempts,
            _aware(row.next_attempt_at) or now(),
            row.last_error,
            row.last_status_code,
        )

    def claim_due_deliveries(self, limit: int = 50, lease_s: float = 60.0) -> list[Delivery]:
        """Pending deliveries whose time has come, leased so that two workers never send one at once."""
        ts = now()
        claimed: list[Delivery] = []
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(db.deliveries)
                .where(db.deliveries.c.status == "pending", db.deliveries.c.next_attempt_at <= ts)
                .order_by(db.deliveries.c.next_attempt_at)
                .limit(limit)
            ).all()
            for r in rows:
                res = conn.execute(
                    db.deliveries.update()
                    .where(
                        db.deliveries.c.id == r.id,
                        db.deliveries.c.next_attempt_at == r.next_attempt_at,
                        db.deliveries.c.status == "pending",
                    )
                    .values(next_attempt_at=ts + timedelta(seconds=lease_s))
                )
                if res.rowcount == 1:
                    claimed.append(self._delivery(r))
        return claimed

    def record_attempt(
        self,
        delivery_id: int,
        *,
        ok: bool,
        status_code: int | None,
        error: str | None,
        next_attempt_at: datetime | None,
    ) -> None:
        """Record one attempt: delivered, retry at `next_attempt_at`, or dead when that is None."""
        values: dict[str, Any] = {
            "attempts": db.deliveries.c.attempts + 1,
            "last_status_code": status_code,
            "last_error": error,
        }
        if ok:
            values.update(status="delivered", delivered_at=now())
        elif next_attempt_at is None:
            values.update(status="dead")
        else:
            values.update(next_attempt_at=next_attempt_at)
        with self.engine.begin() as conn:
            conn.execute(db.deliveries.update().where(db.deliveries.c.id == delivery_id).values(**values))

    def deliveries(self, tenant_id: str, status: str | None = None, limit: int = 100) -> list[Delivery]:
        q = sa.select(db.deliveries).where(db.deliveries.c.tenant_id == tenant_id)
        if status:
            q = q.where(db.deliveries.c.status == status)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(db.deliveries.c.id.desc()).limit(limit)).all()
        return [self._delivery(r) for r in rows]

    def redeliver(self, tenant_id: str, decision_id: str, actor: str = "api") -> Delivery | None:
        """Put a (dead or delivered) delivery back in the queue; creates one if the hook came later."""
        with self.engine.begin() as conn:
            exists = conn.execute(
                sa.select(db.decisions.c.id).where(
                    db.decisions.c.tenant_id == tenant_id, db.decisions.c.id == decision_id
                )
            ).first()
            if not exists:
                return None
            row = conn.execute(sa.select(db.deliveries).where(db.deliveries.c.decision_id == decision_id)).first()
            if row is None:
                conn.execute(
                    db.deliveries.insert().values(
                        tenant_id=tenant_id,
                        decision_id=decision_id,
                        status="pending",
                        attempts=0,
                        next_attempt_at=now(),
                        created_at=now(),
                    )
                )
            else:
                conn.execute(
                    db.deliveries.update()
                    .where(db.deliveries.c.id == row.id)
                    .values(status="pending", attempts=0, next_attempt_at=now(), last_error=None)
                )
            self._audit(conn, tenant_id, actor, "redeliver", decision_id, {})
            row = conn.execute(sa.select(db.deliveries).where(db.deliveries.c.decision_id == decision_id)).one()
        return self._delivery(row)

    def decision_payload(self, decision_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.decisions.c.payload).where(db.decisions.c.id == decision_id)).first()
        return dict(row.payload) if row else None
