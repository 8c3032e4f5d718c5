"""Health, readiness, metrics and the tenant's audit log."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from api.deps import RuntimeDep, TenantDep
from pipeline.metrics import render_latest

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _readiness(rt: Any) -> tuple[bool, dict[str, Any]]:
    checks: dict[str, Any] = {}
    ok = True
    try:
        rt.store.ping()
        rev = rt.store.schema_revision()
        checks["database"] = {"ok": rev is not None, "backend": rt.store.engine.dialect.name, "schema_revision": rev}
        if rev is None:
            checks["database"]["error"] = "schema not migrated; run `heron migrate`"
            ok = False
    except Exception as exc:  # noqa: BLE001
        checks["database"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        ok = False
    if rt.settings.use_celery:
        try:
            import redis

            redis.Redis.from_url(rt.settings.redis_url, socket_timeout=1).ping()
            checks["queue"] = {"ok": True, "backend": "celery+redis"}
        except Exception as exc:  # noqa: BLE001
            checks["queue"] = {"ok": False, "backend": "celery+redis", "error": f"{type(exc).__name__}: {exc}"}
            ok = False
    else:
        checks["queue"] = {"ok": True, "backend": "embedded"}
    models: dict[str, Any] = {}
    for s in rt.service.status():
        models[s.name] = {"ok": s.ok, "version": s.version, **({"error": s.error} if s.error else {}), **s.detail}
        ok = ok and s.ok
    checks["scorers"] = models
    return ok, checks


class ReadinessPublic(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, Any] = Field(description="database, queue and one entry per scorer, each with `ok`")


@router.get(
    "/readyz",
    summary="Readiness: every dependency and every model",
    response_model=ReadinessPublic,
    responses={503: {"model": ReadinessPublic, "description": "a dependency or a model is not ready"}},
)
async def readyz(rt: RuntimeDep) -> JSONResponse:
    ok, checks = await run_in_threadpool(_readiness, rt)
    return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
)
async def metrics() -> Response:
    body, content_type = render_latest()  # summed over the API processes under `heron serve --workers N`
    return Response(body, media_type=content_type)


@router.get("/v1/audit", summary="The tenant's audit log, newest first")
async def audit(
    tenant: TenantDep, rt: RuntimeDep, limit: int = Query(default=100, ge=1, le=1000)
) -> list[dict[str, Any]]:
    rows = await run_in_threadpool(rt.store.audit.entries, tenant, limit)
    return [{**r, "at": r["at"].isoformat() if r["at"] else None} for r in rows]
