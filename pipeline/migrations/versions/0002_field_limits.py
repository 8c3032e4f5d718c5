"""field limits agree with the API

audit_log.subject was varchar(256) while it records webhook URLs of up to 2048 characters (the
API's limit and the webhooks.url column), so registering a long URL failed with a 500 on
PostgreSQL. Widen it to 2048.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch_alter_table: SQLite cannot ALTER COLUMN, so Alembic copies the table there; on
    # PostgreSQL it is a plain ALTER TABLE ... TYPE varchar(2048) (no rewrite for a wider varchar).
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.alter_column(
            "subject", existing_type=sa.String(length=256), type_=sa.String(length=2048), existing_nullable=True
        )


def downgrade() -> None:
    # Longer subjects would not fit the old column: cut them to 256 rather than fail the downgrade.
    audit_log = sa.table("audit_log", sa.column("subject", sa.String()))
    op.execute(
        audit_log.update()
        .where(sa.func.length(audit_log.c.subject) > 256)
        .values(subject=sa.func.substr(audit_log.c.subject, 1, 256))
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.alter_column(
            "subject", existing_type=sa.String(length=2048), type_=sa.String(length=256), existing_nullable=True
        )
