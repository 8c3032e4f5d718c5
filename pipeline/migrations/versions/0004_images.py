"""images: hash banks, hashes seen (retroactive matching), review thumbnails, inline bytes in transit

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "banks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_banks"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_banks_tenant_name"),
    )
    op.create_table(
        "bank_content",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("bank_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("signal_type", sa.String(16), nullable=False, server_default="pdq"),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("quality", sa.Integer(), nullable=True),
        sa.Column("label", sa.String(256), nullable=True),
        sa.Column("added_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bank_content"),
        sa.ForeignKeyConstraint(["bank_id"], ["banks.id"], name="fk_bank_content_bank_id_banks", ondelete="CASCADE"),
        sa.UniqueConstraint("bank_id", "hash", name="uq_bank_content_hash"),
    )
    op.create_index("ix_bank_content_bank_id", "bank_content", ["bank_id"])
    op.create_index("ix_bank_content_tenant_id", "bank_content", ["tenant_id"])
    op.create_table(
        "media_hashes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("attachment", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("variants", sa.Text(), nullable=True),
        sa.Column("quality", sa.Integer(), nullable=False),
        sa.Column("seen_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_media_hashes"),
        sa.UniqueConstraint("tenant_id", "message_id", "attachment", name="uq_media_hashes_key"),
    )
    op.create_index("ix_media_hashes_recent", "media_hashes", ["tenant_id", "seen_at"])
    op.create_table(
        "media_thumbnails",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("attachment", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=True),
        sa.Column("mime", sa.String(32), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "message_id", "attachment", name="pk_media_thumbnails"),
    )
    op.create_table(
        "media_inline",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("attachment", sa.Integer(), nullable=False),
        sa.Column("content_base64", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "message_id", "attachment", name="pk_media_inline"),
    )


def downgrade() -> None:
    op.drop_table("media_inline")
    op.drop_table("media_thumbnails")
    op.drop_index("ix_media_hashes_recent", table_name="media_hashes")
    op.drop_table("media_hashes")
    op.drop_index("ix_bank_content_tenant_id", table_name="bank_content")
    op.drop_index("ix_bank_content_bank_id", table_name="bank_content")
    op.drop_table("bank_content")
    op.drop_table("banks")
