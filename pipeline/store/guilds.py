"""Guild policies and lists, each change a new version kept in history."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from cachetools import TTLCache

from pipeline import db
from pipeline.errors import Conflict
from pipeline.guilds import GuildConfig, lists_from_json
from pipeline.policy import PLATFORM_DEFAULT, GuildPolicy
from pipeline.store.audit import write_audit
from pipeline.store.engine import Database, now

_MISSING = object()


class Guilds:
    def __init__(self, database: Database, cache_ttl_s: float = 2.0) -> None:
        self.db = database
        # Short-lived so that a policy change reaches every process within the TTL.
        self._cache: TTLCache[tuple[str, str], GuildConfig | None] = TTLCache(maxsize=50_000, ttl=cache_ttl_s)
        self._lock = threading.Lock()

    def cached(self, tenant_id: str, guild_id: str) -> tuple[bool, GuildConfig | None]:
        """(True, config) when looked up in the last seconds (None: not registered); no database."""
        with self._lock:
            hit = self._cache.get((tenant_id, guild_id), _MISSING)
        return (False, None) if hit is _MISSING else (True, hit)  # type: ignore[return-value]

    def get(self, tenant_id: str, guild_id: str) -> GuildConfig | None:
        """The guild's config, or None if the tenant never registered it. Cached briefly."""
        fresh, cached = self.cached(tenant_id, guild_id)
        if fresh:
            return cached
        with self.db.engine.connect() as conn:
            row = conn.execute(
                sa.select(db.guilds).where(db.guilds.c.tenant_id == tenant_id, db.guilds.c.guild_id == guild_id)
            ).first()
        config = self._from_row(row) if row else None
        with self._lock:
            self._cache[(tenant_id, guild_id)] = config
        return config

    @staticmethod
    def _from_row(row: Any) -> GuildConfig:
        policy = GuildPolicy.model_validate(row.policy) if row.policy else PLATFORM_DEFAULT
        lists = lists_from_json(row.lists or {}, row.lists_version)
        return GuildConfig(row.guild_id, policy, row.policy_version, lists)

    def upsert(
        self,
        tenant_id: str,
        guild_id: str,
        *,
        policy: GuildPolicy | None = None,
        lists: dict[str, Any] | Callable[[dict[str, Any] | None], dict[str, Any]] | None = None,
        actor: str = "api",
    ) -> GuildConfig:
        """Create the guild if new; a given policy or lists becomes a new version, kept in history.

        `lists` may be a function of the current lists (None for a new guild): it runs inside the
        transaction that holds the guild's row, so a read-modify-write (adding one blocked link)
        never loses a concurrent writer's change; after a lost race it runs again on the winner's.

        Two writers of one guild can read the same current version (SQLite has no row locks, and
        a brand-new guild has no row to lock yet); the loser's insert hits the unique version key,
        and reading the version again settles it. After three lost races: `Conflict`."""
        for attempt in range(3):
            try:
                return self._upsert_once(tenant_id, guild_id, policy=policy, lists=lists, actor=actor)
            except sa.exc.IntegrityError:
                if attempt == 2:
                    raise Conflict(f"guild {guild_id!r} is being changed by another request; retry",
                                   code="concurrent_update") from None
        raise AssertionError("unreachable")

    def _upsert_once(
        self,
        tenant_id: str,
        guild_id: str,
        *,
        policy: GuildPolicy | None,
        lists: dict[str, Any] | Callable[[dict[str, Any] | None], dict[str, Any]] | None,
        actor: str,
    ) -> GuildConfig:
        ts = now()
        g = db.guilds.c
        with self.db.engine.begin() as conn:
            row = conn.execute(
                sa.select(db.guilds).where(g.tenant_id == tenant_id, g.guild_id == guild_id).with_for_update()
            ).first()
            if row is None:
                conn.execute(
                    db.guilds.insert().values(
                        tenant_id=tenant_id, guild_id=guild_id, policy=None, policy_version=0, lists=None,
                        lists_version=0, created_at=ts, updated_at=ts,
                    )
                )
                write_audit(conn, tenant_id, actor, "guild_created", guild_id, {})
                policy_version, lists_version = 0, 0
            else:
                policy_version, lists_version = row.policy_version, row.lists_version
            if callable(lists):
                lists = lists(row.lists if row is not None else None)
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
                write_audit(conn, tenant_id, actor, f"{kind}_updated", guild_id, {"version": version})
            conn.execute(db.guilds.update().where(g.tenant_id == tenant_id, g.guild_id == guild_id).values(**values))
            row = conn.execute(sa.select(db.guilds).where(g.tenant_id == tenant_id, g.guild_id == guild_id)).one()
        config = self._from_row(row)
        with self._lock:
            self._cache[(tenant_id, guild_id)] = config
        return config

    def row(self, tenant_id: str, guild_id: str) -> dict[str, Any] | None:
        with self.db.engine.connect() as conn:
            row = conn.execute(
                sa.select(db.guilds).where(db.guilds.c.tenant_id == tenant_id, db.guilds.c.guild_id == guild_id)
            ).first()
        return dict(row._mapping) if row else None

    def history(self, tenant_id: str, guild_id: str) -> list[dict[str, Any]]:
        pv = db.policy_versions.c
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                sa.select(db.policy_versions)
                .where(pv.tenant_id == tenant_id, pv.guild_id == guild_id)
                .order_by(pv.id)
            ).all()
        return [dict(r._mapping) for r in rows]
