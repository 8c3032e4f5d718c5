"""Dependencies: the runtime held by the app, and the tenant behind the API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.errors import ApiError
from pipeline.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_tenant(request: Request, runtime: RuntimeDep) -> str:
    """Resolve the tenant from `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
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
    tenant = runtime.store.tenant_for_key(raw)
    if tenant is None:
        raise ApiError(
            401, "invalid_api_key", "the API key is unknown or revoked", headers={"WWW-Authenticate": "Bearer"}
        )
    return tenant


TenantDep = Annotated[str, Depends(get_tenant)]
