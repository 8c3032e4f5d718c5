"""The reviewers' browser UI at /review: server-rendered (Jinja2), htmx for partial updates, no build step.

Every page works with plain links and forms (Post/Redirect/Get), so it works with the keyboard alone
and without JavaScript; `static/review/review.js` adds the shortcuts (c claim, u uphold, o overturn,
e escalate, j/k move, r reveal images, ? help). Forms carry the session's CSRF token; the session
cookie is HttpOnly and SameSite=Strict. The pages call the same store functions as the JSON API.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi import Path as FPath
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.deps import get_limiter
from api.errors import ApiError, status_for
from api.review_auth import SESSION_COOKIE, check_csrf, csrf_ok
from pipeline.errors import HeronError
from pipeline.review import REASONS, reasons_for
from pipeline.store.engine import now
from pipeline.store.reviewers import Session
from pipeline.taxonomy import CATEGORY_NAMES

HERE = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/review", include_in_schema=False)
LOGIN_CSRF_COOKIE = "heron_login_csrf"
ItemId = Annotated[int, FPath(ge=1, le=2**31 - 1)]
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
# Our pages load nothing from elsewhere: scripts, styles and images are Heron's own (or inline
# data: thumbnails of the message's own attachments); no page may be framed.
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def mount(app: FastAPI) -> None:
    app.mount("/review/static", StaticFiles(directory=str(HERE / "static" / "review")), name="review-static")
    app.include_router(router)


def _page(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> HTMLResponse:
    resp = templates.TemplateResponse(request, name, ctx, status_code=status)
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"
    resp.headers["Cache-Control"] = "no-store"
    return resp


async def _session(request: Request) -> Session | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    return await run_in_threadpool(request.app.state.runtime.store.reviewers.session, token)


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/review/login?next={quote(target)}", status_code=303)


def _safe_next(value: str | None) -> str:
    """Only a path on this site (no scheme, no //host): an open redirect would be a phishing aid."""
    if value and value.startswith("/review") and not value.startswith("//"):
        return value
    return "/review"


# ---- login ------------------------------------------------------------------------------------
@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    token = secrets.token_urlsafe(24)
    resp = _page(request, "review/login.html", {"csrf": token, "next": _safe_next(next), "error": None})
    _login_cookie(request, resp, token)
    return resp


def _login_cookie(request: Request, resp: Response, token: str) -> None:
    """Login CSRF (double submit): the form's token must match this cookie, which another site can
    neither read nor set."""
    resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/review",
                    secure=request.app.state.runtime.settings.review_cookie_secure, max_age=3600)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    supplied = str(form.get("csrf_token") or "")
    nxt = _safe_next(str(form.get("next") or ""))
    if not cookie or not secrets.compare_digest(cookie, supplied):
        token = secrets.token_urlsafe(24)
        resp = _page(request, "review/login.html", {"csrf": token, "next": nxt,
                                                    "error": "The form expired; please sign in again."}, 403)
        _login_cookie(request, resp, token)
        return resp
    rt = request.app.state.runtime
    limiter = await get_limiter(request)
    verdict = await limiter.check_login(str(form.get("username") or ""),
                                        request.client.host if request.client else "-")
    if not verdict.allowed:
        token = secrets.token_urlsafe(24)
        resp = _page(request, "review/login.html", {
            "csrf": token, "next": nxt,
            "error": f"Too many sign-in attempts; try again in {verdict.retry_after_s} s."}, 429)
        resp.headers["Retry-After"] = str(verdict.retry_after_s)
        _login_cookie(request, resp, token)
        return resp
    reviewer = await run_in_threadpool(rt.store.reviewers.authenticate, str(form.get("username") or ""),
                                       str(form.get("password") or ""))
    if reviewer is None:
        token = secrets.token_urlsafe(24)
        resp = _page(request, "review/login.html", {"csrf": token, "next": nxt,
                                                    "error": "Wrong username or password."}, 401)
        _login_cookie(request, resp, token)
        return resp
    session_token, session = await run_in_threadpool(rt.store.reviewers.open_session, reviewer,
                                                     rt.settings.review_session_ttl_s)
    resp = RedirectResponse(nxt, status_code=303)
    resp.set_cookie(SESSION_COOKIE, session_token, httponly=True, samesite="strict", path="/",
                    secure=rt.settings.review_cookie_secure, max_age=int(rt.settings.review_session_ttl_s))
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/review")
    return resp


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = await _session(request)
    if session is not None:
        await check_csrf(request, session)
        await run_in_threadpool(request.app.state.runtime.store.reviewers.close_session,
                                request.cookies[SESSION_COOKIE])
    resp = RedirectResponse("/review/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


# ---- queue ------------------------------------------------------------------------------------
def _filters(request: Request) -> dict[str, Any]:
    q = request.query_params
    status = q.get("status") or "open"
    return {"guild_id": q.get("guild_id") or None, "status": status if status in ("open", "escalated", "resolved",
                                                                                   "all") else "open",
            "kind": q.get("kind") if q.get("kind") in ("decision", "report", "appeal") else None}


@router.get("")
async def queue_page(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to_login(request)
    return await _queue(request, session, "review/queue.html")


@router.get("/queue")
async def queue_fragment(request: Request) -> Response:
    """The queue table alone, for htmx filter updates."""
    session = await _session(request)
    if session is None:
        return _to_login(request)
    return await _queue(request, session, "review/_queue_table.html")


async def _queue(request: Request, session: Session, template: str) -> Response:
    principal = session.reviewer.principal()
    f = _filters(request)
    rt = request.app.state.runtime
    items = await run_in_threadpool(lambda: rt.store.review.list(principal, guild_id=f["guild_id"],
                                                                 status=f["status"], kind=f["kind"], limit=200))
    ts = now()
    return _page(request, template, {
        "session": session, "principal": principal, "items": items, "filters": f, "now": ts,
        "notice": request.query_params.get("notice"), "query": urlencode({k: v for k, v in f.items() if v}),
    })


# ---- one item ---------------------------------------------------------------------------------
def _attachments(message: dict[str, Any] | None, thumbs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """What to show for each attachment: the thumbnail the image pipeline kept for review (inline
    bytes are not stored), else an inline image still in the message, as a data: image (blurred,
    greyscale, revealed on click); anything else as a placeholder. Heron fetches nothing for the
    browser."""
    kept = {int(t["attachment"]): t for t in thumbs or []}
    out = []
    for i, a in enumerate((message or {}).get("attachments", [])):
        ctype = (a.get("content_type") or "").lower()
        entry: dict[str, Any] = {"index": i, "filename": a.get("filename") or f"attachment {i + 1}",
                                 "content_type": ctype or "unknown", "src": None, "url": a.get("url")}
        if i in kept:
            thumb = kept[i]
            data = thumb["data"]
            data = base64.b64encode(data).decode() if isinstance(data, bytes | bytearray | memoryview) else data
            entry["src"] = f"data:{thumb['mime']};base64,{data}"
        elif a.get("content_base64") and ctype in IMAGE_TYPES:
            try:
                base64.b64decode(a["content_base64"], validate=True)
                entry["src"] = f"data:{ctype};base64,{a['content_base64']}"
            except ValueError:
                pass
        out.append(entry)
    return out


def _suggested_categories(decision: dict[str, Any] | None) -> set[str]:
    return {r["category"] for r in (decision or {}).get("reasons", []) if r.get("category")
            and r.get("action") not in (None, "allow")}


@router.get("/items/{item_id}")
async def item_page(request: Request, item_id: ItemId) -> Response:
    return await _render_item(request, item_id)


async def _render_item(request: Request, item_id: int, error: str | None = None, status: int = 200) -> Response:
    session = await _session(request)
    if session is None:
        return _to_login(request)
    principal = session.reviewer.principal()
    rt = request.app.state.runtime
    try:
        d = await run_in_threadpool(rt.store.review.detail, principal, item_id)
    except HeronError as exc:
        return _page(request, "review/error.html", {"session": session, "principal": principal,
                                                    "message": exc.message}, 404)
    item = d["item"]
    ts = now()
    thumbs = await run_in_threadpool(rt.store.banks.thumbnails, item.tenant_id, item.message_id)
    return _page(request, "review/item.html", {
        "session": session, "principal": principal, "item": item, "d": d, "now": ts,
        "mine": item.claimed_by == principal.actor and item.claim_active(ts),
        "held_by_other": item.claim_active(ts) and item.claimed_by != principal.actor,
        "attachments": _attachments(d["message"], thumbs), "categories": CATEGORY_NAMES,
        "suggested": _suggested_categories(d["decision"]), "reasons": {v: reasons_for(v) for v in
                                                                       ("uphold", "overturn", "escalate")},
        "reason_labels": {k: v[1] for k, v in REASONS.items()}, "error": error,
        "blind": item.status == "second_review" and principal.role != "admin",
    }, status)


async def _act(request: Request, item_id: int, what: str) -> Response:
    session = await _session(request)
    if session is None:
        return _to_login(request)
    try:
        await check_csrf(request, session)
    except ApiError as exc:
        return await _render_item(request, item_id, error=exc.message, status=403)
    form = await request.form()
    principal = session.reviewer.principal()
    rt = request.app.state.runtime
    store = rt.store.review
    try:
        if what == "claim":
            await run_in_threadpool(store.claim, principal, item_id)
            return RedirectResponse(f"/review/items/{item_id}", status_code=303)
        if what == "release":
            await run_in_threadpool(store.release, principal, item_id)
            return RedirectResponse(f"/review/items/{item_id}", status_code=303)
        if what == "escalate":
            reason = str(form.get("escalate_reason") or "needs_senior_review")
            note = str(form.get("note") or "").strip() or None
            await run_in_threadpool(lambda: store.escalate(principal, item_id, reason_code=reason, note=note))
            rt.wake_drainers()
            return RedirectResponse(f"/review?notice={quote(f'Item {item_id} escalated to the admins')}",
                                    status_code=303)
        verdict = str(form.get("verdict") or "")
        if verdict not in ("uphold", "overturn"):
            raise ApiError(422, "validation_error", "choose uphold or overturn")
        reason = str(form.get(f"{verdict}_reason") or "") or {"uphold": "violates_policy",
                                                              "overturn": "false_positive"}[verdict]
        cats = {c: c in form.getlist("categories") for c in CATEGORY_NAMES}
        author_action = str(form.get("author_action") or "") or None
        note = str(form.get("note") or "").strip() or None
        res = await run_in_threadpool(lambda: store.resolve(
            principal, item_id, verdict=verdict, reason_code=reason, categories=cats, note=note,
            author_action=author_action))
        rt.wake_drainers()
        sent = f"revision {res.decision.revision} sent" if res.decision else "second verdict recorded"
        return RedirectResponse(f"/review?notice={quote(f'Item {item_id}: {verdict} ({sent})')}", status_code=303)
    except HeronError as exc:
        code = status_for(exc)
        return await _render_item(request, item_id, error=exc.message, status=code)


@router.post("/items/{item_id}/claim")
async def claim(request: Request, item_id: ItemId) -> Response:
    return await _act(request, item_id, "claim")


@router.post("/items/{item_id}/release")
async def release(request: Request, item_id: ItemId) -> Response:
    return await _act(request, item_id, "release")


@router.post("/items/{item_id}/resolve")
async def resolve(request: Request, item_id: ItemId) -> Response:
    return await _act(request, item_id, "resolve")


@router.post("/items/{item_id}/escalate")
async def escalate(request: Request, item_id: ItemId) -> Response:
    return await _act(request, item_id, "escalate")


# ---- quality ----------------------------------------------------------------------------------
@router.get("/stats")
async def stats_page(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to_login(request)
    principal = session.reviewer.principal()
    s = await run_in_threadpool(request.app.state.runtime.store.review.stats, principal)
    return _page(request, "review/stats.html", {"session": session, "principal": principal, "s": s})


__all__ = ["csrf_ok", "mount", "router"]
