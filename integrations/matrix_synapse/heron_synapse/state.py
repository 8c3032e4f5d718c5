"""What the module must remember across webhooks (and, with `state_path`, across restarts):
the highest revision applied per message, so each revision applies once and a late copy of an
older revision never undoes a newer one, and the mutes it set, so they are lifted when they
expire. SQLite, used only from the module's loop thread (never the reactor's).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS applied (message_id TEXT PRIMARY KEY, revision INTEGER NOT NULL,
                                    action TEXT NOT NULL, redacted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS events (message_id TEXT PRIMARY KEY, room_id TEXT NOT NULL, sender TEXT NOT NULL,
                                   rejected INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS mutes (room_id TEXT NOT NULL, user_id TEXT NOT NULL, level INTEGER NOT NULL,
                                  previous INTEGER, expires_at REAL NOT NULL, PRIMARY KEY (room_id, user_id));
"""


@dataclass
class Mute:
    room_id: str
    user_id: str
    level: int
    previous: int | None
    expires_at: float


class ModuleState:
    def __init__(self, path: str | None) -> None:
        self.db = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
        self.db.executescript(SCHEMA)

    def remember_event(self, message_id: str, room_id: str, sender: str) -> None:
        """Where a checked message lives: a webhook names only the message, and the module API
        has no public way to look an event up by id."""
        self.db.execute(
            "INSERT INTO events (message_id, room_id, sender) VALUES (?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
            (message_id, room_id, sender),
        )

    def mark_rejected(self, message_id: str) -> None:
        self.db.execute("UPDATE events SET rejected = 1 WHERE message_id = ?", (message_id,))

    def event(self, message_id: str) -> tuple[str, str, bool] | None:
        row = self.db.execute(
            "SELECT room_id, sender, rejected FROM events WHERE message_id = ?", (message_id,)
        ).fetchone()
        return (row[0], row[1], bool(row[2])) if row else None

    def claim_revision(self, message_id: str, revision: int, action: str) -> bool:
        """Record `revision` as applied; False when it (or a newer one) already was."""
        row = self.db.execute("SELECT revision FROM applied WHERE message_id = ?", (message_id,)).fetchone()
        if row is not None and row[0] >= revision:
            return False
        self.db.execute(
            "INSERT INTO applied (message_id, revision, action) VALUES (?, ?, ?) "
            "ON CONFLICT (message_id) DO UPDATE SET revision = excluded.revision, action = excluded.action",
            (message_id, revision, action),
        )
        return True

    def mark_redacted(self, message_id: str) -> bool:
        """True the first time: a message is redacted once whatever the number of revisions."""
        cur = self.db.execute("UPDATE applied SET redacted = 1 WHERE message_id = ? AND redacted = 0", (message_id,))
        if cur.rowcount:
            return True
        row = self.db.execute("SELECT redacted FROM applied WHERE message_id = ?", (message_id,)).fetchone()
        if row is None:
            self.db.execute(
                "INSERT INTO applied (message_id, revision, action, redacted) VALUES (?, 0, '', 1)", (message_id,)
            )
            return True
        return False

    def unmark_redacted(self, message_id: str) -> None:
        """The redaction failed: let a later revision or redelivery try again."""
        self.db.execute("UPDATE applied SET redacted = 0 WHERE message_id = ?", (message_id,))

    def add_mute(self, mute: Mute) -> None:
        self.db.execute(
            "INSERT INTO mutes (room_id, user_id, level, previous, expires_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (room_id, user_id) DO UPDATE SET expires_at = excluded.expires_at",
            (mute.room_id, mute.user_id, mute.level, mute.previous, mute.expires_at),
        )

    def get_mute(self, room_id: str, user_id: str) -> Mute | None:
        row = self.db.execute(
            "SELECT room_id, user_id, level, previous, expires_at FROM mutes WHERE room_id = ? AND user_id = ?",
            (room_id, user_id),
        ).fetchone()
        return Mute(*row) if row else None

    def expired_mutes(self, now: float | None = None) -> list[Mute]:
        at = time.time() if now is None else now
        rows = self.db.execute(
            "SELECT room_id, user_id, level, previous, expires_at FROM mutes WHERE expires_at <= ?", (at,)
        ).fetchall()
        return [Mute(*r) for r in rows]

    def remove_mute(self, room_id: str, user_id: str) -> None:
        self.db.execute("DELETE FROM mutes WHERE room_id = ? AND user_id = ?", (room_id, user_id))
