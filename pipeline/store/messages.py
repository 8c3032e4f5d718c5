"""Accepted messages: stored once per (tenant, message id) before the caller hears 202."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from pipeline import db
from pipeline.store.engine import Database, aware, now
from pipeline.types import Attachment, Message, decision_id_for


@dataclass(frozen=True)
class StoredMessage:
    row_id: int
    tenant_id: str
    message: Message
    status: str
    attempts: int
    received_at: datetime | None = None
    request_id: str | None = None


class Messages:
    def __init__(self, database: Database) -> None:
        self.db = database

    def insert(self, tenant_id: str, message: Message) -> tuple[int, bool]:
        """Store an incoming message; returns (row id, created). A repeat id is not stored twice."""
        return self.insert_many([(tenant_id, message)])[0]

    def insert_many(
        self, items: list[tuple[str, Message]], request_ids: list[str | None] | None = None
    ) -> list[tuple[int, bool]]:
        """Store many incoming messages in one transaction (group commit); (row id, created) each.

        `request_ids` (one per item) name the API requests that brought them, for the logs of the
        worker and the sinks that handle them later."""
        if not items:
            return []
        ts = now()
        rids = request_ids or [None] * len(items)
        inline: list[dict[str, object]] = []
        rows = [
            {
                "tenant_id": t,
                "message_id": m.id,
                "guild_id": m.guild_id,
                "payload": _without_inline(t, m, inline, ts),
                "status": "pending",
                "attempts": 0,
                "received_at": ts,
                "request_id": rid,
                "decision_id": decision_id_for(t, m.id),
            }
            for (t, m), rid in zip(items, rids, strict=True)
        ]
        c = db.messages.c
        with self.db.engine.begin() as conn:
            result = conn.execute(
                self.db.insert(db.messages).on_conflict_do_nothing().returning(c.id, c.tenant_id, c.message_id), rows
            )
            created = {(r.tenant_id, r.message_id): int(r.id) for r in result}
            fresh = [r for r in inline if (r["tenant_id"], r["message_id"]) in created]
            if fresh:
                conn.execute(self.db.insert(db.media_inline).on_conflict_do_nothing(), fresh)
            missing = [(t, m.id) for t, m in items if (t, m.id) not in created]
            existing: dict[tuple[str, str], int] = {}
            for t in {t for t, _ in missing}:
                mids = [mid for tt, mid in missing if tt == t]
                for r in conn.execute(sa.select(c.id, c.message_id).where(c.tenant_id == t, c.message_id.in_(mids))):
                    existing[(t, r.message_id)] = int(r.id)
        out: list[tuple[int, bool]] = []
        seen: set[tuple[str, str]] = set()
        for t, m in items:
            key = (t, m.id)
            if key in created and key not in seen:
                out.append((created[key], True))
                seen.add(key)
            else:
                out.append((created.get(key) or existing[key], False))
        return out

    def mark_enqueued(self, row_ids: list[int]) -> None:
        if not row_ids:
            return
        with self.db.engine.begin() as conn:
            conn.execute(db.messages.update().where(db.messages.c.id.in_(row_ids)).values(enqueued_at=now()))

    def load(self, row_ids: list[int]) -> list[StoredMessage]:
        """The messages by row id, counting this as an attempt (a message a worker keeps dying on shows it)."""
        c = db.messages.c
        with self.db.engine.begin() as conn:
            conn.execute(db.messages.update().where(c.id.in_(row_ids)).values(attempts=c.attempts + 1))
            rows = conn.execute(sa.select(db.messages).where(c.id.in_(row_ids)).order_by(c.id)).all()
            blobs: dict[tuple[str, str], dict[int, str]] = {}
            i = db.media_inline.c
            for t in {r.tenant_id for r in rows}:
                mids = [r.message_id for r in rows if r.tenant_id == t]
                for b in conn.execute(sa.select(i.message_id, i.attachment, i.content_base64)
                                      .where(i.tenant_id == t, i.message_id.in_(mids))):
                    blobs.setdefault((t, b.message_id), {})[int(b.attachment)] = b.content_base64
        return [
            StoredMessage(r.id, r.tenant_id, _with_inline(r.payload, blobs.get((r.tenant_id, r.message_id), {})),
                          r.status, r.attempts, aware(r.received_at), r.request_id)
            for r in rows
        ]

    def get(self, tenant_id: str, message_id: str) -> Message | None:
        """The stored message (inline bytes only while still held)."""
        c = db.messages.c
        with self.db.engine.connect() as conn:
            row = conn.execute(sa.select(c.id).where(c.tenant_id == tenant_id, c.message_id == message_id)).first()
        if row is None:
            return None
        with self.db.engine.connect() as conn:
            r = conn.execute(sa.select(db.messages).where(c.id == row.id)).one()
            i = db.media_inline.c
            blobs = {int(b.attachment): b.content_base64 for b in conn.execute(
                sa.select(i.attachment, i.content_base64).where(i.tenant_id == tenant_id, i.message_id == message_id))}
        return _with_inline(r.payload, blobs)

    def drop_inline(self, tenant_id: str, message_ids: list[str]) -> None:
        """Forget the inline attachment bytes of decided messages (hashes and, for review, a
        thumbnail are all that is kept of them)."""
        if not message_ids:
            return
        i = db.media_inline.c
        with self.db.engine.begin() as conn:
            conn.execute(db.media_inline.delete().where(i.tenant_id == tenant_id, i.message_id.in_(message_ids)))

    def received_at(self, tenant_id: str, message_ids: list[str]) -> dict[str, object]:
        c = db.messages.c
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                sa.select(c.message_id, c.received_at).where(c.tenant_id == tenant_id, c.message_id.in_(message_ids))
            ).all()
        return {r.message_id: r.received_at for r in rows}

    def claim_stale_pending(self, older_than_s: float, limit: int = 500) -> list[int]:
        """Pending messages whose task may have been lost; claimed by bumping enqueued_at.

        SKIP LOCKED on PostgreSQL: two sweepers never wait on each other's rows (and never
        deadlock); each claims what the other has not.
        """
        cutoff = now() - timedelta(seconds=older_than_s)
        c = db.messages.c
        with self.db.engine.begin() as conn:
            q = (
                sa.select(c.id)
                .where(
                    c.status == "pending",
                    sa.or_(c.enqueued_at.is_(None), c.enqueued_at < cutoff),
                    c.received_at < cutoff,
                )
                .order_by(c.id)
                .limit(limit)
            )
            if self.db.is_postgres:
                q = q.with_for_update(skip_locked=True)
            ids = [int(r.id) for r in conn.execute(q)]
            if ids:
                conn.execute(db.messages.update().where(c.id.in_(ids)).values(enqueued_at=now()))
        return ids

    def status(self, tenant_id: str, message_or_decision_id: str) -> str | None:
        """A message's status by its id, or by the decision id `POST /v1/messages` answered with
        (stored with the message: migration 0008)."""
        c = db.messages.c
        with self.db.engine.connect() as conn:
            status = conn.execute(
                sa.select(c.status).where(c.tenant_id == tenant_id, c.message_id == message_or_decision_id)
            ).scalar()
            if status is not None or not message_or_decision_id.startswith("dec_"):
                return status  # type: ignore[no-any-return]
            return conn.execute(  # type: ignore[no-any-return]
                sa.select(c.status).where(c.tenant_id == tenant_id, c.decision_id == message_or_decision_id)
            ).scalar()


def _without_inline(tenant_id: str, message: Message, out: list[dict[str, object]], ts: datetime) -> dict[str, Any]:
    """The message as stored in `messages`: inline attachment bytes go to `media_inline` (held
    until the message is decided), never into the payload, whose rows live as long as the audit."""
    payload = message.model_dump(mode="json")
    for n, att in enumerate(payload.get("attachments") or []):
        data = att.get("content_base64")
        if data:
            out.append({"tenant_id": tenant_id, "message_id": message.id, "attachment": n,
                        "content_base64": data, "created_at": ts})
            att["content_base64"] = None
            att["inline"] = True
    return payload


def _with_inline(payload: dict[str, Any], blobs: dict[int, str]) -> Message:
    """The stored payload with its inline bytes back where they are still held. An attachment whose
    bytes are gone (the message was decided and they were dropped) stays as a reference with
    neither URL nor bytes, which the image decoder reports as an attachment error."""
    atts = payload.get("attachments") or []
    if not any("inline" in a for a in atts):
        return Message.model_validate(payload)
    fixed: list[dict[str, Any]] = []
    gone: list[int] = []
    for n, att in enumerate(atts):
        att = {k: v for k, v in att.items() if k != "inline"}
        if att.get("content_base64") is None and att.get("url") is None:
            if n in blobs:
                att["content_base64"] = blobs[n]
            else:
                gone.append(n)
        fixed.append(att)
    if not gone:
        return Message.model_validate({**payload, "attachments": fixed})
    # Validate what is left (with a placeholder text should nothing else be left), then put the
    # byte-less references back in their places without validation.
    kept = [a for n, a in enumerate(fixed) if n not in gone]
    probe = Message.model_validate({**payload, "attachments": kept, "text": payload.get("text") or "-"})
    attachments = list(probe.attachments)
    for n in gone:
        ref = fixed[n]
        attachments.insert(n, Attachment.model_construct(
            url=None, content_base64=None, content_type=ref.get("content_type"), filename=ref.get("filename")))
    return probe.model_copy(update={"attachments": attachments, "text": payload.get("text") or ""})
