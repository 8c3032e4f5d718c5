"""ASGI guard in front of every route: body size, media type and UTF-8, checked before any parsing.

Doing this at the ASGI layer means an oversized upload is refused while it streams in (not
after buffering all of it), a body that is not declared JSON gets 415 (FastAPI would otherwise
leave it unparsed and answer a confusing 422), and invalid UTF-8 gets its own clear code
instead of a generic JSON error.
"""

from __future__ import annotations

import json
from typing import Any

from api.errors import error_body

Scope = dict[str, Any]


def _is_json(content_type: bytes | None) -> bool:
    """application/json or a structured-syntax JSON type (application/merge-patch+json ...),
    the types FastAPI parses as JSON; a missing Content-Type is not JSON."""
    if not content_type:
        return False
    mime = content_type.split(b";")[0].strip().lower()
    return mime == b"application/json" or (mime.startswith(b"application/") and mime.endswith(b"+json"))


def _is_review_form(scope: Scope, headers: dict[bytes, bytes]) -> bool:
    """The review UI's HTML forms (/review/...) post urlencoded bodies; the JSON API never does."""
    mime = (headers.get(b"content-type") or b"").split(b";")[0].strip().lower()
    return str(scope.get("path", "")).startswith("/review/") and mime == b"application/x-www-form-urlencoded"


class BodyGuard:
    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max = max_body_bytes

    async def _reject(self, send: Any, status: int, code: str, message: str) -> None:
        body = json.dumps(error_body(code, message), separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max:
            await self._reject(send, 413, "body_too_large", f"request body exceeds {self.max} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max:
                await self._reject(send, 413, "body_too_large", f"request body exceeds {self.max} bytes")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and not _is_json(headers.get(b"content-type")) and not _is_review_form(scope, headers):
            await self._reject(
                send, 415, "unsupported_media_type", "send the body as JSON with 'Content-Type: application/json'"
            )
            return
        if body:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                await self._reject(send, 400, "invalid_utf8", f"the body is not valid UTF-8 (byte {exc.start})")
                return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
