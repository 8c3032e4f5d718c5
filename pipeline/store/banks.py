"""Per-tenant hash banks (known-bad media, as in Meta's Hasher-Matcher-Actioner), the image hashes
seen in messages (for retroactive matching), review thumbnails, and inline bytes in transit.

A bank names the taxonomy category its matches count toward and may force an action. Content is
PDQ hashes (64 hex characters) with an optional label; import and export are CSV (see
`parse_csv` / `to_csv`). Every content change bumps the bank's version, so a scorer's cached
index reloads within its TTL on every process.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from pipeline import db
from pipeline.errors import Conflict, InvalidInput, NotFound
from pipeline.store.audit import write_audit
from pipeline.store.engine import Database, aware, now
from pipeline.taxonomy import parse_category
from pipeline.types import Action

MAX_LABEL = 256


def is_hex_hash(value: str) -> bool:
    """64 hex characters (a PDQ hash). Here rather than imported from pipeline.images.pdq, so the
    store does not load OpenCV and pdqhash in processes that never hash."""
    return len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value)


@dataclass(frozen=True)
class Bank:
    id: int
    tenant_id: str
    name: str
    category: str
    action: str | None
    version: int
    size: int
    created_at: datetime | None


@dataclass(frozen=True)
class BankEntry:
    hash: str
    label: str | None = None
    quality: int | None = None


@dataclass(frozen=True)
class BankHash:
    """One hash of a tenant's banks, with what a match means (for the scorer's index)."""

    hash: str
    bank: str
    category: str
    action: str | None
    label: str | None


def validate_bank(category: str, action: str | None) -> None:
    try:
        parse_category(category)
    except ValueError as exc:
        raise InvalidInput(str(exc), code="invalid_bank") from None
    if action is not None and action not in {a.value for a in Action}:
        raise InvalidInput(f"unknown action {action!r}; expected one of {', '.join(a.value for a in Action)}",
                           code="invalid_bank")


def normalise_entry(hash_: str, label: str | None = None, quality: int | None = None) -> BankEntry:
    h = hash_.strip().lower()
    if not is_hex_hash(h):
        raise InvalidInput(f"not a PDQ hash (64 hex characters): {hash_[:80]!r}", code="invalid_hash")
    if label is not None and len(label) > MAX_LABEL:
        raise InvalidInput(f"label longer than {MAX_LABEL} characters", code="invalid_hash")
    if label is not None and "\x00" in label:
        raise InvalidInput("a label must not contain NUL characters", code="invalid_hash")
    return BankEntry(h, label or None, quality)


_HASH_COLUMNS = ("hash", "signal", "signal_value", "pdq", "pdq_hash")


def parse_csv(text: str) -> list[BankEntry]:
    """Hashes from CSV: `hash,label` rows, with or without a header.

    Accepted headers (HMA / python-threatexchange style): a hash column named hash, signal,
    signal_value, pdq or pdq_hash; an optional `label`; an optional `signal_type` that must be pdq.
    A headerless file is one hash per row, optionally followed by a label. `InvalidInput` names
    the first bad row."""
    if "\x00" in text:
        raise InvalidInput("the CSV contains NUL characters", code="invalid_csv")
    try:
        rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    except csv.Error as exc:
        raise InvalidInput(f"not readable as CSV: {exc}", code="invalid_csv") from None
    if not rows:
        return []
    header = [c.strip().lower() for c in rows[0]]
    hash_col, label_col, type_col = 0, 1, None
    start = 0
    if not is_hex_hash(header[0]):
        found = [i for i, c in enumerate(header) if c in _HASH_COLUMNS]
        if not found:
            raise InvalidInput(f"CSV header has no hash column (one of {', '.join(_HASH_COLUMNS)})", code="invalid_csv")
        hash_col = found[0]
        label_col = header.index("label") if "label" in header else -1
        type_col = header.index("signal_type") if "signal_type" in header else None
        start = 1
    out = []
    for n, row in enumerate(rows[start:], start=start + 1):
        if type_col is not None and type_col < len(row) and row[type_col].strip().lower() not in ("pdq", ""):
            raise InvalidInput(f"row {n}: signal type {row[type_col]!r} is not pdq", code="invalid_csv")
        if hash_col >= len(row):
            raise InvalidInput(f"row {n}: no hash", code="invalid_csv")
        label = row[label_col].strip() if 0 <= label_col < len(row) else None
        try:
            out.append(normalise_entry(row[hash_col], label))
        except InvalidInput as exc:
            raise InvalidInput(f"row {n}: {exc.message}", code="invalid_csv") from None
    return out


def to_csv(entries: Iterable[BankEntry]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["signal_type", "hash", "label"])
    for e in entries:
        w.writerow(["pdq", e.hash, e.label or ""])
    return buf.getvalue()


class Banks:
    def __init__(self, database: Database) -> None:
        self.db = database

    # ---- banks ---------------------------------------------------------------------------------
    def create(self, tenant_id: str, name: str, category: str, action: str | None = None,
               actor: str = "api") -> Bank:
        validate_bank(category, action)
        ts = now()
        try:
            with self.db.engine.begin() as conn:
                conn.execute(db.banks.insert().values(tenant_id=tenant_id, name=name, category=category,
                                                      action=action, version=0, created_at=ts))
                write_audit(conn, tenant_id, actor, "bank_created", name, {"category": category, "action": action})
        except sa.exc.IntegrityError:
            raise Conflict(f"bank {name!r} already exists", code="bank_exists") from None
        return self.get(tenant_id, name)

    def _row(self, conn: sa.Connection, tenant_id: str, name: str) -> Any:
        b = db.banks.c
        row = conn.execute(sa.select(db.banks).where(b.tenant_id == tenant_id, b.name == name)).first()
        if row is None:
            raise NotFound(f"no bank {name!r} for this tenant", code="unknown_bank")
        return row

    def get(self, tenant_id: str, name: str) -> Bank:
        with self.db.engine.connect() as conn:
            row = self._row(conn, tenant_id, name)
            size = conn.execute(sa.select(sa.func.count()).where(db.bank_content.c.bank_id == row.id)).scalar()
        return Bank(row.id, row.tenant_id, row.name, row.category, row.action, row.version, int(size or 0),
                    aware(row.created_at))

    def list(self, tenant_id: str) -> list[Bank]:
        b, c = db.banks.c, db.bank_content.c
        q = (
            sa.select(db.banks, sa.func.count(c.id).label("size"))
            .select_from(db.banks.outerjoin(db.bank_content, c.bank_id == b.id))
            .where(b.tenant_id == tenant_id)
            .group_by(*db.banks.c)
            .order_by(b.name)
        )
        with self.db.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [Bank(r.id, r.tenant_id, r.name, r.category, r.action, r.version, int(r.size), aware(r.created_at))
                for r in rows]

    def delete(self, tenant_id: str, name: str, actor: str = "api") -> None:
        with self.db.engine.begin() as conn:
            row = self._row(conn, tenant_id, name)
            conn.execute(db.bank_content.delete().where(db.bank_content.c.bank_id == row.id))
            conn.execute(db.banks.delete().where(db.banks.c.id == row.id))
            write_audit(conn, tenant_id, actor, "bank_deleted", name, {})

    # ---- content -------------------------------------------------------------------------------
    def add(self, tenant_id: str, name: str, entries: Sequence[BankEntry], actor: str = "api") -> list[BankEntry]:
        """Add hashes (a hash already in the bank is kept as it is); returns the ones that were new."""
        ts = now()
        with self.db.engine.begin() as conn:
            row = self._row(conn, tenant_id, name)
            c = db.bank_content.c
            existing = set()
            hashes = list(dict.fromkeys(e.hash for e in entries))
            for i in range(0, len(hashes), 500):
                existing |= set(conn.execute(
                    sa.select(c.hash).where(c.bank_id == row.id, c.hash.in_(hashes[i:i + 500]))
                ).scalars())
            new: dict[str, BankEntry] = {}
            for e in entries:
                if e.hash not in existing and e.hash not in new:
                    new[e.hash] = e
            if new:
                conn.execute(db.bank_content.insert(), [
                    {"bank_id": row.id, "tenant_id": tenant_id, "signal_type": "pdq", "hash": e.hash,
                     "quality": e.quality, "label": e.label, "added_at": ts} for e in new.values()
                ])
                conn.execute(db.banks.update().where(db.banks.c.id == row.id).values(version=db.banks.c.version + 1))
                write_audit(conn, tenant_id, actor, "bank_content_added", name, {"added": len(new)})
        return list(new.values())

    def remove(self, tenant_id: str, name: str, hashes: Sequence[str], actor: str = "api") -> int:
        with self.db.engine.begin() as conn:
            row = self._row(conn, tenant_id, name)
            c = db.bank_content.c
            n = conn.execute(db.bank_content.delete().where(c.bank_id == row.id, c.hash.in_(list(hashes)))).rowcount
            if n:
                conn.execute(db.banks.update().where(db.banks.c.id == row.id).values(version=db.banks.c.version + 1))
                write_audit(conn, tenant_id, actor, "bank_content_removed", name, {"removed": n})
        return int(n or 0)

    def content(self, tenant_id: str, name: str, limit: int | None = None, offset: int = 0) -> list[BankEntry]:
        with self.db.engine.connect() as conn:
            row = self._row(conn, tenant_id, name)
            c = db.bank_content.c
            q = sa.select(c.hash, c.label, c.quality).where(c.bank_id == row.id).order_by(c.id).offset(offset)
            if limit is not None:
                q = q.limit(limit)
            return [BankEntry(r.hash, r.label, r.quality) for r in conn.execute(q)]

    # ---- what the scorer reads -----------------------------------------------------------------
    def version_key(self, tenant_id: str) -> tuple[int, int]:
        """(number of banks, sum of their versions): changes whenever any bank or its content does."""
        b = db.banks.c
        with self.db.engine.connect() as conn:
            q = sa.select(sa.func.count(b.id), sa.func.coalesce(sa.func.sum(b.version), 0))
            n, v = conn.execute(q.where(b.tenant_id == tenant_id)).one()
        return int(n), int(v)

    def all_hashes(self, tenant_id: str) -> list[BankHash]:
        b, c = db.banks.c, db.bank_content.c
        q = (
            sa.select(c.hash, c.label, b.name, b.category, b.action)
            .select_from(db.bank_content.join(db.banks, c.bank_id == b.id))
            .where(b.tenant_id == tenant_id)
            .order_by(c.id)
        )
        with self.db.engine.connect() as conn:
            return [BankHash(r.hash, r.name, r.category, r.action, r.label) for r in conn.execute(q)]

    # ---- hashes seen, thumbnails, inline bytes -------------------------------------------------
    def record_seen(self, rows: Sequence[tuple[str, str, int, Sequence[str], int]]) -> None:
        """(tenant, message id, attachment index, its 8 dihedral hashes, quality) of images seen;
        a repeat is ignored."""
        if not rows:
            return
        ts = now()
        with self.db.engine.begin() as conn:
            conn.execute(self.db.insert(db.media_hashes).on_conflict_do_nothing(), [
                {"tenant_id": t, "message_id": m, "attachment": i, "hash": hs[0], "variants": "".join(hs[1:]),
                 "quality": q, "seen_at": ts}
                for t, m, i, hs, q in rows
            ])

    def seen_since(self, tenant_id: str, days: float) -> list[tuple[str, int, list[str]]]:
        """(message id, attachment, dihedral hashes) of images seen in the last `days` days."""
        c = db.media_hashes.c
        since = now() - timedelta(days=days)
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                sa.select(c.message_id, c.attachment, c.hash, c.variants)
                .where(c.tenant_id == tenant_id, c.seen_at >= since)
            ).all()
        out = []
        for r in rows:
            rest = r.variants or ""
            out.append((r.message_id, int(r.attachment), [r.hash] + [rest[i:i + 64] for i in range(0, len(rest), 64)]))
        return out

    def purge_seen(self, older_than_days: float) -> int:
        cutoff = now() - timedelta(days=older_than_days)
        with self.db.engine.begin() as conn:
            return int(conn.execute(db.media_hashes.delete().where(db.media_hashes.c.seen_at < cutoff)).rowcount or 0)

    def save_thumbnails(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        ts = now()
        with self.db.engine.begin() as conn:
            conn.execute(self.db.insert(db.media_thumbnails).on_conflict_do_nothing(),
                         [{**r, "created_at": ts} for r in rows])

    def thumbnails(self, tenant_id: str, message_id: str) -> list[dict[str, Any]]:
        c = db.media_thumbnails.c
        with self.db.engine.connect() as conn:
            rows = conn.execute(sa.select(db.media_thumbnails).where(c.tenant_id == tenant_id,
                                                                     c.message_id == message_id)
                                .order_by(c.attachment)).all()
        return [dict(r._mapping) for r in rows]
