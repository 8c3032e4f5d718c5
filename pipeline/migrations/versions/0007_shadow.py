"""shadow mode: what a candidate model or policy would have decided, beside each live decision

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "shadow_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("decision_id", sa.String(64), nullable=False),
        sa.Column("guild_id", sa.String(128), nullable=True),
        sa.Column("shadow_version", sa.String(255), nullable=False),
        sa.Column("live_action", sa.String(32), nullable=False),
        sa.Column("shadow_action", sa.String(32), nullable=False),
        sa.Column("live_categories", sa.JSON(), nullable=False),
        sa.Column("shadow_categories", sa.JSON(), nullable=False),
        sa.Column("live_scores", sa.JSON(), nullable=False),
        sa.Column("shadow_scores", sa.JSON(), nullable=False),
        sa.Column("shadow_reasons", sa.JSON(), nullable=False),
        sa.Column("shadow_model_versions", sa.JSON(), nullable=False),
        sa.Column("live_policy_version", sa.Integer(), nullable=False),
        sa.Column("shadow_policy", sa.String(128), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_shadow_decisions"),
        sa.UniqueConstraint("tenant_id", "message_id", "shadow_version", name="uq_shadow_decisions_key"),
    )
    op.create_index("ix_shadow_decisions_report", "shadow_decisions", ["tenant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_shadow_decisions_report", table_name="shadow_decisions")
    op.drop_table("shadow_decisions")
