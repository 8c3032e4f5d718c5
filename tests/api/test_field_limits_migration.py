"""Migration 0002 widens audit_log.subject on an existing database, and downgrades without loss of rows."""

from __future__ import annotations

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
