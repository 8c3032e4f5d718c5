"""Dependencies: the runtime held by the app, and the tenant behind the API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from api.errors import ApiError
from pipeline.runtime import Runtime


# Both dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker
# thread, and two thread hops per request cost more than the rest of the request's Python work.
async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_tenant(request: Request, runtime: RuntimeDep) -> str:
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


TenantDep = Annotated[str, Depends(get_tenant)]
