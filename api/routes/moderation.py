"""Moderation: the synchronous pre-send check and the asynchronous queue."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from api.deps import RuntimeDep, TenantDep
from api.errors import ApiError
from api.metrics import DECISIONS, SYNC_LATENCY
from api.schemas import DecisionPublic, MessageCreate, PendingPublic
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


@router.post(
    "/moderate",
    response_model=DecisionPublic,
    responses={
        202: {"model": PendingPublic, "description": "the latency budget ran out; the decision follows by webhook"}
    },
    summary="Decide one message now (pre-send check)",
)
async def moderate(body: MessageCreate, tenant: TenantDep, rt: RuntimeDep) -> Response:
    """Returns the decision within the configured latency budget (`HERON_SYNC_BUDGET_MS`).

    When scoring cannot finish in time, answers 202: the message is stored, scoring continues,
    and the decision arrives at the tenant's webhook and at `GET /v1/decisions/{id}`.
    """
    started = time.perf_counter()
    message: Message = body  # MessageCreate is a Message; validated once by FastAPI
    guild = await resolve_guild(rt, tenant, message.guild_id)
    task = asyncio.ensure_future(rt.service.decide_one_async(tenant, message, guild))
    try:
        decision = await asyncio.wait_for(asyncio.shield(task), rt.settings.sync_budget_ms / 1000)
    except TimeoutError:
        await run_in_threadpool(rt.store_pending, tenant, message)
        task.add_done_callback(lambda t: rt.finish_late(tenant, message, t))
        pending = PendingPublic(
            status="pending",
            message_id=message.id,
            decision_id=decision_id_for(tenant, message.id),
            detail="latency budget exceeded; the decision will be delivered by webhook",
        )
        return JSONResponse(pending.model_dump(), status_code=202)
    rt.writer.record(tenant, decision)
    DECISIONS.labels(path="sync", action=decision.action.value).inc()
    SYNC_LATENCY.observe(time.perf_counter() - started)
    # Serialised directly: the hot path skips FastAPI's re-validation against response_model,
    # which stays declared for the OpenAPI docs.
    return Response(content=decision.model_dump_json(), media_type="application/json")


@router.post("/messages", status_code=202, response_model=PendingPublic, summary="Queue one message for a decision")
async def submit_message(body: MessageCreate, tenant: TenantDep, rt: RuntimeDep) -> PendingPublic:
    """Stores the message and answers 202 at once; a worker decides it and the decision is
    delivered to the tenant's webhook and readable at `GET /v1/decisions/{id}`. Sending the same
    message id again is safe: it is stored and decided once."""
    message: Message = body
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
    decision = await run_in_threadpool(rt.store.decisions.get, tenant, decision_id)
    if decision is None:
        status = await run_in_threadpool(rt.store.messages.status, tenant, decision_id)
        if status == "pending":
            raise ApiError(404, "decision_pending", "the message is queued and not decided yet; retry shortly")
        raise ApiError(404, "decision_not_found", f"no decision {decision_id!r} for this tenant")
    return decision
