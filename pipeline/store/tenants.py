"""Tenants and their API keys. Only a keyed hash (HMAC with a server pepper) of a key is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading

import sqlalchemy as sa
from cachetools import TTLCache

from pipeline import db
from pipeline.store.audit import write_audit
from pipeline.store.engine import Database, now

_MISSING = object()


class Tenants:
    def __init__(self, database: Database, pepper: str, cache_ttl_s: float = 2.0) -> None:
        self.db = database
        self._pepper = pepper.encode()
        # Short-lived: a revoked key stops working within the TTL, and most requests skip the database.
        self._cache: TTLCache[str, str | None] = TTLCache(maxsize=10_000, ttl=cache_ttl_s)
        self._lock = threading.Lock()

    def _hash_key(self, raw: str) -> str:
        return hmac.new(self._pepper, raw.encode(), hashlib.sha256).hexdigest()

    def ensure(self, name: str) -> str:
        with self.db.engine.begin() as conn:
            row = conn.execute(sa.select(db.tenants.c.id).where(db.tenants.c.name == name)).first()
            if row:
                return str(row.id)
            tenant_id = "t_" + secrets.token_hex(8)
            conn.execute(db.tenants.insert().values(id=tenant_id, name=name, created_at=now()))
            write_audit(conn, tenant_id, "system:cli", "tenant_created", name, {})
            return tenant_id

    def id_for_name(self, name: str) -> str | None:
        """The tenant's id by its name (the CLI's --tenant), or None."""
        with self.db.engine.connect() as conn:
            row = conn.execute(sa.select(db.tenants.c.id).where(db.tenants.c.name == name)).first()
        return str(row.id) if row else None

    def create_api_key(self, tenant_name: str) -> tuple[str, str]:
        """Create (or reuse) a tenant and issue a new key; only the key's HMAC is stored."""
        tenant_id = self.ensure(tenant_name)
        raw = "hk_" + secrets.token_urlsafe(32)
        with self.db.engine.begin() as conn:
            conn.execute(
                db.api_keys.insert().values(
                    tenant_id=tenant_id, key_hash=self._hash_key(raw), prefix=raw[:10], created_at=now()
                )
            )
            write_audit(conn, tenant_id, "system:cli", "api_key_created", raw[:10], {})
        return tenant_id, raw

    def cached_tenant(self, raw: str) -> tuple[bool, str | None]:
        """(True, tenant) when the key was looked up in the last seconds: lets an event loop answer
        most requests without a thread hop, and call `tenant_for_key` in a thread otherwise."""
        with self._lock:
            hit = self._cache.get(raw, _MISSING)
        return (False, None) if hit is _MISSING else (True, hit)  # type: ignore[return-value]

    def tenant_for_key(self, raw: str) -> str | None:
        fresh, cached = self.cached_tenant(raw)
        if fresh:
            return cached
        with self.db.engine.connect() as conn:
            row = conn.execute(
                sa.select(db.api_keys.c.tenant_id).where(
                    db.api_keys.c.key_hash == self._hash_key(raw), db.api_keys.c.revoked_at.is_(None)
                )
            ).first()
        tenant = str(row.tenant_id) if row else None
        with self._lock:
            self._cache[raw] = tenant
        return tenant
