"""Request ids: every HTTP request gets one, its log lines carry it, and its response returns it.

A chat service that sends `X-Request-Id` (its own trace id, say) finds the same id in Heron's log
lines for that request and in the response header, so one grep follows a message from the chat
core into Heron. Without the header Heron makes a new id (a UUID4 in hex) and returns it.

An id that is not 1-128 characters of `A-Z a-z 0-9 . _ : -` is replaced by a new one rather than
refused: tracing must never fail a request, and a header copied verbatim into log lines and
response headers must not be able to forge log lines or inject headers.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from pipeline.logs import request_id

HEADER = "X-Request-Id"
_HEADER_KEY = HEADER.lower().encode("latin-1")
_VALID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")

Scope = dict[str, Any]


def request_id_from(scope: Scope) -> str:
    """The caller's `X-Request-Id` when it is well-formed, else a new one."""
    for key, value in scope.get("headers") or ():
        if key == _HEADER_KEY and _VALID.fullmatch(value):
            return str(value.decode("ascii"))
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Pure ASGI: sets `pipeline.logs.request_id` for the request and adds the response header.

    Pure ASGI, not Starlette's BaseHTTPMiddleware, so the context variable is set in the task that
    runs the route (and copied into the threads it hands work to) and streaming bodies are not
    buffered. The id stays set if the app raises, so the error handler's log line names the
    request too.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_from(scope)
        header = (_HEADER_KEY, rid.encode("ascii"))

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != _HEADER_KEY]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        token = request_id.set(rid)
        await self.app(scope, receive, send_with_id)
        request_id.reset(token)
