"""Errors the client raises. Every API error carries Heron's stable `code` (docs/errors.md)."""

from __future__ import annotations

from typing import Any


class HeronError(Exception):
    """Base class of everything this package raises."""


class HeronAPIError(HeronError):
    """Heron answered 4xx/5xx (after retries, for retryable ones)."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details
        self.retry_after_s = retry_after_s


class HeronUnavailable(HeronError):
    """Heron could not be reached or did not answer in time (after retries)."""


class WebhookVerificationError(HeronError):
    """The request is not a genuine, fresh Heron webhook delivery."""


class WebhookReplayError(WebhookVerificationError):
    """This exact signed request was already accepted: a replay, not a redelivery (a redelivery
    is signed again with a new timestamp)."""
