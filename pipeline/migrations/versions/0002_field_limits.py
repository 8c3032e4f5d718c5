"""field limits agree: audit_log.subject holds any subject the API accepts

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.alter_column("subject", type_=sa.Text(), existing_type=sa.String(256), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.alter_column("subject", type_=sa.String(256), existing_type=sa.Text(), existing_nullable=True)
