"""Machine-readable error payloads: every 4xx says `code` (stable) and `message` (for people).

Shape: {"error": {"code": "...", "message": "...", "details": [...]}}. Codes are documented in
docs/errors.md and pinned by golden files in tests/golden/errors/.

This is the one place where errors become HTTP: the core raises `pipeline.errors.HeronError`
subclasses without knowing about status codes, and `HTTP_STATUS` maps each class to one.
`ApiError` (a HeronError with an explicit status) stays for routes that need a status the
taxonomy does not name.
"""

from __future__ import annotations

import math
import re
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import ErrorPublic
from pipeline.errors import (
    Conflict,
    Forbidden,
    HeronError,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthenticated,
    Unavailable,
)

# Core error class -> HTTP status; the most specific class in an error's MRO wins.
HTTP_STATUS: dict[type[HeronError], int] = {
    InvalidInput: 422,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    RateLimited: 429,
    Unavailable: 503,
}

# Declared on every operation (FastAPI(responses=...)): the error shape for any 4xx/5xx, which
# also replaces FastAPI's default 422 schema ({"detail": [...]}) that this API never returns.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorPublic, "description": "Client error: `error.code` says which (docs/errors.md)"},
    "5XX": {"model": ErrorPublic, "description": "Server error or a dependency unavailable"},
}


class ApiError(HeronError):
    """An error with an explicit HTTP status, for the API layer's own cases (auth, routing)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.status = status
        self.headers = headers


def status_for(exc: HeronError) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 400


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def _validation_details(exc: RequestValidationError) -> tuple[str, str, list[dict[str, Any]]]:
    details = []
    code = "validation_error"
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        kind = err.get("type", "")
        if kind == "json_invalid":
            return (
                "malformed_json",
                "the request body is not valid JSON",
                [{"message": str(err.get("ctx", {}).get("error", err.get("msg")))}],
            )
        if kind == "extra_forbidden":
            code = "unknown_field" if code == "validation_error" else code
        elif kind == "missing" and code == "validation_error":
            code = "missing_field"
        # pydantic prefixes a validator's own sentence with "Value error, "; the sentence is enough.
        message = str(err.get("msg", "")).removeprefix("Value error, ")
        details.append({"field": ".".join(loc), "type": kind, "message": message})
    if code == "unknown_field":
        names = ", ".join(d["field"] for d in details if d["type"] == "extra_forbidden")
        return code, f"unknown field(s): {names}", details
    if code == "missing_field":
        names = ", ".join(d["field"] for d in details if d["type"] == "missing")
        return code, f"missing required field(s): {names}", details
    return code, "; ".join(f"{d['field'] or 'body'}: {d['message']}" for d in details), details


async def heron_error_handler(_: Request, exc: Exception) -> JSONResponse:
    """HeronError (ApiError included) -> status, payload and, for retryable errors, Retry-After."""
    assert isinstance(exc, HeronError)
    headers = dict(exc.headers or {}) if isinstance(exc, ApiError) else {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return error_response(status_for(exc), exc.code, exc.message, exc.details, headers or None)


api_error_handler = heron_error_handler  # the name api/main.py registers for ApiError


async def validation_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    code, message, details = _validation_details(exc)
    status = 400 if code == "malformed_json" else 422
    return error_response(status, code, message, details)


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    401: "unauthorized",
    403: "forbidden",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def _allowed_methods(request: Request) -> str | None:
    """Every method the API documents for this path, for the `Allow` header of a 405.

    FastAPI registers one route per method and Starlette's 405 names only the first route whose
    path matched, so its `Allow` misses the others. The OpenAPI document is the public list of
    what each path answers to (and what clients compare `Allow` with)."""
    table = getattr(request.app.state, "allowed_methods", None)
    if table is None:
        table = []
        for template, operations in request.app.openapi().get("paths", {}).items():
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            methods = sorted(m.upper() for m in operations if m.upper() in _HTTP_METHODS)
            table.append((re.compile(pattern + "$"), ", ".join(methods)))
        request.app.state.allowed_methods = table
    for pattern, methods in table:
        if pattern.match(request.url.path):
            return str(methods)
    return None


_HTTP_METHODS = {"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"}


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        allow = _allowed_methods(request)
        if allow:
            return error_response(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed here; use {allow}",
                headers={"Allow": allow},
            )
    if exc.status_code == 400 and exc.__cause__ is not None:
        # FastAPI turns any body-parsing failure that is not a JSONDecodeError into a bare 400.
        # For a JSON body that is the parser's recursion limit or int digit limit: name them.
        cause = exc.__cause__
        if isinstance(cause, RecursionError):
            return error_response(400, "json_too_deep", "the JSON body is nested too deeply to parse")
        reason = "a number has more than 4,300 digits" if "digits" in str(cause) else str(cause)
        return error_response(400, "malformed_json", "the request body is not valid JSON", [{"message": reason}])
    code = _HTTP_CODES.get(exc.status_code, "client_error" if exc.status_code < 500 else "server_error")
    return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))


async def unhandled_handler(_: Request, exc: Exception) -> JSONResponse:
    import logging

    logging.getLogger("heron.api").exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal error; it was logged")
