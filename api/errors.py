"""Machine-readable error payloads: every 4xx says `code` (stable) and `message` (for people).

Shape: {"error": {"code": "...", "message": "...", "details": [...]}}. Codes are documented in
docs/errors.md and pinned by golden files in tests/golden/errors/.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers


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
        details.append({"field": ".".join(loc), "type": kind, "message": err.get("msg", "")})
    if code == "unknown_field":
        names = ", ".join(d["field"] for d in details if d["type"] == "extra_forbidden")
        return code, f"unknown field(s): {names}", details
    if code == "missing_field":
        names = ", ".join(d["field"] for d in details if d["type"] == "missing")
        return code, f"missing required field(s): {names}", details
    return code, "; ".join(f"{d['field'] or 'body'}: {d['message']}" for d in details), details


async def api_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def validation_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    code, message, details = _validation_details(exc)
    status = 400 if code == "malformed_json" else 422
    return error_response(status, code, message, details)


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    401: "unauthorized",
    403: "forbidden",
    413: "body_too_large",
    415: "unsupported_media_type",
}


async def http_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))


async def unhandled_handler(_: Request, exc: Exception) -> JSONResponse:
    import logging

    logging.getLogger("heron.api").exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal error; it was logged")
