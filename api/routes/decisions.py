"""Decisions as a chat service reconciles them: a filtered, paged list, revision history, overrides."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BeforeValidator

from api.deps import RuntimeDep, TenantDep
from api.errors import ApiError
from api.schemas import DecisionList, DecisionPublic, DecisionRevise, RevisionPublic
from pipeline.logs import request_id as current_request_id
from pipeline.types import Action, Decision, Id, Reason

router = APIRouter(prefix="/v1/decisions", tags=["decisions"])


def _iso(value: object) -> object:
    """Query times are ISO 8601 only: pydantic would read "0.5" as seconds since 1970, which the
    schema does not offer and which hides a client sending milliseconds."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("expected an ISO 8601 date-time, e.g. 2026-12-03T10:00:00Z") from None
    return value


QueryTime = Annotated[datetime, BeforeValidator(_iso)]


@router.get("", response_model=DecisionList, summary="List decisions (by guild, time, action), oldest first, paged")
async def list_decisions(
    tenant: TenantDep,
    rt: RuntimeDep,
    guild_id: Annotated[Id | None, Query(description="only this guild's decisions")] = None,
    action: Annotated[Action | None, Query(description="only decisions whose current action is this")] = None,
    since: Annotated[QueryTime | None, Query(description="first decided at or after (ISO 8601)")] = None,
    until: Annotated[QueryTime | None, Query(description="first decided before (ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous page")] = None,
) -> DecisionList:
    """Each item is the decision's current revision. Walk `next_cursor` until it is null to see
    everything in the window; new decisions arriving meanwhile do not shift the pages."""
    try:
        page = await run_in_threadpool(
            lambda: rt.store.decisions.page(
                tenant, guild_id=guild_id, action=action.value if action else None, since=since, until=until,
                limit=limit, cursor=cursor,
            )
        )
    except ValueError as exc:
        raise ApiError(422, "invalid_cursor", str(exc)) from None
    return DecisionList(items=[DecisionPublic.model_validate(d.model_dump()) for d in page.items],
                        next_cursor=page.next_cursor)


@router.get(
    "/{decision_id}/revisions", response_model=list[RevisionPublic],
    summary="Every revision of a decision (by decision or message id), oldest first",
)
async def revisions(decision_id: Id, tenant: TenantDep, rt: RuntimeDep) -> list[RevisionPublic]:
    records = await run_in_threadpool(rt.store.decisions.revisions, tenant, decision_id)
    if not records:
        raise ApiError(404, "decision_not_found", f"no decision {decision_id!r} for this tenant")
    return [
        RevisionPublic(revision=r.revision, cause=r.cause, actor=r.actor, action=r.action,
                       created_at=r.created_at.isoformat(),
                       decision=DecisionPublic.model_validate(r.decision.model_dump()))
        for r in records
    ]


@router.post(
    "/{decision_id}/revisions", response_model=DecisionPublic, status_code=201,
    summary="Override the outcome (a new revision, delivered by webhook like any other)",
)
async def override(decision_id: Id, body: DecisionRevise, tenant: TenantDep, rt: RuntimeDep) -> Decision:
    """The chat service's own moderators have the last word on their platform: their override
    becomes the next revision, is kept in the audit log, and goes out as a signed webhook event."""
    current = await run_in_threadpool(rt.store.decisions.get, tenant, decision_id)
    if current is None:
        raise ApiError(404, "decision_not_found", f"no decision {decision_id!r} for this tenant")
    actor = f"tenant:{tenant}:{body.actor}"
    revised = current.model_copy(update={
        "action": body.action,
        "reasons": [*current.reasons, Reason(action=body.action, source="override",
                                             text=f"overridden to {body.action.value} by {body.actor}: {body.reason}")],
    })
    rid = current_request_id.get()
    new = await run_in_threadpool(
        lambda: rt.store.decisions.revise(tenant, revised, cause="override", actor=actor, note=body.reason,
                                          request_id=rid)
    )
    rt.drainer.wake()
    return new
