"""Database schema (SQLAlchemy Core) shared by SQLite (embedded) and PostgreSQL.

The schema is owned by Alembic migrations in pipeline/migrations; this module is the single
description they are written against. Core, not the ORM: the hot paths are bulk inserts and
conditional updates, and the row shapes are plain.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TS = sa.DateTime(timezone=True)

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("created_at", TS, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False, index=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("revoked_at", TS, nullable=True),
)

guilds = sa.Table(
    "guilds",
    metadata,
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), primary_key=True),
    sa.Column("guild_id", sa.String(128), primary_key=True),
    sa.Column("policy", sa.JSON, nullable=True),
    sa.Column("policy_version", sa.Integer, nullable=False, default=0),
    sa.Column("lists", sa.JSON, nullable=True),
    sa.Column("lists_version", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

policy_versions = sa.Table(
    "policy_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("guild_id", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # "policy" | "lists"
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.UniqueConstraint("tenant_id", "guild_id", "kind", "version", name="uq_policy_versions_key"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(128), nullable=False),
    sa.Column("guild_id", sa.String(128), nullable=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # pending | decided
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("received_at", TS, nullable=False),
    sa.Column("enqueued_at", TS, nullable=True),
    sa.Column("decided_at", TS, nullable=True),
    # The API request that brought it: logs of the worker and the sinks carry it on.
    sa.Column("request_id", sa.String(128), nullable=True),
    # The decision id the API answered with (derived from tenant and message id by a one-way hash,
    # so a status lookup by decision id needs it stored). Migration 0008.
    sa.Column("decision_id", sa.String(64), nullable=True),
    sa.UniqueConstraint("tenant_id", "message_id", name="uq_messages_tenant_message"),
    sa.Index("ix_messages_tenant_decision", "tenant_id", "decision_id"),
)

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(128), nullable=False),
    sa.Column("guild_id", sa.String(128), nullable=True),
    sa.Column("action", sa.String(32), nullable=False, index=True),
    sa.Column("payload", sa.JSON, nullable=False),  # the current revision's decision
    sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
    sa.Column("created_at", TS, nullable=False, index=True),
    sa.Column("updated_at", TS, nullable=True),
    sa.UniqueConstraint("tenant_id", "message_id", name="uq_decisions_tenant_message"),
)

# Every outcome a message ever had: revision 1 is the first decision; a later image verdict, a
# spam-wave cluster, a reviewer or an appeal adds the next. Webhook events carry one revision each.
decision_revisions = sa.Table(
    "decision_revisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("decision_id", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(128), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("cause", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.UniqueConstraint("decision_id", "revision", name="uq_decision_revisions_key"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=True, index=True),
    sa.Column("at", TS, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    # What the event is about: a guild or message id (128), a decision id, or a webhook URL (2048,
    # the widest thing the API accepts; migration 0002 widened it from 256).
    sa.Column("subject", sa.String(2048), nullable=True),
    sa.Column("details", sa.JSON, nullable=True),
)

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), primary_key=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

# The transactional outbox: one row per (sink, decision revision), written in the transaction that
# stores the revision, drained by each sink with its own retries. `attempts` only grows (a
# redelivery keeps the history); `retry_from` is where the current retry budget started.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False, index=True),
    sa.Column("sink", sa.String(32), nullable=False),
    sa.Column("decision_id", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(128), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("request_id", sa.String(128), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivered | dead
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("retry_from", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", TS, nullable=True),  # None once delivered or dead
    sa.Column("leased_until", TS, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("delivered_at", TS, nullable=True),
    sa.Column("dead_at", TS, nullable=True),
    sa.UniqueConstraint("sink", "decision_id", "revision", name="uq_outbox_event"),
    sa.Index("ix_outbox_due", "sink", "status", "tenant_id", "next_attempt_at"),
)

# One row per delivery attempt: what a receiver answered and when, kept across redeliveries.
outbox_attempts = sa.Table(
    "outbox_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("outbox_id", sa.Integer, nullable=False, index=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("duration_ms", sa.Float, nullable=True),
)

# ---- images (migration 0004): hash banks, hashes seen (for retroactive matching), thumbnails ----

# A tenant's bank of known-bad media hashes. Matches count toward `category`; `action`, when set,
# is forced whatever the guild's thresholds say. `version` grows with every content change, so a
# scorer's cached index knows when to reload.
banks = sa.Table(
    "banks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("category", sa.String(32), nullable=False),
    sa.Column("action", sa.String(32), nullable=True),
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", TS, nullable=False),
    sa.UniqueConstraint("tenant_id", "name", name="uq_banks_tenant_name"),
)

bank_content = sa.Table(
    "bank_content",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("bank_id", sa.Integer, sa.ForeignKey("banks.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("tenant_id", sa.String(64), nullable=False, index=True),
    sa.Column("signal_type", sa.String(16), nullable=False, server_default="pdq"),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("quality", sa.Integer, nullable=True),
    sa.Column("label", sa.String(256), nullable=True),
    sa.Column("added_at", TS, nullable=False),
    sa.UniqueConstraint("bank_id", "hash", name="uq_bank_content_hash"),
)

# PDQ hashes of images seen in messages (never the images): re-checked when a bank gains content.
media_hashes = sa.Table(
    "media_hashes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(128), nullable=False),
    sa.Column("attachment", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    # The other 7 dihedral hashes (rotations, flips), concatenated: a bank hash added later matches
    # a rotated or mirrored earlier post too.
    sa.Column("variants", sa.Text, nullable=True),
    sa.Column("quality", sa.Integer, nullable=False),
    sa.Column("seen_at", TS, nullable=False),
    sa.UniqueConstraint("tenant_id", "message_id", "attachment", name="uq_media_hashes_key"),
    sa.Index("ix_media_hashes_recent", "tenant_id", "seen_at"),
)

# A small normalised thumbnail (WebP) per image of a message that went to review: what the review
# UI shows (blurred by default). Nothing is kept for messages that did not go to review.
media_thumbnails = sa.Table(
    "media_thumbnails",
    metadata,
    sa.Column("tenant_id", sa.String(64), primary_key=True),
    sa.Column("message_id", sa.String(128), primary_key=True),
    sa.Column("attachment", sa.Integer, primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=True),
    sa.Column("mime", sa.String(32), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

# Inline attachment bytes of an accepted message, held only until it is decided: the messages
# table keeps the message without them (pipeline/store/messages.py strips them).
media_inline = sa.Table(
    "media_inline",
    metadata,
    sa.Column("tenant_id", sa.String(64), primary_key=True),
    sa.Column("message_id", sa.String(128), primary_key=True),
    sa.Column("attachment", sa.Integer, primary_key=True),
    sa.Column("content_base64", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)
