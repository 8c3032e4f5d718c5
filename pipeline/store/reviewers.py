"""Reviewer accounts and their browser sessions, separate from tenant API keys.

Passwords are hashed with argon2id (`argon2-cffi`, its recommended parameters), never stored or
logged. A session cookie carries a random token; only its SHA-256 is stored (a leaked table opens
no session), with the session's CSRF token and an expiry.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pipeline import db
from pipeline.errors import Conflict, InvalidInput, NotFound
from pipeline.review import ROLES, Principal
from pipeline.store.audit import write_audit
from pipeline.store.engine import Database, aware, now
from pipeline.store.review_schema import review_sessions, reviewers

_HASHER = PasswordHasher()
MIN_PASSWORD_CHARS = 10
# A hash to verify against when the username is unknown, so a login takes as long either way.
_DUMMY_HASH = _HASHER.hash("heron-no-such-user-" + secrets.token_hex(8))


@dataclass(frozen=True)
class Reviewer:
    id: str
    tenant_id: str
    username: str
    role: str
    guilds: tuple[str, ...]

    def principal(self) -> Principal:
        return Principal(
            tenant_id=self.tenant_id, actor=f"reviewer:{self.username}", role=self.role,  # type: ignore[arg-type]
            guilds=frozenset(self.guilds) if self.role != "admin" and (self.guilds or self.role == "moderator")
            else None,
            reviewer_id=self.id, via="session",
        )


@dataclass(frozen=True)
class Session:
    reviewer: Reviewer
    csrf: str
    expires_at: datetime


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Reviewers:
    def __init__(self, database: Database) -> None:
        self.db = database

    def create(self, tenant_id: str, username: str, password: str, role: str, guilds: list[str],
               actor: str = "system:cli") -> Reviewer:
        """A new account. A moderator needs at least one guild: it sees only those guilds' queues."""
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}", code="validation_error")
        if role == "moderator" and not guilds:
            raise InvalidInput("a moderator needs at least one --guild", code="validation_error")
        if role == "admin" and guilds:
            raise InvalidInput("an admin sees every guild of its tenant; give no --guild", code="validation_error")
        if not username or len(username) > 100 or not username.replace("-", "").replace("_", "").replace(".", "") \
                .replace("@", "").isalnum():
            raise InvalidInput("username: 1-100 letters, digits, '.', '_', '-', '@'", code="validation_error")
        if len(password) < MIN_PASSWORD_CHARS:
            raise InvalidInput(f"password: at least {MIN_PASSWORD_CHARS} characters", code="weak_password")
        rid = "rv_" + secrets.token_hex(8)
        with self.db.engine.begin() as conn:
            if conn.execute(sa.select(reviewers.c.id).where(reviewers.c.username == username)).first():
                raise Conflict(f"username {username!r} is taken", code="username_taken")
            conn.execute(reviewers.insert().values(
                id=rid, tenant_id=tenant_id, username=username, password_hash=_HASHER.hash(password), role=role,
                guilds=sorted(set(guilds)), created_at=now(),
            ))
            write_audit(conn, tenant_id, actor, "reviewer_created", username, {"role": role, "guilds": sorted(guilds)})
        return Reviewer(rid, tenant_id, username, role, tuple(sorted(set(guilds))))

    def authenticate(self, username: str, password: str) -> Reviewer | None:
        """The account if the password matches (argon2 verify; rehashed when parameters changed)."""
        with self.db.engine.connect() as conn:
            row = conn.execute(sa.select(reviewers).where(reviewers.c.username == username,
                                                          reviewers.c.disabled_at.is_(None))).first()
        try:
            _HASHER.verify(row.password_hash if row else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        if _HASHER.check_needs_rehash(row.password_hash):
            with self.db.engine.begin() as conn:
                conn.execute(reviewers.update().where(reviewers.c.id == row.id)
                             .values(password_hash=_HASHER.hash(password)))
        return Reviewer(row.id, row.tenant_id, row.username, row.role, tuple(row.guilds or ()))

    def get(self, reviewer_id: str) -> Reviewer:
        with self.db.engine.connect() as conn:
            row = conn.execute(sa.select(reviewers).where(reviewers.c.id == reviewer_id)).first()
        if row is None:
            raise NotFound(f"no reviewer {reviewer_id!r}", code="not_found")
        return Reviewer(row.id, row.tenant_id, row.username, row.role, tuple(row.guilds or ()))

    def list(self, tenant_id: str) -> list[Reviewer]:
        with self.db.engine.connect() as conn:
            rows = conn.execute(sa.select(reviewers).where(reviewers.c.tenant_id == tenant_id)
                                .order_by(reviewers.c.username)).all()
        return [Reviewer(r.id, r.tenant_id, r.username, r.role, tuple(r.guilds or ())) for r in rows]

    # ---- sessions ------------------------------------------------------------------------------
    def open_session(self, reviewer: Reviewer, ttl_s: float) -> tuple[str, Session]:
        """A new session: (the cookie's token, the session). Only the token's hash is stored."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        ts = now()
        expires = ts + timedelta(seconds=ttl_s)
        with self.db.engine.begin() as conn:
            conn.execute(review_sessions.delete().where(review_sessions.c.expires_at < ts))
            conn.execute(review_sessions.insert().values(
                token_hash=_token_hash(token), reviewer_id=reviewer.id, csrf=csrf, created_at=ts, expires_at=expires))
            write_audit(conn, reviewer.tenant_id, f"reviewer:{reviewer.username}", "reviewer_login",
                        reviewer.username, {})
        return token, Session(reviewer, csrf, expires)

    def session(self, token: str) -> Session | None:
        s = review_sessions.c
        r = reviewers.c
        with self.db.engine.connect() as conn:
            row = conn.execute(
                sa.select(s.csrf, s.expires_at, r.id, r.tenant_id, r.username, r.role, r.guilds)
                .select_from(review_sessions.join(reviewers, r.id == s.reviewer_id))
                .where(s.token_hash == _token_hash(token), r.disabled_at.is_(None))
            ).first()
        if row is None or aware(row.expires_at) <= now():  # type: ignore[operator]
            return None
        return Session(Reviewer(row.id, row.tenant_id, row.username, row.role, tuple(row.guilds or ())),
                       row.csrf, aware(row.expires_at))  # type: ignore[arg-type]

    def close_session(self, token: str) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(review_sessions.delete().where(review_sessions.c.token_hash == _token_hash(token)))


def tenant_id_by_name(database: Database, name: str) -> str | None:
    with database.engine.connect() as conn:
        row = conn.execute(sa.select(db.tenants.c.id).where(db.tenants.c.name == name)).first()
    return str(row.id) if row else None
