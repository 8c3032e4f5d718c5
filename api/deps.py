"""Dependencies: the runtime held by the app, the tenant behind the API key, and the rate limits.

Rate limits: every /v1 route that takes `TenantDep` is held to the per-key limit for non-message
routes (`HERON_RATE_LIMIT_OTHER`). The message routes take `MessageTenantDep` instead and call
`limit_message` once the body says which guild the message is for (per-key and per-guild limits).
"""

from __future__ import annotations

from typing import Annotated, NoReturn

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from api.errors import ApiError
from api.metrics import RATE_LIMIT_FALLBACK, REFUSED
from pipeline.budget import SyncPath
from pipeline.ratelimit import OTHER, PER_GUILD, PER_KEY, RateLimiter, Verdict
from pipeline.runtime import Runtime


# Both dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker
# thread, and two thread hops per request cost more than the rest of the request's Python work.
async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_message_tenant(request: Request, runtime: RuntimeDep) -> str:
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
    fresh, tenant = runtime.store.cached_tenant(raw)
    if not fresh:
        tenant = await run_in_threadpool(runtime.store.tenant_for_key, raw)
    if tenant is None:
        raise ApiError(
            401, "invalid_api_key", "the API key is unknown or revoked", headers={"WWW-Authenticate": "Bearer"}
        )
    return tenant


MessageTenantDep = Annotated[str, Depends(get_message_tenant)]


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
        details=[{"limit": limit, "retry_after_s": verdict.retry_after_s}],
        headers={"Retry-After": str(verdict.retry_after_s)},
    )


async def limit_message(limiter: RateLimiter, tenant: str, guild_id: str | None) -> Verdict:
    """Check a message route's limits; returns the verdict (the caller raises `refuse` when refused,
    after recording what it needs to)."""
    verdict = await limiter.check_message(tenant, guild_id)
    if verdict.fallback:
        RATE_LIMIT_FALLBACK.inc()
    return verdict


async def get_tenant(request: Request, runtime: RuntimeDep, limiter: LimiterDep) -> str:
    """The tenant, held to the per-key limit of the non-message /v1 routes."""
    tenant = await get_message_tenant(request, runtime)
    verdict = await limiter.check_other(tenant)
    if verdict.fallback:
        RATE_LIMIT_FALLBACK.inc()
    if not verdict.allowed:
        refuse(verdict)
    return tenant


TenantDep = Annotated[str, Depends(get_tenant)]
