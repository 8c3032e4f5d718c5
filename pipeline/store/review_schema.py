"""Tables of the review desk: queue items, reports, verdicts, reviewer accounts and their sessions.

Kept apart from `pipeline/db.py` (on the same `metadata`) so the review desk is one module to
read; migration 0006 creates them.
"""

from __future__ import annotations

import sqlalchemy as sa

from pipeline.db import TS, metadata

# One item per (tenant, kind, message): a held or flagged decision, the reports against a message,
# or an appeal of its decision. `queue` is "guild" (the guild's moderators) or "platform" (the
# tenant's admins: messages without a guild, and everything escalated).
review_items = sa.Table(
    "review_items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("guild_id", sa.String(128), nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),  # decision | report | appeal
    sa.Column("message_id", sa.String(128), nullable=False),
    sa.Column("decision_id", sa.String(64), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),  # the decision revision the item was made from
    sa.Column("action", sa.String(32), nullable=False),  # that revision's action
    sa.Column("top_category", sa.String(32), nullable=True),
    sa.Column("severity", sa.Float, nullable=False),
    sa.Column("reach", sa.Integer, nullable=False, server_default="1"),
    sa.Column("self_harm", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("queue", sa.String(16), nullable=False),  # guild | platform
    sa.Column("status", sa.String(16), nullable=False),  # open | second_review | escalated | resolved
    sa.Column("cluster_id", sa.String(128), nullable=True),
    sa.Column("submitted_by", sa.String(128), nullable=True),  # reporter or appellant
    sa.Column("reason", sa.Text, nullable=True),  # the report's or appeal's reason
    sa.Column("claimed_by", sa.String(128), nullable=True),
    sa.Column("claimed_at", TS, nullable=True),
    sa.Column("claim_expires_at", TS, nullable=True),
    sa.Column("double_review", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("first_reviewer", sa.String(128), nullable=True),
    sa.Column("verdict", sa.String(16), nullable=True),
    sa.Column("resolved_by", sa.String(128), nullable=True),
    sa.Column("resolved_at", TS, nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.UniqueConstraint("tenant_id", "kind", "message_id", name="uq_review_items_key"),
    sa.Index("ix_review_items_queue", "tenant_id", "status", "guild_id"),
)

# Every report: reach is the number of distinct reporters of a message.
review_reports = sa.Table(
    "review_reports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(128), nullable=False),
    sa.Column("reporter", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.UniqueConstraint("tenant_id", "message_id", "reporter", name="uq_review_reports_key"),
)

# Every verdict a reviewer gave (a double-reviewed item has two): what reviewer quality and the
# labelled dataset are computed from.
review_verdicts = sa.Table(
    "review_verdicts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False, index=True),
    sa.Column("item_id", sa.Integer, nullable=False, index=True),
    sa.Column("guild_id", sa.String(128), nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("reviewer", sa.String(128), nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),  # first | second | bulk
    sa.Column("verdict", sa.String(16), nullable=False),  # uphold | overturn | escalate
    sa.Column("reason_code", sa.String(64), nullable=False),
    sa.Column("categories", sa.JSON, nullable=False),  # category -> violates (bool)
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("author_action", sa.String(16), nullable=True),  # timeout | ban recommendation
    sa.Column("resulting_action", sa.String(32), nullable=True),
    sa.Column("decision_revision", sa.Integer, nullable=True),  # the revision this verdict caused
    sa.Column("claimed_at", TS, nullable=True),
    sa.Column("decided_at", TS, nullable=False),
    sa.Column("seconds", sa.Float, nullable=True),  # claim to verdict
)

# Reviewer accounts: separate from tenant API keys. `guilds` scopes a moderator (and optionally a
# viewer); an admin sees all of its tenant.
reviewers = sa.Table(
    "reviewers",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False, index=True),
    sa.Column("username", sa.String(128), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),  # admin | moderator | viewer
    sa.Column("guilds", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("disabled_at", TS, nullable=True),
)

# Browser sessions: only a hash of the cookie's token is stored; `csrf` is the session's form token.
review_sessions = sa.Table(
    "review_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("reviewer_id", sa.String(32), nullable=False, index=True),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
)
