"""Who is calling the review desk: a tenant API key (that tenant's admin) or a reviewer's session.

Sessions live in an HttpOnly, SameSite=Strict cookie. Any request that changes something on a
session must also prove it comes from Heron's own pages: the session's CSRF token, in the
`X-CSRF-Token` header (htmx and scripts) or a `csrf_token` form field. API-key requests carry no
cookie, so they need no CSRF token.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from api.deps import LimiterDep, RuntimeDep, refuse, resolve_tenant
from api.errors import ApiError
from pipeline.review import Principal
from pipeline.store.reviewers import Session

SESSION_COOKIE = "heron_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def has_api_key(request: Request) -> bool:
    return bool(request.headers.get("x-api-key") or request.headers.get("authorization"))


async def session_of(request: Request, rt: RuntimeDep) -> Session | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    return await run_in_threadpool(rt.store.reviewers.session, token)


def csrf_ok(session: Session, supplied: str | None) -> bool:
    return bool(supplied) and hmac.compare_digest(session.csrf.encode(), str(supplied).encode())


async def check_csrf(request: Request, session: Session) -> None:
    """Refuse a state-changing session request without the session's CSRF token (403)."""
    if request.method in SAFE_METHODS:
        return
    supplied = request.headers.get(CSRF_HEADER)
    if supplied is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        supplied = (await request.form()).get("csrf_token")  # type: ignore[assignment]
    if not csrf_ok(session, supplied):
        raise ApiError(403, "csrf_failed", "missing or wrong CSRF token; reload the page and try again")


async def get_principal(request: Request, rt: RuntimeDep, limiter: LimiterDep) -> Principal:
    """An API key acts as its tenant's admin; otherwise the reviewer behind the session cookie."""
    if has_api_key(request):
        tenant = await resolve_tenant(request, rt)
        verdict = await limiter.check_other(tenant)
        if not verdict.allowed:
            refuse(verdict)
        return Principal(tenant_id=tenant, actor=f"tenant:{tenant}:api_key", role="admin", guilds=None,
                         via="api_key")
    session = await session_of(request, rt)
    if session is None:
        raise ApiError(401, "missing_credentials", "send an API key as 'Authorization: Bearer <key>' or log in "
                       "at /review/login", headers={"WWW-Authenticate": "Bearer"})
    await check_csrf(request, session)
    principal = session.reviewer.principal()
    verdict = await limiter.check_other(principal.tenant_id)
    if not verdict.allowed:
        refuse(verdict)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_admin(principal: PrincipalDep) -> Principal:
    if principal.role != "admin":
        raise ApiError(403, "review_forbidden", "only the tenant (its API key) or an admin may do this")
    return principal


AdminDep = Annotated[Principal, Depends(get_admin)]
