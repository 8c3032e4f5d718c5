"""Moderation: the synchronous pre-send check and the asynchronous queue."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from api.arrival import arrival
from api.deps import (
    LimiterDep,
    MessageTenantDep,
    ModerateTenantDep,
    RuntimeDep,
    SyncPathDep,
    TenantDep,
    limit_guild,
    refuse,
)
from api.errors import ApiError
from api.metrics import DECISIONS, REFUSED, SYNC_ANSWER, SYNC_LATENCY
from api.schemas import DecisionPublic, MessageCreate, PendingPublic
from pipeline.budget import Outcome
from pipeline.guilds import PLATFORM_GUILD, GuildConfig
from pipeline.runtime import Runtime
from pipeline.types import Decision, Message, decision_id_for

router = APIRouter(prefix="/v1", tags=["moderation"])


async def resolve_guild(rt: Runtime, tenant: str, guild_id: str | None) -> GuildConfig:
    """The guild's config: from the store's cache on the loop, else looked up in a thread."""
    if guild_id is None:
        return PLATFORM_GUILD
    fresh, guild = rt.store.guilds.cached(tenant, guild_id)
    if not fresh:
        guild = await run_in_threadpool(rt.store.guilds.get, tenant, guild_id)
    if guild is None:
        raise ApiError(404, "unknown_guild", f"guild {guild_id!r} is not registered; PUT /v1/guilds/{guild_id} first")
    return guild


_RETRY_AFTER = {
    "Retry-After": {"description": "whole seconds (at least 1) to wait before retrying", "schema": {"type": "integer"}}
}


@router.post(
    "/moderate",
    response_model=DecisionPublic,
    responses={
        202: {
            "model": PendingPublic,
            "description": "the decision could not be made within the latency budget: either scoring ran "
            "past it, or the service was too busy to start it in time (load shedding). The message is "
            "stored; the decision follows by webhook and at `GET /v1/decisions/{id}`",
        },
        429: {
            "description": "`rate_limited`: the key's or the guild's rate limit is spent, or `overloaded`: the "
            "budget cannot be met and the asynchronous backlog is full. Nothing was stored; retry after "
            "`Retry-After` seconds",
            "headers": _RETRY_AFTER,
        },
    },
    summary="Decide one message now (pre-send check)",
)
async def moderate(
    body: MessageCreate, request: Request, tenant: ModerateTenantDep, rt: RuntimeDep, limiter: LimiterDep,
    sync: SyncPathDep,
) -> Response:
    """Returns the decision within the configured latency budget (`HERON_SYNC_BUDGET_MS`), counted
    from the request's arrival.

    - **200**: the decision. Images are not decoded on this path (`HERON_SYNC_DEFER_IMAGES`, on
      by default): a message with attachments is answered on its text with `status: partial` and
      the image scorers named in `pending_signals`; the complete decision (image signals
      included) follows by webhook as the next `revision` of the same decision, never a second
      decision, and `GET /v1/decisions/{id}` shows it once made. `POST /v1/messages` instead
      answers 202 at once and its (only) decision includes the image signals.
    - **202** (`status: pending`): the budget could not be met: scoring ran past it, or the service
      was too busy to start scoring in time and handed the message to the asynchronous path. The
      message is stored and its decision arrives at the tenant's webhook and at
      `GET /v1/decisions/{id}`.
    - **429** `rate_limited` (`HERON_RATE_LIMIT_PER_KEY`, `HERON_RATE_LIMIT_PER_GUILD`) or
      `overloaded` (the asynchronous backlog is over `HERON_SHED_MAX_BACKLOG` too), with
      `Retry-After`: nothing was stored.
    """
    arrived = arrival(request)
    started = time.perf_counter()
    message: Message = body  # MessageCreate is a Message; validated once by FastAPI
    verdict = await limit_guild(limiter, tenant, message.guild_id)  # the key's limit: in ModerateTenantDep
    if not verdict.allowed:
        SYNC_ANSWER.labels(outcome="rate_limited").observe(time.perf_counter() - arrived)
        refuse(verdict, message.guild_id)
    guild = await resolve_guild(rt, tenant, message.guild_id)
    answer = await sync.moderate(tenant, message, guild, arrived)
    SYNC_ANSWER.labels(outcome=answer.outcome.value).observe(time.perf_counter() - arrived)
    if answer.outcome is Outcome.DECIDED:
        assert answer.decision is not None
        DECISIONS.labels(path="sync", action=answer.decision.action.value).inc()
        SYNC_LATENCY.observe(time.perf_counter() - started)
        # Serialised directly: the hot path skips FastAPI's re-validation against response_model,
        # which stays declared for the OpenAPI docs.
        return Response(content=answer.decision.model_dump_json(), media_type="application/json")
    if answer.outcome is Outcome.OVERLOADED:
        REFUSED.labels(limit="overloaded").inc()
        raise ApiError(
            429,
            "overloaded",
            f"too busy to decide this message within the latency budget, and the queue is full; retry after "
            f"{answer.retry_after_s} s or send it to POST /v1/messages later",
            headers={"Retry-After": str(answer.retry_after_s)},
        )
    detail = (
        "latency budget exceeded; the decision will be delivered by webhook"
        if answer.outcome is Outcome.PENDING
        else "too busy to decide within the latency budget; queued, the decision will be delivered by webhook"
    )
    pending = PendingPublic(
        status="pending",
        message_id=message.id,
        decision_id=decision_id_for(tenant, message.id),
        duplicate=answer.duplicate,
        detail=detail,
    )
    return JSONResponse(pending.model_dump(), status_code=202)


@router.post(
    "/messages",
    status_code=202,
    response_model=PendingPublic,
    responses={
        429: {
            "description": "`rate_limited`: the key's or the guild's rate limit is spent; nothing was stored",
            "headers": _RETRY_AFTER,
        }
    },
    summary="Queue one message for a decision",
)
async def submit_message(
    body: MessageCreate, tenant: MessageTenantDep, rt: RuntimeDep, limiter: LimiterDep
) -> PendingPublic:
    """Stores the message and answers 202 at once; a worker decides it and the decision is
    delivered to the tenant's webhook and readable at `GET /v1/decisions/{id}`. Sending the same
    message id again is safe: it is stored and decided once. Held to the same per-key and
    per-guild rate limits as `POST /v1/moderate` (429 `rate_limited` with `Retry-After`)."""
    message: Message = body
    verdict = await limit_guild(limiter, tenant, message.guild_id)  # the key's limit: in MessageTenantDep
    if not verdict.allowed:
        refuse(verdict, message.guild_id)
    await resolve_guild(rt, tenant, message.guild_id)
    _, created = await asyncio.wrap_future(rt.inbox.put(tenant, message))

    return PendingPublic(
        status="accepted",
        message_id=message.id,
        decision_id=decision_id_for(tenant, message.id),
        duplicate=not created,
        detail="queued; the decision will be delivered by webhook",
    )


@router.get(
    "/decisions/{decision_id}", response_model=DecisionPublic, summary="Read a decision by decision or message id"
)
async def get_decision(decision_id: str, tenant: TenantDep, rt: RuntimeDep) -> Decision:
    decision = rt.writer.unsaved(tenant, decision_id)  # answered a moment ago, being written
    if decision is None:
        decision = await run_in_threadpool(rt.store.decisions.get, tenant, decision_id)
    if decision is None:
        status = await run_in_threadpool(rt.store.messages.status, tenant, decision_id)
        if status == "pending":
            raise ApiError(404, "decision_pending", "the message is queued and not decided yet; retry shortly")
        if status is not None:  # decided between the two reads: read the decision again
            decision = await run_in_threadpool(rt.store.decisions.get, tenant, decision_id)
        if decision is None:
            raise ApiError(404, "decision_not_found", f"no decision {decision_id!r} for this tenant")
    return decision
