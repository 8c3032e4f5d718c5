"""The review queue: held and flagged decisions, reports and appeals, worked by people.

Guarantees live in the database, as for decisions:
- one item per (tenant, kind, message): a decision revised again, or reported twice, updates its
  item instead of queueing it twice;
- a claim is a conditional UPDATE (free, expired, or already yours), so two reviewers never hold
  one item, and a claim that is abandoned frees itself when it expires;
- a verdict closes its item, records itself, writes the audit row and makes the next revision of
  the decision (with its outbox events: the chat service gets a signed webhook) in ONE
  transaction: no verdict without its revision, no revision without its verdict.

Items arrive through the outbox (`ReviewRoute` below, drained by `pipeline.sinks.review.ReviewSink`),
so decisions from the sync path, the async path and later revisions (an image verdict) all reach
the queue the same way.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline import db
from pipeline.errors import Conflict, Forbidden, InvalidInput, NotFound
from pipeline.review import (
    Principal,
    age_text,
    check_reason,
    priority,
    public_categories,
    revised_decision,
    self_harm,
    severity,
    sla_s,
    wants_review,
)
from pipeline.store.audit import write_audit
from pipeline.store.engine import Database, aware, now
from pipeline.store.review_schema import review_items, review_reports, review_verdicts
from pipeline.types import Action, Decision, Message

OPEN_STATUSES = ("open", "second_review", "escalated")
STATUS_FILTERS: dict[str, tuple[str, ...]] = {
    "open": ("open", "second_review"),
    "escalated": ("escalated",),
    "resolved": ("resolved",),
    "all": ("open", "second_review", "escalated", "resolved"),
}


class ReviewRoute:
    """Outbox route: every revision a person should look at goes to the `review` sink."""

    name = "review"

    def select(self, conn: Connection, events: Sequence[tuple[str, Decision]]) -> list[tuple[str, Decision]]:
        return [(t, d) for t, d in events if wants_review(d)]


@dataclass
class ReviewItem:
    id: int
    tenant_id: str
    guild_id: str | None
    kind: str
    message_id: str
    decision_id: str
    revision: int
    action: str
    top_category: str | None
    severity: float
    reach: int
    self_harm: bool
    queue: str
    status: str
    cluster_id: str | None
    submitted_by: str | None
    reason: str | None
    claimed_by: str | None
    claimed_at: datetime | None
    claim_expires_at: datetime | None
    double_review: bool
    first_reviewer: str | None
    verdict: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # computed when read
    age_s: float = 0.0
    priority: float = 0.0
    sla_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def overdue(self) -> bool:
        return self.status in OPEN_STATUSES and self.age_s > self.sla_s

    @property
    def age_text(self) -> str:
        return age_text(self.age_s)

    @property
    def sla_text(self) -> str:
        return age_text(self.sla_s)

    def claim_active(self, at: datetime) -> bool:
        return self.claimed_by is not None and self.claim_expires_at is not None and self.claim_expires_at > at

    def public(self, principal: Principal, at: datetime) -> dict[str, Any]:
        """The JSON an API caller gets. A second reviewer works blind: the first verdict and who
        gave it are hidden from everyone but admins until the item closes."""
        blind = self.status == "second_review" and principal.role != "admin"
        return {
            "id": self.id, "kind": self.kind, "status": self.status, "queue": self.queue,
            "guild_id": self.guild_id, "message_id": self.message_id, "decision_id": self.decision_id,
            "revision": self.revision, "action": self.action, "top_category": self.top_category,
            "severity": round(self.severity, 4), "reach": self.reach, "self_harm": self.self_harm,
            "priority": round(self.priority, 4), "age_s": round(self.age_s, 1), "sla_s": self.sla_s,
            "overdue": self.overdue, "cluster_id": self.cluster_id, "submitted_by": self.submitted_by,
            "reason": self.reason,
            "claimed_by": self.claimed_by if self.claim_active(at) else None,
            "claim_expires_at": self.claim_expires_at.isoformat() if self.claim_active(at) and self.claim_expires_at
            else None,
            "double_review": self.double_review if not blind else None,
            "verdict": None if blind else self.verdict,
            "first_reviewer": None if blind else self.first_reviewer,
            "resolved_by": None if blind else self.resolved_by,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at and not blind else None,
            "created_at": self.created_at.isoformat(),
        }


def _item(row: Any, at: datetime) -> ReviewItem:
    m = row._mapping
    item = ReviewItem(**{k: m[k] for k in review_items.c.keys()})
    for name in ("claimed_at", "claim_expires_at", "resolved_at", "created_at", "updated_at"):
        setattr(item, name, aware(getattr(item, name)))
    item.self_harm = bool(item.self_harm)
    item.double_review = bool(item.double_review)
    item.age_s = (at - item.created_at).total_seconds()
    item.sla_s = sla_s(item.kind, item.self_harm)
    # A closed item stops ageing: its priority no longer matters.
    item.priority = priority(item.severity, item.reach, item.age_s if item.status in OPEN_STATUSES else 0.0)
    return item


def sort_key(item: ReviewItem) -> tuple[int, float, float]:
    """self_harm first, then severity × reach × age, then oldest."""
    return (0 if item.self_harm else 1, -item.priority, -item.age_s)


@dataclass(frozen=True)
class ResolveResult:
    item: ReviewItem
    decision: Decision | None  # the revision the verdict made (None for a blind second verdict)
    stage: str


class ReviewQueue:
    def __init__(self, database: Database, decisions: Any, double_share: float = 0.0, claim_s: float = 600.0) -> None:
        self.db = database
        self.decisions = decisions  # pipeline.store.decisions.Decisions (revise_in)
        self.double_share = double_share
        self.claim_s = claim_s

    # ---- arriving ------------------------------------------------------------------------------
    def _sampled(self, tenant_id: str, message_id: str) -> bool:
        """Double-review sampling, by hash: reproducible, and independent of arrival order."""
        if self.double_share <= 0:
            return False
        h = int(hashlib.sha256(f"{tenant_id}:{message_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return h < self.double_share

    def enqueue_decision(self, tenant_id: str, decision: Decision) -> ReviewItem | None:
        """Queue (or refresh) the item of a held or flagged decision; None if it needs no review or
        its item was already closed by a person."""
        if not wants_review(decision):
            return None
        ts = now()
        sev, top = severity(decision)
        sh = self_harm(decision)
        t = review_items.c
        with self.db.engine.begin() as conn:
            existing = conn.execute(
                sa.select(review_items).where(t.tenant_id == tenant_id, t.kind == "decision",
                                              t.message_id == decision.message_id)
            ).first()
            if existing is None:
                conn.execute(
                    self.db.insert(review_items).on_conflict_do_nothing().values(
                        tenant_id=tenant_id, guild_id=decision.guild_id, kind="decision",
                        message_id=decision.message_id, decision_id=decision.id, revision=decision.revision,
                        action=decision.action.value, top_category=top, severity=sev, reach=1, self_harm=sh,
                        queue="guild" if decision.guild_id else "platform", status="open",
                        cluster_id=decision.cluster_id,  # a spam wave's held messages review as one
                        double_review=self._sampled(tenant_id, decision.message_id),
                        created_at=ts, updated_at=ts,
                    )
                )
                write_audit(conn, tenant_id, "system:review", "review_queued", decision.message_id,
                            {"kind": "decision", "action": decision.action.value, "revision": decision.revision})
            elif existing.status in OPEN_STATUSES and existing.revision < decision.revision:
                conn.execute(
                    review_items.update().where(t.id == existing.id).values(
                        revision=decision.revision, action=decision.action.value, top_category=top,
                        severity=max(sev, existing.severity), self_harm=sh or bool(existing.self_harm), updated_at=ts,
                        cluster_id=existing.cluster_id or decision.cluster_id,
                    )
                )
            row = conn.execute(
                sa.select(review_items).where(t.tenant_id == tenant_id, t.kind == "decision",
                                              t.message_id == decision.message_id)
            ).one()
        return _item(row, ts)

    def _current_decision(self, conn: Connection, tenant_id: str, decision_or_message_id: str) -> Decision | None:
        c = db.decisions.c
        row = conn.execute(
            sa.select(c.payload).where(
                c.tenant_id == tenant_id,
                sa.or_(c.id == decision_or_message_id, c.message_id == decision_or_message_id),
            )
        ).first()
        return Decision.model_validate(row.payload) if row else None

    def report(self, tenant_id: str, message_id: str, reporter: str, reason: str,
               message: Message | None = None) -> ReviewItem:
        """A user of the chat service reported a message: queue it (or add a reporter to its item).

        Reach is the number of distinct reporters; it also raises the held item of the same message,
        if there is one. `message` lets the chat service supply the text when Heron did not keep it
        (a sync decision that needed no review)."""
        ts = now()
        t = review_items.c
        with self.db.engine.begin() as conn:
            decision = self._current_decision(conn, tenant_id, message_id)
            if decision is None:
                raise NotFound(f"no decision for message {message_id!r} in this tenant; only messages Heron "
                               "has decided can be reported", code="decision_not_found")
            if message is not None:  # stored under the reported id, whatever id it carried
                message = message.model_copy(update={"id": decision.message_id})
                conn.execute(
                    self.db.insert(db.messages).on_conflict_do_nothing().values(
                        tenant_id=tenant_id, message_id=message.id, guild_id=message.guild_id,
                        payload=message.model_dump(mode="json"), status="decided", attempts=0,
                        received_at=ts, decided_at=ts,
                    )
                )
            conn.execute(
                self.db.insert(review_reports).on_conflict_do_nothing().values(
                    tenant_id=tenant_id, message_id=decision.message_id, reporter=reporter, reason=reason,
                    created_at=ts,
                )
            )
            r = review_reports.c
            reach = int(conn.execute(
                sa.select(sa.func.count()).where(r.tenant_id == tenant_id, r.message_id == decision.message_id)
            ).scalar() or 1)
            sev, top = severity(decision)
            key = (t.tenant_id == tenant_id, t.kind == "report", t.message_id == decision.message_id)
            existing = conn.execute(sa.select(review_items).where(*key)).first()
            if existing is None:
                conn.execute(review_items.insert().values(
                    tenant_id=tenant_id, guild_id=decision.guild_id, kind="report", message_id=decision.message_id,
                    decision_id=decision.id, revision=decision.revision, action=decision.action.value,
                    top_category=top, severity=max(0.3, sev), reach=reach, self_harm=self_harm(decision),
                    queue="guild" if decision.guild_id else "platform", status="open", submitted_by=reporter,
                    reason=reason, double_review=self._sampled(tenant_id, "report:" + decision.message_id),
                    created_at=ts, updated_at=ts,
                ))
            else:
                values: dict[str, Any] = {"reach": reach, "updated_at": ts, "revision": decision.revision,
                                          "action": decision.action.value}
                if existing.status == "resolved":  # reported again after a verdict: a fresh look
                    values.update(status="open", verdict=None, resolved_by=None, resolved_at=None,
                                  claimed_by=None, claim_expires_at=None, created_at=ts)
                conn.execute(review_items.update().where(*key).values(**values))
            conn.execute(
                review_items.update()
                .where(t.tenant_id == tenant_id, t.kind == "decision", t.message_id == decision.message_id,
                       t.status.in_(OPEN_STATUSES))
                .values(reach=reach + 1, updated_at=ts)
            )
            write_audit(conn, tenant_id, "chat-service:report", "review_report", decision.message_id,
                        {"reporter": reporter, "reason": reason, "reach": reach})
            row = conn.execute(sa.select(review_items).where(*key)).one()
        return _item(row, ts)

    def appeal(self, tenant_id: str, decision_or_message_id: str, appellant: str, reason: str) -> ReviewItem:
        """The author (through the chat service) appeals a decision. Appeals go to the platform queue:
        the guild's own moderators made or upheld the call being appealed. One appeal per message."""
        ts = now()
        t = review_items.c
        with self.db.engine.begin() as conn:
            decision = self._current_decision(conn, tenant_id, decision_or_message_id)
            if decision is None:
                raise NotFound(f"no decision {decision_or_message_id!r} for this tenant", code="decision_not_found")
            key = (t.tenant_id == tenant_id, t.kind == "appeal", t.message_id == decision.message_id)
            if conn.execute(sa.select(t.id).where(*key)).first() is not None:
                raise Conflict(f"the decision on message {decision.message_id!r} was already appealed",
                               code="appeal_exists")
            sev, top = severity(decision)
            conn.execute(review_items.insert().values(
                tenant_id=tenant_id, guild_id=decision.guild_id, kind="appeal", message_id=decision.message_id,
                decision_id=decision.id, revision=decision.revision, action=decision.action.value, top_category=top,
                severity=max(0.5, sev), reach=1, self_harm=self_harm(decision), queue="platform", status="open",
                submitted_by=appellant, reason=reason, double_review=False, created_at=ts, updated_at=ts,
            ))
            write_audit(conn, tenant_id, "chat-service:appeal", "review_appeal", decision.message_id,
                        {"appellant": appellant, "reason": reason, "decision_id": decision.id,
                         "revision": decision.revision})
            row = conn.execute(sa.select(review_items).where(*key)).one()
        return _item(row, ts)

    def tag_cluster(self, tenant_id: str, cluster_id: str, message_ids: list[str], actor: str) -> int:
        """Mark the open items of these messages as one spam-wave cluster (for bulk action)."""
        t = review_items.c
        with self.db.engine.begin() as conn:
            n = conn.execute(
                review_items.update()
                .where(t.tenant_id == tenant_id, t.message_id.in_(message_ids), t.status.in_(OPEN_STATUSES))
                .values(cluster_id=cluster_id, updated_at=now())
            ).rowcount
            write_audit(conn, tenant_id, actor, "review_cluster", cluster_id, {"messages": len(message_ids),
                                                                              "items": n})
        return int(n or 0)

    # ---- reading -------------------------------------------------------------------------------
    def _scope(self, q: Any, principal: Principal) -> Any:
        t = review_items.c
        q = q.where(t.tenant_id == principal.tenant_id)
        if principal.role != "admin" and principal.guilds is not None:
            q = q.where(t.queue == "guild", t.guild_id.in_(sorted(principal.guilds)))
        return q

    def list(
        self, principal: Principal, *, guild_id: str | None = None, status: str = "open", kind: str | None = None,
        cluster_id: str | None = None, limit: int = 100,
    ) -> list[ReviewItem]:
        """Items the principal may see, by priority (self_harm first). Sorted in Python because age
        is part of priority: at most 2,000 candidates are read per call."""
        if status not in STATUS_FILTERS:
            raise InvalidInput(f"status must be one of {', '.join(STATUS_FILTERS)}", code="validation_error")
        t = review_items.c
        q = self._scope(sa.select(review_items), principal).where(t.status.in_(STATUS_FILTERS[status]))
        if guild_id is not None:
            q = q.where(t.guild_id == guild_id)
        if kind is not None:
            q = q.where(t.kind == kind)
        if cluster_id is not None:
            q = q.where(t.cluster_id == cluster_id)
        if status == "resolved":
            q = q.order_by(t.resolved_at.desc())
        else:
            q = q.order_by(t.self_harm.desc(), t.severity.desc(), t.created_at)
        ts = now()
        with self.db.engine.connect() as conn:
            items = [_item(r, ts) for r in conn.execute(q.limit(2000))]
        if status != "resolved":
            items.sort(key=sort_key)
        return items[:limit]

    def get(self, principal: Principal, item_id: int, conn: Connection | None = None) -> ReviewItem:
        """The item, or NotFound when it does not exist *or* the principal may not see it (so an
        account cannot learn what another guild's queue holds)."""
        q = sa.select(review_items).where(review_items.c.id == item_id)
        if conn is None:
            with self.db.engine.connect() as c:
                row = c.execute(q).first()
        else:
            row = conn.execute(q.with_for_update() if self.db.is_postgres else q).first()
        if row is None or not principal.sees(row.tenant_id, row.guild_id, row.queue):
            raise NotFound(f"no review item {item_id} here", code="review_item_not_found")
        return _item(row, now())

    def detail(self, principal: Principal, item_id: int) -> dict[str, Any]:
        """What a reviewer needs to decide: the message and its context, the decision with every
        model's scores and reasons and the policy version, the author's recent decisions, the
        reports, and (unless blind) earlier verdicts."""
        item = self.get(principal, item_id)
        m = db.messages.c
        d = db.decisions.c
        with self.db.engine.connect() as conn:
            mrow = conn.execute(sa.select(m.payload).where(m.tenant_id == item.tenant_id,
                                                           m.message_id == item.message_id)).first()
            message = dict(mrow.payload) if mrow else None
            drow = conn.execute(sa.select(d.payload).where(d.tenant_id == item.tenant_id,
                                                           d.message_id == item.message_id)).first()
            decision = dict(drow.payload) if drow else None
            history: list[dict[str, Any]] = []
            author = (message or {}).get("author", {}).get("id")
            if author and author != "unknown":
                aq = (
                    sa.select(d.payload, d.created_at)
                    .select_from(db.messages.join(db.decisions, sa.and_(d.tenant_id == m.tenant_id,
                                                                        d.message_id == m.message_id)))
                    .where(m.tenant_id == item.tenant_id, m.payload[("author", "id")].as_string() == author,
                           m.message_id != item.message_id)
                    .order_by(d.created_at.desc())
                    .limit(10)
                )
                history = [
                    {"message_id": r.payload["message_id"], "action": r.payload["action"],
                     "revision": r.payload.get("revision", 1), "decided_at": r.payload.get("decided_at")}
                    for r in conn.execute(aq)
                ]
            r = review_reports.c
            reports = [
                {"reporter": x.reporter, "reason": x.reason, "at": aware(x.created_at).isoformat()}  # type: ignore[union-attr]
                for x in conn.execute(sa.select(review_reports).where(r.tenant_id == item.tenant_id,
                                                                      r.message_id == item.message_id)
                                      .order_by(r.id))
            ]
            verdicts = self._verdicts(conn, item.id)
        blind = item.status == "second_review" and principal.role != "admin"
        return {"item": item, "message": message, "decision": decision, "author_history": history,
                "reports": reports, "verdicts": [] if blind else verdicts}

    @staticmethod
    def _verdicts(conn: Connection, item_id: int) -> list[dict[str, Any]]:
        v = review_verdicts.c
        return [
            {"reviewer": x.reviewer, "stage": x.stage, "verdict": x.verdict, "reason": x.reason_code,
             "categories": x.categories, "note": x.note, "author_action": x.author_action,
             "resulting_action": x.resulting_action, "decision_revision": x.decision_revision,
             "decided_at": aware(x.decided_at).isoformat(), "seconds": x.seconds}  # type: ignore[union-attr]
            for x in conn.execute(sa.select(review_verdicts).where(v.item_id == item_id).order_by(v.id))
        ]

    # ---- working -------------------------------------------------------------------------------
    def claim(self, principal: Principal, item_id: int, ttl_s: float | None = None) -> ReviewItem:
        """Hold the item for `ttl_s` (default HERON_REVIEW_CLAIM_S); renewing your own claim is fine."""
        item = self.get(principal, item_id)
        if not principal.can_act:
            raise _forbidden(principal)
        ts = now()
        t = review_items.c
        with self.db.engine.begin() as conn:
            n = conn.execute(
                review_items.update()
                .where(
                    t.id == item_id,
                    t.status.in_(OPEN_STATUSES),
                    sa.or_(t.claimed_by.is_(None), t.claim_expires_at < ts, t.claimed_by == principal.actor),
                    sa.or_(t.status != "second_review", t.first_reviewer.is_(None),
                           t.first_reviewer != principal.actor),
                )
                .values(claimed_by=principal.actor, claimed_at=ts,
                        claim_expires_at=ts + timedelta(seconds=ttl_s or self.claim_s), updated_at=ts)
            ).rowcount
            if n:
                write_audit(conn, principal.tenant_id, principal.actor, "review_claim", item.message_id,
                            {"item_id": item_id, "kind": item.kind})
        if not n:
            self._explain_refusal(principal, self.get(principal, item_id), ts)
        return self.get(principal, item_id)

    @staticmethod
    def _explain_refusal(principal: Principal, item: ReviewItem, ts: datetime) -> None:
        if item.status == "resolved":
            raise Conflict(f"review item {item.id} is already resolved", code="review_item_closed")
        if item.status == "second_review" and item.first_reviewer == principal.actor:
            raise Conflict(f"you gave review item {item.id} its first verdict; a second reviewer looks at it blind",
                           code="second_review_blind")
        if item.claim_active(ts) and item.claimed_by != principal.actor:
            raise Conflict(
                f"review item {item.id} is claimed by {item.claimed_by} until "
                f"{item.claim_expires_at.isoformat() if item.claim_expires_at else '?'}",
                code="review_item_claimed",
            )
        raise Conflict(f"claim review item {item.id} first (POST /v1/review/items/{item.id}/claim)",
                       code="review_claim_required")

    def release(self, principal: Principal, item_id: int) -> ReviewItem:
        item = self.get(principal, item_id)
        if not principal.can_act:
            raise _forbidden(principal)
        t = review_items.c
        with self.db.engine.begin() as conn:
            conn.execute(review_items.update().where(t.id == item_id, t.claimed_by == principal.actor)
                         .values(claimed_by=None, claim_expires_at=None, updated_at=now()))
            write_audit(conn, principal.tenant_id, principal.actor, "review_release", item.message_id,
                        {"item_id": item_id})
        return self.get(principal, item_id)

    def _hold(self, conn: Connection, principal: Principal, item_id: int, *, implicit: bool) -> ReviewItem:
        """Inside the verdict's transaction: the locked item, checked to be the principal's to decide.
        `implicit` (an API key, a bulk action) takes an item nobody else holds without a prior claim."""
        item = self.get(principal, item_id, conn)
        if not principal.can_act:
            raise _forbidden(principal)
        ts = now()
        mine = item.claimed_by == principal.actor and item.claim_active(ts)
        free = not item.claim_active(ts)
        if item.status not in OPEN_STATUSES or not (mine or (implicit and free)) or (
            item.status == "second_review" and item.first_reviewer == principal.actor
        ):
            self._explain_refusal(principal, item, ts)
        if item.status == "escalated" and principal.role != "admin":
            raise _forbidden(principal, "escalated items are decided by the tenant's admins")
        if item.claimed_at is None or not mine:
            item.claimed_at = ts
        return item

    def resolve(
        self, principal: Principal, item_id: int, *, verdict: str, reason_code: str, categories: dict[str, Any],
        note: str | None = None, author_action: str | None = None, action: Action | None = None,
        implicit_claim: bool = False, stage_override: str | None = None, request_id: str | None = None,
    ) -> ResolveResult:
        """Uphold or overturn: close the item (or pass it to its blind second reviewer), record the
        verdict, and make the next revision of the decision, all in one transaction."""
        if verdict not in ("uphold", "overturn"):
            raise InvalidInput("verdict must be 'uphold' or 'overturn'", code="validation_error")
        try:
            check_reason(verdict, reason_code)
            labels = public_categories(categories)
        except ValueError as exc:
            raise InvalidInput(str(exc), code="invalid_review_reason" if "reason" in str(exc) else
                               "validation_error") from None
        if author_action is not None and author_action not in ("timeout", "ban"):
            raise InvalidInput("author_action must be 'timeout' or 'ban'", code="validation_error")
        ts = now()
        t = review_items.c
        with self.db.engine.begin() as conn:
            item = self._hold(conn, principal, item_id, implicit=implicit_claim or principal.via == "api_key")
            second = item.status == "second_review"
            stage = stage_override or ("second" if second else ("final" if item.status == "escalated" else "first"))
            new: Decision | None = None
            values: dict[str, Any] = {"claimed_by": None, "claim_expires_at": None, "updated_at": ts}
            if second:
                first = conn.execute(
                    sa.select(review_verdicts.c.verdict).where(review_verdicts.c.item_id == item.id,
                                                               review_verdicts.c.stage == "first")
                    .order_by(review_verdicts.c.id.desc())
                ).scalar()
                if first == verdict:
                    values.update(status="resolved")
                else:  # the two reviewers disagree: an admin decides, and that verdict goes out
                    values.update(status="escalated", queue="platform")
            else:
                current = self._current_decision(conn, item.tenant_id, item.message_id)
                if current is None:
                    raise NotFound(f"the decision of review item {item.id} is gone", code="decision_not_found")
                revised = revised_decision(current, kind=item.kind, verdict=verdict, reason_code=reason_code,
                                           actor=principal.actor, note=note, author_action=author_action,
                                           action=action)
                new = self.decisions.revise_in(
                    conn, item.tenant_id, revised, cause="appeal" if item.kind == "appeal" else "review",
                    actor=principal.actor, note=note, request_id=request_id,
                )
                if item.double_review and stage == "first":
                    values.update(status="second_review", first_reviewer=principal.actor, verdict=verdict)
                else:
                    values.update(status="resolved", verdict=verdict, resolved_by=principal.actor, resolved_at=ts)
            if second and values["status"] == "resolved":
                values.update(resolved_by=principal.actor, resolved_at=ts)
            conn.execute(review_items.update().where(t.id == item.id).values(**values))
            claimed_at = item.claimed_at or ts
            conn.execute(review_verdicts.insert().values(
                tenant_id=item.tenant_id, item_id=item.id, guild_id=item.guild_id, kind=item.kind,
                reviewer=principal.actor, stage=stage, verdict=verdict, reason_code=reason_code, categories=labels,
                note=note, author_action=author_action, resulting_action=new.action.value if new else None,
                decision_revision=new.revision if new else None, claimed_at=claimed_at, decided_at=ts,
                seconds=(ts - claimed_at).total_seconds(),
            ))
            write_audit(conn, item.tenant_id, principal.actor, "review_verdict", item.message_id, {
                "item_id": item.id, "kind": item.kind, "stage": stage, "verdict": verdict, "reason": reason_code,
                "categories": labels, "author_action": author_action,
                "decision_revision": new.revision if new else None, "status": values["status"],
                **({"note": note} if note else {}),
            })
            row = conn.execute(sa.select(review_items).where(t.id == item.id)).one()
        from pipeline.metrics import observe_review_verdict

        observe_review_verdict(verdict, stage, (ts - claimed_at).total_seconds())
        return ResolveResult(_item(row, ts), new, stage)

    def escalate(self, principal: Principal, item_id: int, *, reason_code: str, note: str | None = None,
                 request_id: str | None = None) -> ResolveResult:
        """Hand the item to the tenant's admins (the platform queue). The chat service hears of it
        as a revision with the same action and a reason saying it was escalated."""
        try:
            check_reason("escalate", reason_code)
        except ValueError as exc:
            raise InvalidInput(str(exc), code="invalid_review_reason") from None
        ts = now()
        t = review_items.c
        with self.db.engine.begin() as conn:
            item = self._hold(conn, principal, item_id, implicit=principal.via == "api_key")
            current = self._current_decision(conn, item.tenant_id, item.message_id)
            if current is None:
                raise NotFound(f"the decision of review item {item.id} is gone", code="decision_not_found")
            from pipeline.review import REASONS
            from pipeline.types import Reason

            text = f"review: escalated ({REASONS[reason_code][1]}) by {principal.actor}" + (f": {note}" if note else "")
            revised = current.model_copy(update={"reasons": [*current.reasons, Reason(
                action=current.action, source="review", text=text[:2000])]})
            new = self.decisions.revise_in(conn, item.tenant_id, revised, cause="review", actor=principal.actor,
                                           note=note, request_id=request_id)
            conn.execute(review_items.update().where(t.id == item.id).values(
                status="escalated", queue="platform", claimed_by=None, claim_expires_at=None, updated_at=ts))
            claimed_at = item.claimed_at or ts
            conn.execute(review_verdicts.insert().values(
                tenant_id=item.tenant_id, item_id=item.id, guild_id=item.guild_id, kind=item.kind,
                reviewer=principal.actor, stage="escalate", verdict="escalate", reason_code=reason_code,
                categories={}, note=note, resulting_action=new.action.value, decision_revision=new.revision,
                claimed_at=claimed_at, decided_at=ts, seconds=(ts - claimed_at).total_seconds(),
            ))
            write_audit(conn, item.tenant_id, principal.actor, "review_escalate", item.message_id,
                        {"item_id": item.id, "reason": reason_code, "decision_revision": new.revision,
                         **({"note": note} if note else {})})
            row = conn.execute(sa.select(review_items).where(t.id == item.id)).one()
        from pipeline.metrics import observe_review_verdict

        observe_review_verdict("escalate", "escalate", (ts - claimed_at).total_seconds())
        return ResolveResult(_item(row, ts), new, "escalate")

    def bulk(
        self, principal: Principal, *, item_ids: list[int] | None, cluster_id: str | None, verdict: str,
        reason_code: str, categories: dict[str, Any], note: str | None = None, request_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """One verdict over many items (a spam wave): each item is its own transaction and its own
        revision; an item someone else holds, or one already closed, is reported and skipped."""
        ids = list(item_ids or [])
        if cluster_id is not None:
            ids += [i.id for i in self.list(principal, cluster_id=cluster_id, status="open", limit=1000)
                    if i.id not in ids]
        if not ids:
            raise InvalidInput("give item_ids or a cluster_id with open items", code="validation_error")
        out: list[dict[str, Any]] = []
        for item_id in ids:
            try:
                res = self.resolve(principal, item_id, verdict=verdict, reason_code=reason_code,
                                   categories=categories, note=note, implicit_claim=True, stage_override="bulk",
                                   request_id=request_id)
                out.append({"id": item_id, "ok": True, "status": res.item.status,
                            "revision": res.decision.revision if res.decision else None})
            except (Conflict, NotFound) as exc:
                out.append({"id": item_id, "ok": False, "error": {"code": exc.code, "message": exc.message}})
        return out

    # ---- quality -------------------------------------------------------------------------------
    def stats(self, principal: Principal) -> dict[str, Any]:
        """Reviewer quality within what the principal sees: agreement on double-reviewed items (verdict
        and per category), verdicts per reviewer, time from claim to verdict, open and overdue items."""
        v = review_verdicts.c
        q = sa.select(review_verdicts).where(v.tenant_id == principal.tenant_id)
        if principal.role != "admin" and principal.guilds is not None:
            q = q.where(v.guild_id.in_(sorted(principal.guilds)))
        with self.db.engine.connect() as conn:
            rows = conn.execute(q.order_by(v.id)).all()
        by_item: dict[int, dict[str, Any]] = {}
        per_reviewer: dict[str, list[float]] = {}
        for r in rows:
            if r.stage in ("first", "second", "bulk", "final"):
                per_reviewer.setdefault(r.reviewer, []).append(float(r.seconds or 0.0))
            if r.stage in ("first", "second"):
                by_item.setdefault(r.item_id, {})[r.stage] = r
        pairs = [(p["first"], p["second"]) for p in by_item.values() if "first" in p and "second" in p]
        cat_agree: dict[str, list[bool]] = {}
        for a, b in pairs:
            for cat in set(a.categories) & set(b.categories):
                cat_agree.setdefault(cat, []).append(bool(a.categories[cat]) == bool(b.categories[cat]))
        seconds = [float(r.seconds or 0.0) for r in rows if r.stage != "escalate"]
        open_items = self.list(principal, status="open", limit=100000)
        return {
            "double_reviewed": len(pairs),
            "verdict_agreement": (sum(a.verdict == b.verdict for a, b in pairs) / len(pairs)) if pairs else None,
            "category_agreement": {c: {"rate": sum(x) / len(x), "pairs": len(x)} for c, x in sorted(cat_agree.items())},
            "reviewers": {k: {"verdicts": len(x), "median_seconds": statistics.median(x)}
                          for k, x in sorted(per_reviewer.items())},
            "verdicts": len(seconds),
            "median_seconds_to_verdict": statistics.median(seconds) if seconds else None,
            "open": len(open_items),
            "overdue": sum(1 for i in open_items if i.overdue),
        }

    def quality_all(self) -> list[dict[str, Any]]:
        """Per tenant, for /metrics: agreement per category and verdicts per reviewer."""
        with self.db.engine.connect() as conn:
            tenants = [r[0] for r in conn.execute(sa.select(review_verdicts.c.tenant_id).distinct())]
        out = []
        for tenant in tenants:
            p = Principal(tenant_id=tenant, actor="system:metrics", role="admin", guilds=None)
            out.append({"tenant": tenant, **self.stats(p)})
        return out


def _forbidden(principal: Principal, why: str | None = None) -> Exception:
    return Forbidden(why or f"a {principal.role} may read the queue but not act on it", code="review_forbidden")
