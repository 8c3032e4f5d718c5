"""Migration 0002 widens audit_log.subject on an existing database, and downgrades without loss of rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from pipeline.migrate import alembic_config, upgrade


def _insert(engine: sa.Engine, subject: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO audit_log (tenant_id, at, actor, event, subject) VALUES ('t', :at, 'a', 'e', :s)"),
            {"at": datetime.now(UTC), "s": subject},
        )


def _subjects(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text("SELECT subject FROM audit_log ORDER BY id"))]


def test_0002_widens_the_audit_subject_and_downgrades_by_truncating(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    try:
        upgrade(database_url, "0001")
        _insert(engine, "g" * 256)
        long_url = "https://chat.example/" + "a" * 2027
        if engine.dialect.name == "postgresql":  # only PostgreSQL enforces the width
            with pytest.raises(sa.exc.DataError):
                _insert(engine, long_url)
        upgrade(database_url, "0002")
        _insert(engine, long_url)
        assert _subjects(engine) == ["g" * 256, long_url]

        command.downgrade(alembic_config(database_url), "0001")
        assert _subjects(engine) == ["g" * 256, long_url[:256]]
        upgrade(database_url, "0002")
        _insert(engine, long_url)
        assert len(_subjects(engine)) == 3
    finally:
        engine.dispose()


def test_0008_backfills_decision_ids_so_a_queued_message_is_found_by_its_decision_id(database_url: str) -> None:
    """Messages stored before 0008 have no decision id; after it, the id the API answered with finds them."""
    from pipeline.store import Store
    from pipeline.types import decision_id_for

    engine = sa.create_engine(database_url)
    try:
        upgrade(database_url, "0007")
        with engine.begin() as conn:
            for mid in ("old-1", "old-2"):
                conn.execute(
                    sa.text(
                        "INSERT INTO messages (tenant_id, message_id, payload, status, attempts, received_at) "
                        "VALUES ('t', :m, :p, 'pending', 0, :at)"
                    ),
                    {"m": mid, "p": json.dumps({"id": mid, "text": "hi"}), "at": datetime.now(UTC)},
                )
        upgrade(database_url, "head")
        store = Store.from_url(database_url)
        with engine.connect() as conn:
            got = dict(conn.execute(sa.text("SELECT message_id, decision_id FROM messages")).all())
        assert got == {m: decision_id_for("t", m) for m in ("old-1", "old-2")}
        assert store.messages.status("t", decision_id_for("t", "old-2")) == "pending"
        assert store.messages.status("t", decision_id_for("other-tenant", "old-2")) is None
        store.engine.dispose()
        command.downgrade(alembic_config(database_url), "0007")
        upgrade(database_url, "head")
    finally:
        engine.dispose()
