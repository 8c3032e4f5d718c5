"""The review desk's API: the queue, claims, verdicts, escalation, bulk action, reports, appeals.

The browser UI (`api/routes/review_ui.py`) calls the same core functions (`store.review`), so a
script with the tenant's API key and a reviewer in the browser do exactly the same things. Items a
caller may not see answer 404, never 403: a moderator cannot learn what another guild's queue holds.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from api.deps import RuntimeDep
from api.review_auth import AdminDep, PrincipalDep
from pipeline.logs import request_id as current_request_id
from pipeline.review import REASONS, reasons_for
from pipeline.store.engine import now
from pipeline.types import Action, Id, Message

router = APIRouter(tags=["review"])

Text = Annotated[str, Field(min_length=1, max_length=2000)]
# Reason codes are enums in the schema (GET /v1/review/reasons gives their labels); the store also
# checks that the reason fits the verdict.
ReasonCode = Literal[tuple(c for c, (v, _) in REASONS.items() if v != "escalate")]  # type: ignore[valid-type]
EscalateReason = Literal[tuple(c for c, (v, _) in REASONS.items() if v == "escalate")]  # type: ignore[valid-type]
# Item ids are database integers: anything outside is simply not an item (and must not reach the driver).
ItemId = Annotated[int, Path(ge=1, le=2**31 - 1, description="a review item id")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReviewItemPublic(BaseModel):
    """One queue item. `priority` = severity × reach × (1 + hours waiting); self_harm items come first
    whatever their priority. `sla_s` is how long it may wait; `overdue` once it has waited longer."""

    id: int
    kind: Literal["decision", "report", "appeal"]
    status: Literal["open", "second_review", "escalated", "resolved"]
    queue: Literal["guild", "platform"]
    guild_id: str | None
    message_id: str
    decision_id: str
    revision: int
    action: str
    top_category: str | None
    severity: float
    reach: int
    self_harm: bool
    priority: float
    age_s: float
    sla_s: float
    overdue: bool
    cluster_id: str | None
    submitted_by: str | None
    reason: str | None
    claimed_by: str | None
    claim_expires_at: str | None
    double_review: bool | None = Field(description="null while the item waits for its blind second reviewer")
    verdict: str | None
    first_reviewer: str | None
    resolved_by: str | None
    resolved_at: str | None
    created_at: str


class ReviewItemList(BaseModel):
    items: list[ReviewItemPublic]


class ReviewItemDetail(BaseModel):
    item: ReviewItemPublic
    message: dict[str, Any] | None = Field(description="the message as the chat service sent it, with its context; "
                                           "null when Heron did not keep it")
    decision: dict[str, Any] | None = Field(description="the current revision: scores, reasons per model, "
                                            "model and policy versions")
    author_history: list[dict[str, Any]]
    reports: list[dict[str, Any]]
    verdicts: list[dict[str, Any]] = Field(description="empty while a second reviewer works blind")


class ResolveBody(_Body):
    verdict: Literal["uphold", "overturn"]
    categories: dict[str, bool] = Field(default_factory=dict, description="category -> violates: the reviewer's "
                                        "labels (they become training labels)")
    note: Annotated[str, Field(max_length=2000)] | None = None
    reason: ReasonCode | None = Field(default=None, description="a reason code from GET /v1/review/reasons; default "
                               "violates_policy (uphold) or false_positive (overturn)")
    author_action: Literal["timeout", "ban"] | None = Field(default=None, description="recommend acting on the "
                                                            "author (uphold only): the action becomes timeout_author")
    action: Action | None = Field(default=None, description="the resulting action, instead of the verdict's default")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"verdict": "uphold", "categories": {"toxicity": True, "hate": False}, "note": "direct insult"}]})


class ResolveAnswer(BaseModel):
    item: ReviewItemPublic
    stage: str
    decision: dict[str, Any] | None = Field(description="the revision the verdict made (sent by webhook); null for "
                                            "a blind second verdict, which only measures agreement")


class EscalateBody(_Body):
    reason: EscalateReason = "needs_senior_review"
    note: Annotated[str, Field(max_length=2000)] | None = None


class BulkBody(_Body):
    item_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(default_factory=list, max_length=1000)
    cluster_id: Id | None = None
    verdict: Literal["uphold", "overturn"]
    reason: ReasonCode | None = None
    categories: dict[str, bool] = Field(default_factory=dict)
    note: Annotated[str, Field(max_length=2000)] | None = None


class ClusterBody(_Body):
    message_ids: list[Id] = Field(min_length=1, max_length=10_000)


class ReportCreate(_Body):
    message_id: Id
    reporter: Id = Field(description="the chat service's id of the user who reported it")
    reason: Text
    message: Message | None = Field(default=None, description="the message itself, when Heron may not have kept "
                                    "it (a decision that needed no review on the sync path)")


class AppealCreate(_Body):
    decision_id: Id = Field(description="the decision (or message) id appealed")
    appellant: Id = Field(description="who appeals (usually the author)")
    reason: Text


def _default_reason(verdict: str, reason: str | None) -> str:
    return reason or {"uphold": "violates_policy", "overturn": "false_positive"}[verdict]


@router.get("/v1/review/items", response_model=ReviewItemList, summary="The review queue, by priority")
async def list_items(
    principal: PrincipalDep, rt: RuntimeDep,
    guild_id: Annotated[Id | None, Query(description="one guild's queue")] = None,
    status: Annotated[Literal["open", "escalated", "resolved", "all"], Query()] = "open",
    kind: Annotated[Literal["decision", "report", "appeal"] | None, Query()] = None,
    cluster_id: Annotated[Id | None, Query(description="one spam-wave cluster")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ReviewItemList:
    """Self_harm first, then severity × reach × age. An account sees only its tenant, and a moderator
    only its guilds (escalated items and messages without a guild are the admins' platform queue)."""
    items = await run_in_threadpool(lambda: rt.store.review.list(
        principal, guild_id=guild_id, status=status, kind=kind, cluster_id=cluster_id, limit=limit))
    ts = now()
    return ReviewItemList(items=[ReviewItemPublic(**i.public(principal, ts)) for i in items])


@router.get("/v1/review/items/{item_id}", response_model=ReviewItemDetail, summary="One item with what a reviewer "
            "needs to decide")
async def get_item(item_id: ItemId, principal: PrincipalDep, rt: RuntimeDep) -> ReviewItemDetail:
    d = await run_in_threadpool(rt.store.review.detail, principal, item_id)
    return ReviewItemDetail(item=ReviewItemPublic(**d["item"].public(principal, now())), message=d["message"],
                            decision=d["decision"], author_history=d["author_history"], reports=d["reports"],
                            verdicts=d["verdicts"])


@router.post("/v1/review/items/{item_id}/claim", response_model=ReviewItemPublic, summary="Claim an item (a lock "
             "that expires)")
async def claim(item_id: ItemId, principal: PrincipalDep, rt: RuntimeDep) -> ReviewItemPublic:
    """Held for HERON_REVIEW_CLAIM_S (default 600 s); claiming again renews it. 409 `review_item_claimed` while
    someone else holds it."""
    item = await run_in_threadpool(rt.store.review.claim, principal, item_id)
    return ReviewItemPublic(**item.public(principal, now()))


@router.post("/v1/review/items/{item_id}/release", response_model=ReviewItemPublic, summary="Give a claim back")
async def release(item_id: ItemId, principal: PrincipalDep, rt: RuntimeDep) -> ReviewItemPublic:
    item = await run_in_threadpool(rt.store.review.release, principal, item_id)
    return ReviewItemPublic(**item.public(principal, now()))


@router.post("/v1/review/items/{item_id}/resolve", response_model=ResolveAnswer, summary="Uphold or overturn: the "
             "decision's next revision, sent by signed webhook")
async def resolve(item_id: ItemId, body: ResolveBody, principal: PrincipalDep, rt: RuntimeDep) -> ResolveAnswer:
    """A session must hold the claim; an API key may resolve any item nobody holds. The verdict, the
    audit row and the decision's revision (with its webhook event) commit together."""
    rid = current_request_id.get()
    res = await run_in_threadpool(lambda: rt.store.review.resolve(
        principal, item_id, verdict=body.verdict, reason_code=_default_reason(body.verdict, body.reason),
        categories=body.categories, note=body.note, author_action=body.author_action, action=body.action,
        request_id=rid))
    rt.wake_drainers()
    return ResolveAnswer(item=ReviewItemPublic(**res.item.public(principal, now())), stage=res.stage,
                         decision=res.decision.model_dump(mode="json") if res.decision else None)


@router.post("/v1/review/items/{item_id}/escalate", response_model=ResolveAnswer, summary="Hand to the tenant's "
             "admins")
async def escalate(item_id: ItemId, body: EscalateBody, principal: PrincipalDep, rt: RuntimeDep) -> ResolveAnswer:
    rid = current_request_id.get()
    res = await run_in_threadpool(lambda: rt.store.review.escalate(
        principal, item_id, reason_code=body.reason, note=body.note, request_id=rid))
    rt.wake_drainers()
    return ResolveAnswer(item=ReviewItemPublic(**res.item.public(principal, now())), stage=res.stage,
                         decision=res.decision.model_dump(mode="json") if res.decision else None)


@router.post("/v1/review/bulk", summary="One verdict over many items or a spam-wave cluster")
async def bulk(body: BulkBody, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    """Each item is resolved (and revised) on its own; items held by someone else or already closed are
    listed with their error and skipped."""
    rid = current_request_id.get()
    results = await run_in_threadpool(lambda: rt.store.review.bulk(
        principal, item_ids=body.item_ids, cluster_id=body.cluster_id, verdict=body.verdict,
        reason_code=_default_reason(body.verdict, body.reason), categories=body.categories, note=body.note,
        request_id=rid))
    rt.wake_drainers()
    return {"results": results, "resolved": sum(1 for r in results if r["ok"])}


@router.put("/v1/review/clusters/{cluster_id}", summary="Group messages' open items as one spam-wave cluster")
async def tag_cluster(cluster_id: Id, body: ClusterBody, principal: AdminDep, rt: RuntimeDep) -> dict[str, Any]:
    n = await run_in_threadpool(rt.store.review.tag_cluster, principal.tenant_id, cluster_id, body.message_ids,
                                principal.actor)
    return {"cluster_id": cluster_id, "items": n}


@router.get("/v1/review/reasons", summary="The reasons a verdict may give")
async def reasons(principal: PrincipalDep) -> dict[str, list[dict[str, str]]]:
    return {v: [{"code": c, "label": label} for c, label in reasons_for(v)] for v in ("uphold", "overturn",
                                                                                      "escalate")}


@router.get("/v1/review/stats", summary="Reviewer quality: agreement, verdicts per reviewer, time to verdict")
async def stats(principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    return await run_in_threadpool(rt.store.review.stats, principal)  # type: ignore[no-any-return]


@router.post("/v1/reports", response_model=ReviewItemPublic, status_code=201, summary="A user reported a message")
async def report(body: ReportCreate, principal: AdminDep, rt: RuntimeDep) -> ReviewItemPublic:
    """Queues the message for review (once per message; each distinct reporter adds to its reach)."""
    item = await run_in_threadpool(rt.store.review.report, principal.tenant_id, body.message_id, body.reporter,
                                   body.reason, body.message)
    return ReviewItemPublic(**item.public(principal, now()))


@router.post("/v1/appeals", response_model=ReviewItemPublic, status_code=201, summary="Appeal a decision")
async def appeal(body: AppealCreate, principal: AdminDep, rt: RuntimeDep) -> ReviewItemPublic:
    """Routed to the tenant admins' platform queue. Uphold keeps the decision's action, overturn allows the
    message; either way the outcome goes to the chat service as a signed revision (cause `appeal`)."""
    item = await run_in_threadpool(rt.store.review.appeal, principal.tenant_id, body.decision_id, body.appellant,
                                   body.reason)
    return ReviewItemPublic(**item.public(principal, now()))


__all__ = ["router"]
