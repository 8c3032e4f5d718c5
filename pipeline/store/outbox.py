"""The transactional outbox: one event per (sink, decision revision), drained by each sink.

Why an outbox: deciding and delivering are separate work. The decision's transaction writes the
events (so a committed decision always has them, and a rolled-back one never does), and each sink
drains its own events with its own retry policy, on its own threads, so a receiver that hangs
slows only its own deliveries, never a decision.

Leasing: a sink claims due events with `SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL (two
drainers never wait on, or deadlock over, each other's rows) and leases them for longer than its
worst attempt, so no other drainer re-sends an event that is still in flight. Revisions of one
message go out in order: an event is not due while an earlier revision of the same decision is
still pending for that sink.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline import db
from pipeline.store.audit import write_audit
from pipeline.store.engine import Database, aware, now
from pipeline.types import Decision


class SinkRoute(Protocol):
    """Which events a sink wants, decided inside the decision's transaction."""

    name: str

    def select(self, conn: Connection, events: Sequence[tuple[str, Decision]]) -> list[tuple[str, Decision]]: ...


class WebhookRoute:
    """Every revision of every decision goes to tenants that have a webhook registered."""

    name = "webhook"

    def select(self, conn: Connection, events: Sequence[tuple[str, Decision]]) -> list[tuple[str, Decision]]:
        tenants = list({t for t, _ in events})
        hooked = set(
            conn.execute(sa.select(db.webhooks.c.tenant_id).where(db.webhooks.c.tenant_id.in_(tenants))).scalars()
        )
        return [(t, d) for t, d in events if t in hooked]


class OutboxRouter:
    """The sinks that receive events; a later sink (review queue, chat-core module) is a new route."""

    def __init__(self, routes: Iterable[SinkRoute] | None = None) -> None:
        if routes is None:
            from pipeline.store.review import ReviewRoute  # the review queue (imports this module)

            routes = (WebhookRoute(), ReviewRoute())
        self.routes: tuple[SinkRoute, ...] = tuple(routes)

    @property
    def sinks(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.routes)


def write_events(
    conn: Connection,
    router: OutboxRouter,
    events: Sequence[tuple[str, Decision]],
    ts: datetime,
    request_ids: dict[str, str | None] | None = None,
) -> int:
    """One outbox row per (sink, decision revision) in the caller's transaction; returns how many.

    `request_ids` (by message id) follow each event into its sink's logs."""
    rids = request_ids or {}
    rows = [
        {
            "tenant_id": t,
            "sink": route.name,
            "decision_id": d.id,
            "message_id": d.message_id,
            "revision": d.revision,
            "request_id": rids.get(d.message_id),
            "status": "pending",
            "attempts": 0,
            "retry_from": 0,
            "next_attempt_at": ts,
            "created_at": ts,
        }
        for route in router.routes
        for t, d in route.select(conn, events)
    ]
    if rows:
        conn.execute(db.outbox.insert(), rows)
    return len(rows)


@dataclass(frozen=True)
class OutboxEvent:
    id: int
    tenant_id: str
    sink: str
    decision_id: str
    message_id: str
    revision: int
    status: str
    attempts: int
    retry_from: int
    next_attempt_at: datetime | None
    last_error: str | None
    last_status_code: int | None
    created_at: datetime
    delivered_at: datetime | None
    dead_at: datetime | None
    request_id: str | None = None

    @property
    def attempts_this_round(self) -> int:
        """Attempts since the event was last (re)queued: what the retry budget counts."""
        return self.attempts - self.retry_from

    @property
    def event_id(self) -> str:
        """Stable per (decision, revision): receivers dedupe on it."""
        return f"{self.decision_id}.{self.revision}"


def _event(row: Any) -> OutboxEvent:
    return OutboxEvent(
        row.id, row.tenant_id, row.sink, row.decision_id, row.message_id, row.revision, row.status, row.attempts,
        row.retry_from, aware(row.next_attempt_at), row.last_error, row.last_status_code,
        aware(row.created_at), aware(row.delivered_at), aware(row.dead_at), row.request_id,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class Attempt:
    attempt: int
    at: datetime
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float | None


@dataclass(frozen=True)
class AttemptOutcome:
    """One finished attempt, as a drainer reports it to `record_attempts`."""

    event: OutboxEvent
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float | None
    retry_at: datetime | None  # None and not ok: dead


class Outbox:
    def __init__(self, database: Database) -> None:
        self.db = database

    def claim_due(
        self,
        sink: str,
        *,
        owner: str,
        lease_s: float,
        limit: int = 50,
        exclude_tenants: Iterable[str] = (),
        per_tenant: dict[str, int] | None = None,
        default_per_tenant: int | None = None,
        max_tenants: int = 100,
    ) -> list[OutboxEvent]:
        """Lease due events of `sink` to `owner` for `lease_s` seconds.

        `exclude_tenants` (saturated, or circuit open) are not claimed at all, so one tenant's
        backlog never fills a claim and starves the others; `per_tenant` caps how many of each
        tenant's events this claim may take (its free delivery slots).
        """
        ts = now()
        o = db.outbox
        o2 = db.outbox.alias("earlier")
        earlier_pending = (
            sa.select(o2.c.id)
            .where(
                o2.c.sink == o.c.sink,
                o2.c.decision_id == o.c.decision_id,
                o2.c.revision < o.c.revision,
                o2.c.status == "pending",
            )
            .exists()
        )
        due = (
            o.c.sink == sink,
            o.c.status == "pending",
            o.c.next_attempt_at <= ts,
            sa.or_(o.c.leased_until.is_(None), o.c.leased_until < ts),
        )
        # Fair by tenant, and cheap however deep the backlog: first the tenants with something due
        # (oldest first, one index scan), then for each an index range scan of its own oldest due
        # events, at most its free slots. One tenant's deep backlog can neither fill a claim nor
        # make it slow for everyone.
        excluded = set(exclude_tenants)
        t_q = (
            sa.select(o.c.tenant_id, sa.func.min(o.c.next_attempt_at).label("oldest"))
            .where(*due)
            .group_by(o.c.tenant_id)
            .order_by(sa.func.min(o.c.next_attempt_at))
            .limit(max_tenants + len(excluded))
        )
        claimed: list[OutboxEvent] = []
        with self.db.engine.begin() as conn:
            tenants = [r.tenant_id for r in conn.execute(t_q) if r.tenant_id not in excluded][:max_tenants]
            for tenant in tenants:
                room = limit - len(claimed)
                if room <= 0:
                    break
                cap = (per_tenant or {}).get(tenant, default_per_tenant if default_per_tenant is not None else limit)
                take = min(room, cap)
                if take <= 0:
                    continue
                # Ordered like the index (sink, status, tenant_id, next_attempt_at), so the scan stops
                # at `take` rows instead of sorting the tenant's whole backlog; only revisions after
                # the first ask whether an earlier one is still pending (a per-row index probe,
                # never an anti-join over the backlog, whatever the table statistics say).
                q = (
                    sa.select(o)
                    .where(*due, o.c.tenant_id == tenant, sa.or_(o.c.revision == 1, ~earlier_pending))
                    .order_by(o.c.next_attempt_at)
                    .limit(take)
                )
                if self.db.is_postgres:
                    q = q.with_for_update(skip_locked=True, of=o)
                claimed += [_event(row) for row in conn.execute(q).all()]
            if claimed:
                conn.execute(
                    o.update()
                    .where(o.c.id.in_([e.id for e in claimed]))
                    .values(leased_until=ts + timedelta(seconds=lease_s), lease_owner=owner)
                )
        return claimed

    def record_attempt(
        self,
        event: OutboxEvent,
        *,
        owner: str,
        ok: bool,
        status_code: int | None,
        error: str | None,
        duration_ms: float | None,
        retry_at: datetime | None,
    ) -> None:
        """Record one attempt: delivered, retry at `retry_at`, or dead when that is None."""
        self.record_attempts([AttemptOutcome(event, ok, status_code, error, duration_ms, retry_at)], owner=owner)

    def record_attempts(self, outcomes: Sequence[AttemptOutcome], *, owner: str) -> None:
        """Record finished attempts in one transaction (a drainer sends hundreds a second).

        The history rows are always written; an event itself only changes while `owner` still
        holds its lease (a drainer that stalled past its lease must not overwrite a newer outcome).
        """
        if not outcomes:
            return
        ts = now()
        o = db.outbox.c
        with self.db.engine.begin() as conn:
            conn.execute(
                db.outbox_attempts.insert(),
                [
                    {"outbox_id": r.event.id, "attempt": r.event.attempts + 1, "at": ts, "ok": r.ok,
                     "status_code": r.status_code, "error": r.error, "duration_ms": r.duration_ms}
                    for r in outcomes
                ],
            )
            delivered = [r.event.id for r in outcomes if r.ok]
            cleared = {"leased_until": None, "lease_owner": None}
            if delivered:
                conn.execute(
                    db.outbox.update()
                    .where(o.id.in_(delivered), o.lease_owner == owner, o.status == "pending")
                    # Cast: a sink without HTTP status codes (the review queue) makes every branch NULL,
                    # which PostgreSQL would type as text.
                    .values(attempts=o.attempts + 1, last_status_code=sa.cast(sa.case(
                        {r.event.id: r.status_code for r in outcomes if r.ok}, value=o.id, else_=None), sa.Integer),
                        last_error=None, status="delivered", delivered_at=ts, next_attempt_at=None, **cleared)
                )
            for r in outcomes:
                if r.ok:
                    continue
                values: dict[str, Any] = {"attempts": o.attempts + 1, "last_status_code": r.status_code,
                                          "last_error": r.error, **cleared}
                if r.retry_at is None:
                    values.update(status="dead", dead_at=ts, next_attempt_at=None)
                else:
                    values.update(next_attempt_at=r.retry_at)
                conn.execute(
                    db.outbox.update()
                    .where(o.id == r.event.id, o.lease_owner == owner, o.status == "pending")
                    .values(**values)
                )

    def defer(self, events: Sequence[OutboxEvent], *, owner: str, until: datetime) -> None:
        """Give leased events back without an attempt (circuit open, shutting down): due at `until`."""
        if not events:
            return
        o = db.outbox.c
        with self.db.engine.begin() as conn:
            conn.execute(
                db.outbox.update()
                .where(o.id.in_([e.id for e in events]), o.lease_owner == owner, o.status == "pending")
                .values(next_attempt_at=until, leased_until=None, lease_owner=None)
            )

    def list(
        self, tenant_id: str, *, sink: str = "webhook", status: str | None = None, limit: int = 100
    ) -> list[OutboxEvent]:
        o = db.outbox.c
        q = sa.select(db.outbox).where(o.tenant_id == tenant_id, o.sink == sink)
        if status:
            q = q.where(o.status == status)
        with self.db.engine.connect() as conn:
            rows = conn.execute(q.order_by(o.id.desc()).limit(limit)).all()
        return [_event(r) for r in rows]

    def for_decision(self, tenant_id: str, decision_id: str, sink: str = "webhook") -> list[OutboxEvent]:
        o = db.outbox.c
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                sa.select(db.outbox)
                .where(o.tenant_id == tenant_id, o.sink == sink,
                       sa.or_(o.decision_id == decision_id, o.message_id == decision_id))
                .order_by(o.revision)
            ).all()
        return [_event(r) for r in rows]

    def attempts(self, event_id: int) -> list[Attempt]:
        a = db.outbox_attempts.c
        with self.db.engine.connect() as conn:
            rows = conn.execute(sa.select(db.outbox_attempts).where(a.outbox_id == event_id).order_by(a.attempt)).all()
        return [Attempt(r.attempt, aware(r.at), r.ok, r.status_code, r.error, r.duration_ms)  # type: ignore[arg-type]
                for r in rows]

    def counts(self, sink: str | None = None) -> dict[str, int]:
        """Events by status (all tenants): the backlog gauges on /metrics."""
        o = db.outbox.c
        q = sa.select(o.status, sa.func.count()).group_by(o.status)
        if sink:
            q = q.where(o.sink == sink)
        with self.db.engine.connect() as conn:
            return {r[0]: int(r[1]) for r in conn.execute(q)}

    def redeliver(
        self, tenant_id: str, decision_id: str, *, sink: str = "webhook", actor: str = "api"
    ) -> OutboxEvent | None:
        """Queue the decision's current revision again for `sink`; None if there is no such decision.

        The attempt history is kept: `attempts` keeps counting and `retry_from` starts a fresh
        retry budget. A decision decided before the webhook existed gets its event now.
        """
        ts = now()
        d = db.decisions.c
        o = db.outbox.c
        with self.db.engine.begin() as conn:
            dec = conn.execute(
                sa.select(d.id, d.message_id, d.revision).where(
                    d.tenant_id == tenant_id, sa.or_(d.id == decision_id, d.message_id == decision_id)
                )
            ).first()
            if dec is None:
                return None
            key = (o.sink == sink, o.decision_id == dec.id, o.revision == dec.revision)
            row = conn.execute(sa.select(db.outbox).where(*key)).first()
            if row is None:
                conn.execute(
                    db.outbox.insert().values(
                        tenant_id=tenant_id, sink=sink, decision_id=dec.id, message_id=dec.message_id,
                        revision=dec.revision, status="pending", attempts=0, retry_from=0, next_attempt_at=ts,
                        created_at=ts,
                    )
                )
            else:
                conn.execute(
                    db.outbox.update()
                    .where(*key)
                    .values(status="pending", retry_from=o.attempts, next_attempt_at=ts, dead_at=None,
                            leased_until=None, lease_owner=None)
                )
            write_audit(conn, tenant_id, actor, "redeliver", dec.id, {"sink": sink, "revision": dec.revision})
            row = conn.execute(sa.select(db.outbox).where(*key)).one()
        return _event(row)
