"""create_app(): the FastAPI application over a Runtime."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.arrival import ArrivalStamp
from api.errors import ERROR_RESPONSES, heron_error_handler, http_error_handler, unhandled_handler, validation_handler
from api.metrics import SCORER_STATS
from api.middleware import BodyGuard
from api.observability import RequestIdMiddleware
from api.routes import admin, banks, behaviour, decisions, guilds, hooks, media, moderation, review, review_ui
from pipeline.errors import HeronError
from pipeline.metrics import REVIEW_QUALITY
from pipeline.runtime import Runtime
from pipeline.settings import get_settings

log = logging.getLogger("heron.api")

DESCRIPTION = """
Heron scores chat messages and returns a decision (`allow`, `flag`, `support`, `hold_for_review`, `block`,
`timeout_author`) with per-category scores and reasons a person can read. A category no scorer
scored is `null` in `scores`, with the reason in `unscored` (a 0.0 always means "checked").
`support` (self_harm) asks the chat service to reach out to the author with the resources in
the webhook event (docs/webhooks.md); self_harm alone never blocks or times anyone out.

Authenticate with `Authorization: Bearer <api key>` (create one with `heron keys create --tenant NAME`).
Only `/healthz`, `/readyz`, `/metrics` and these docs answer without a key.
"""


def _offline_docs(app: FastAPI) -> None:
    """Serve Swagger UI from the swagger-ui-bundle package, not a CDN: a self-hosted moderation
    service often runs where the browser cannot reach the internet."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-static", StaticFiles(directory=swagger_ui_path), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Heron API",
                                   swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-static/swagger-ui.css",
                                   swagger_favicon_url="/docs-static/favicon-32x32.png")


def create_app(runtime: Runtime | None = None, start_runtime: bool = True) -> FastAPI:
    settings = runtime.settings if runtime else get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or Runtime.build(role="api", settings=settings)
        app.state.runtime = rt
        SCORER_STATS.attach(rt.service)
        REVIEW_QUALITY.attach(rt.store)
        rt.service.warm_up()  # load and warm the models before taking traffic
        if runtime is None:
            # A serving process: everything loaded so far (models, tokenizer, routes) lives as long
            # as it does, so take it out of the collector's generations; full collections under
            # load then only walk request garbage. (Not for apps over a caller's runtime, as in
            # tests, where frozen objects would never be freed.)
            gc.collect()
            gc.freeze()
        if start_runtime:
            rt.start()
        try:
            yield
        finally:
            if start_runtime:
                rt.stop()

    app = FastAPI(title="Heron moderation API", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, responses=ERROR_RESPONSES)
    _offline_docs(app)
    if runtime is not None:
        app.state.runtime = runtime
    app.add_exception_handler(HeronError, heron_error_handler)  # ApiError is a HeronError
    app.add_exception_handler(RequestValidationError, validation_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(Exception, unhandled_handler)
    for r in (moderation.router, decisions.router, guilds.router, hooks.router, admin.router, behaviour.router,
              banks.router, review.router, media.router):
        app.include_router(r)
    review_ui.mount(app)  # the reviewers' browser UI at /review (not in the OpenAPI document)
    app.add_middleware(BodyGuard, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)  # BodyGuard's refusals carry the id too
    app.add_middleware(ArrivalStamp)  # added last = outermost: the sync budget counts from here
    return app
