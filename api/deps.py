"""Dependencies: the runtime held by the app, the tenant behind the API key, and the rate limits.

Rate limits: every /v1 route that takes `TenantDep` is held to the per-key limit for non-message
routes (`HERON_RATE_LIMIT_OTHER`). The message routes take `MessageTenantDep` / `ModerateTenantDep`
instead (their per-key limit, `HERON_RATE_LIMIT_PER_KEY`) and call `limit_guild` once the body says
which guild the message is for (`HERON_RATE_LIMIT_PER_GUILD`).
"""

from __future__ import annotations

import time
from typing import Annotated, NoReturn

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from api.arrival import arrival
from api.errors import ApiError
from api.metrics import RATE_LIMIT_FALLBACK, REFUSED, SYNC_ANSWER
from pipeline.budget import SyncPath
from pipeline.ratelimit import OTHER, PER_GUILD, PER_KEY, RateLimiter, Verdict
from pipeline.runtime import Runtime


# Both dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker
# thread, and two thread hops per request cost more than the rest of the request's Python work.
async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def resolve_tenant(request: Request, runtime: RuntimeDep) -> str:
    """Resolve the tenant from `Authorization: Bearer <key>` or `X-API-Key: <key>`.

    Keys seen in the last seconds are answered from the store's cache on the event loop; others
    are looked up in a thread so the database never blocks the loop."""
    raw = request.headers.get("x-api-key")
    auth = request.headers.get("authorization")
    if raw is None and auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value:
            raw = value.strip()
    if not raw:
        raise ApiError(
            401,
            "missing_api_key",
            "send an API key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    fresh, tenant = runtime.store.tenants.cached_tenant(raw)
    if not fresh:
        tenant = await run_in_threadpool(runtime.store.tenants.tenant_for_key, raw)
    if tenant is None:
        raise ApiError(
            401, "invalid_api_key", "the API key is unknown or revoked", headers={"WWW-Authenticate": "Bearer"}
        )
    return tenant


async def get_limiter(request: Request) -> RateLimiter:
    """The app's rate limiter, made on first use (inside the event loop its Redis client binds to)."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        limiter = RateLimiter.from_settings(request.app.state.runtime.settings)
        request.app.state.rate_limiter = limiter
    return limiter


LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]


async def get_sync_path(request: Request) -> SyncPath:
    """The app's sync-path admission (one per serving process: it estimates this process's load)."""
    sync: SyncPath | None = getattr(request.app.state, "sync_path", None)
    if sync is None or sync.rt is not request.app.state.runtime:
        sync = SyncPath(request.app.state.runtime)
        request.app.state.sync_path = sync
    return sync


SyncPathDep = Annotated[SyncPath, Depends(get_sync_path)]

_REFUSED_BY = {
    PER_KEY: "too many requests for this API key's tenant",
    PER_GUILD: "too many messages for this guild",
    OTHER: "too many requests for this API key's tenant on this route",
}


def refuse(verdict: Verdict, guild_id: str | None = None) -> NoReturn:
    """The 429 for a refused check: code `rate_limited`, Retry-After in whole seconds (≥ 1)."""
    limit = verdict.limit or PER_KEY
    REFUSED.labels(limit=limit).inc()
    what = _REFUSED_BY.get(limit, "too many requests")
    if limit == PER_GUILD and guild_id is not None:
        what += f" {guild_id!r}"
    raise ApiError(
        429,
        "rate_limited",
        f"{what}; retry after {verdict.retry_after_s} s",
        details=[{"message": f"the {limit} limit is spent", "limit": limit, "retry_after_s": verdict.retry_after_s}],
        headers={"Retry-After": str(verdict.retry_after_s)},
    )


def _counted(verdict: Verdict) -> Verdict:
    if verdict.fallback:
        RATE_LIMIT_FALLBACK.inc()
    return verdict


async def get_tenant(request: Request, runtime: RuntimeDep, limiter: LimiterDep) -> str:
    """The tenant, held to the per-key limit of the non-message /v1 routes."""
    tenant = await resolve_tenant(request, runtime)
    verdict = _counted(await limiter.check_other(tenant))
    if not verdict.allowed:
        refuse(verdict)
    return tenant


TenantDep = Annotated[str, Depends(get_tenant)]


async def get_message_tenant(request: Request, runtime: RuntimeDep, limiter: LimiterDep) -> str:
    """The tenant of `POST /v1/messages`, held to its per-key limit. Dependencies run before FastAPI
    validates the body, so a flood past the limit is refused before it costs a validation."""
    tenant = await resolve_tenant(request, runtime)
    verdict = _counted(await limiter.check_key(tenant))
    if not verdict.allowed:
        refuse(verdict)
    return tenant


MessageTenantDep = Annotated[str, Depends(get_message_tenant)]


async def get_moderate_tenant(request: Request, runtime: RuntimeDep, limiter: LimiterDep) -> str:
    """As `get_message_tenant`, for `POST /v1/moderate`: a refusal is also an answer of the sync path."""
    tenant = await resolve_tenant(request, runtime)
    verdict = _counted(await limiter.check_key(tenant))
    if not verdict.allowed:
        SYNC_ANSWER.labels(outcome="rate_limited").observe(time.perf_counter() - arrival(request))
        refuse(verdict)
    return tenant


ModerateTenantDep = Annotated[str, Depends(get_moderate_tenant)]


async def limit_guild(limiter: RateLimiter, tenant: str, guild_id: str | None) -> Verdict:
    """The per-guild limit of a message route, checked once the body names the guild; the caller
    raises `refuse` when refused, after recording what it needs to."""
    if guild_id is None:
        return Verdict(True)
    return _counted(await limiter.check_guild(tenant, guild_id))
