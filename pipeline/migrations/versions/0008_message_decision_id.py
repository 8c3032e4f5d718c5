"""messages.decision_id: find a queued message by the decision id `POST /v1/messages` answered with

Decision ids are derived from (tenant, message id) by a one-way hash, so without the column a
status lookup by decision id had to hash every pending message of the tenant. Existing rows are
backfilled in batches.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade() -> None:
    from pipeline.types import decision_id_for

    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("decision_id", sa.String(64), nullable=True))
    conn = op.get_bind()
    messages = sa.table(
        "messages",
        sa.column("id", sa.Integer),
        sa.column("tenant_id", sa.String),
        sa.column("message_id", sa.String),
        sa.column("decision_id", sa.String),
    )
    last = 0
    while True:
        rows = conn.execute(
            sa.select(messages.c.id, messages.c.tenant_id, messages.c.message_id)
            .where(messages.c.id > last)
            .order_by(messages.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        for r in rows:
            conn.execute(
                messages.update()
                .where(messages.c.id == r.id)
                .values(decision_id=decision_id_for(r.tenant_id, r.message_id))
            )
        last = rows[-1].id
    op.create_index("ix_messages_tenant_decision", "messages", ["tenant_id", "decision_id"])


def downgrade() -> None:
    op.drop_index("ix_messages_tenant_decision", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("decision_id")
