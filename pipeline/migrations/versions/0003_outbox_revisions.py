"""revisable decisions and a transactional outbox per sink

Revision ID: 0003
Revises: 0002

`decisions` keeps one row per message (its current revision); `decision_revisions` keeps every
revision; `outbox` replaces `deliveries` with one row per (sink, decision, revision). Existing
decisions become revision 1 and existing deliveries become webhook outbox rows for revision 1,
attempts and all.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch_op:
        batch_op.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("updated_at", TS, nullable=True))
        batch_op.create_index("ix_decisions_created_at", ["created_at"], unique=False)
    with op.batch_alter_table("messages") as batch_op:
        batch_op.add_column(sa.Column("request_id", sa.String(128), nullable=True))

    op.create_table(
        "decision_revisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("decision_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("cause", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_decision_revisions"),
        sa.UniqueConstraint("decision_id", "revision", name="uq_decision_revisions_key"),
    )
    op.execute(
        "INSERT INTO decision_revisions (tenant_id, decision_id, message_id, revision, cause, actor, action, "
        "payload, created_at) SELECT tenant_id, id, message_id, 1, 'initial', 'system:pipeline', action, payload, "
        "created_at FROM decisions"
    )

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("sink", sa.String(32), nullable=False),
        sa.Column("decision_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("retry_from", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TS, nullable=True),
        sa.Column("leased_until", TS, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("dead_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("sink", "decision_id", "revision", name="uq_outbox_event"),
    )
    op.create_index("ix_outbox_tenant_id", "outbox", ["tenant_id"], unique=False)
    op.create_index("ix_outbox_due", "outbox", ["sink", "status", "tenant_id", "next_attempt_at"], unique=False)
    op.execute(
        "INSERT INTO outbox (tenant_id, sink, decision_id, message_id, revision, status, attempts, retry_from, "
        "next_attempt_at, last_error, last_status_code, created_at, delivered_at, dead_at) "
        "SELECT d.tenant_id, 'webhook', d.decision_id, c.message_id, 1, d.status, d.attempts, 0, "
        "CASE WHEN d.status = 'pending' THEN d.next_attempt_at ELSE NULL END, d.last_error, d.last_status_code, "
        "d.created_at, d.delivered_at, CASE WHEN d.status = 'dead' THEN d.next_attempt_at ELSE NULL END "
        "FROM deliveries d JOIN decisions c ON c.id = d.decision_id"
    )
    op.create_table(
        "outbox_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox_attempts"),
    )
    op.create_index("ix_outbox_attempts_outbox_id", "outbox_attempts", ["outbox_id"], unique=False)
    op.drop_table("deliveries")


def downgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("decision_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint("decision_id", name="uq_deliveries_decision_id"),
    )
    op.drop_table("outbox_attempts")
    op.drop_table("outbox")
    op.drop_table("decision_revisions")
    with op.batch_alter_table("messages") as batch_op:
        batch_op.drop_column("request_id")
    with op.batch_alter_table("decisions") as batch_op:
        batch_op.drop_index("ix_decisions_created_at")
        batch_op.drop_column("updated_at")
        batch_op.drop_column("revision")
