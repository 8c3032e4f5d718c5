"""One small error taxonomy for the product core.

The core (store, service, sinks, netguard) raises these without knowing HTTP; `api/errors.py` maps
them to a status code and the `{"error": {"code", "message", "details"}}` payload in one place.
Each class has a stable default `code` (documented in docs/errors.md); a raise site may pass a
more specific one (`NotFound(..., code="unknown_guild")`) so a client can branch on it without
parsing the message.
"""

from __future__ import annotations

from typing import Any, ClassVar


class HeronError(Exception):
    """Base of every error the core reports to a caller on purpose (as opposed to a bug)."""

    code: ClassVar[str] = "error"

    def __init__(self, message: str, *, code: str | None = None, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            # An instance attribute shadows the class default for this one raise.
            self.code = code  # type: ignore[misc]
        self.details = details or []


class InvalidInput(HeronError):
    """The caller sent something the core will not accept; sending it again will not help."""

    code = "validation_error"


class NotFound(HeronError):
    """Nothing by that id for this tenant."""

    code = "not_found"


class Conflict(HeronError):
    """The request is valid but the current state does not allow it (e.g. no webhook to redeliver to)."""

    code = "conflict"


class Unauthenticated(HeronError):
    """No credentials, or credentials the store does not know."""

    code = "unauthorized"


class Forbidden(HeronError):
    """Authenticated, but this account's role or scope does not allow it (a viewer acting, a
    moderator on an escalated item)."""

    code = "forbidden"


class Unavailable(HeronError):
    """A dependency (database, queue, model) is down; retrying later may succeed."""

    code = "unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class RateLimited(HeronError):
    """Too many requests for a key or guild; `retry_after` seconds says when to try again."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class UnsafeURL(InvalidInput):
    """A URL Heron must not connect to (loopback, private, link-local, metadata ...).

    `pipeline.netguard.UnsafeURLError` is the concrete class; it is also a ValueError so that a
    pydantic validator raising it becomes a normal validation error."""

    code = "unsafe_url"
