"""Sync and async clients for the Heron API.

Both send every request described in `_core` (one description per route), retry 429 (after
Retry-After), 5xx and network errors with backoff when repeating is harmless, and bound each
attempt with a timeout. `HeronClient` is for threads and scripts; `AsyncHeronClient` is for an
event loop (a chat server must never block its loop on moderation).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import httpx

from heron_client import _core
from heron_client._core import Call, RetryPolicy, raise_for_error, should_retry
from heron_client.errors import HeronUnavailable
from heron_client.models import Decision, DecisionPage, Guild, Message, ModerateResult, Pending, Revision, Webhook

DEFAULT_TIMEOUT_S = 10.0


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": "heron-client-python/0.1"}


class HeronClient:
    """Blocking client. Use as a context manager or call `close()`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> HeronClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, call: Call) -> Any:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            error: Exception | None = None
            try:
                response = self._http.request(call.method, call.path, json=call.json, params=call.params or None)
            except httpx.HTTPError as exc:
                error = exc
            retries_left = call.retryable and attempt < self.retry.max_retries
            if retries_left and should_retry(response, error):
                attempt += 1
                time.sleep(self.retry.delay(attempt, response))
                continue
            if error is not None:
                raise HeronUnavailable(f"{call.method} {call.path}: {type(error).__name__}: {error}") from error
            assert response is not None
            raise_for_error(response)
            return call.parse(response)

    def moderate(self, message: Message | dict[str, Any]) -> ModerateResult:
        """Decide one message now (POST /v1/moderate): a decision, or pending (202) when the budget ran out."""
        return self._run(_core.moderate(message))  # type: ignore[no-any-return]

    def submit(self, message: Message | dict[str, Any]) -> Pending:
        """Queue one message (POST /v1/messages); its decision arrives by webhook."""
        return self._run(_core.submit(message))  # type: ignore[no-any-return]

    def get_decision(self, decision_or_message_id: str) -> Decision:
        """Read a decision's current revision by decision id or message id."""
        return self._run(_core.get_decision(decision_or_message_id))  # type: ignore[no-any-return]

    def list_decisions(
        self,
        *,
        guild_id: str | None = None,
        action: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> DecisionPage:
        """One keyset page of decisions, oldest first (to reconcile after an outage)."""
        return self._run(
            _core.list_decisions(guild_id=guild_id, action=action, since=since, until=until, limit=limit, cursor=cursor)
        )  # type: ignore[no-any-return]

    def revisions(self, decision_id: str) -> list[Revision]:
        """A decision's history, one entry per revision."""
        return self._run(_core.revisions(decision_id))  # type: ignore[no-any-return]

    def revise(self, decision_id: str, action: str, reason: str, actor: str = "tenant") -> Decision:
        """A tenant moderator's override: a new revision, delivered by webhook. Never retried."""
        return self._run(_core.revise(decision_id, action, reason, actor))  # type: ignore[no-any-return]

    def put_guild(
        self, guild_id: str, policy: dict[str, Any] | None = None, lists: dict[str, Any] | None = None
    ) -> Guild:
        """Register a guild, optionally with its policy and lists."""
        return self._run(_core.put_guild(guild_id, policy, lists))  # type: ignore[no-any-return]

    def get_guild(self, guild_id: str) -> Guild:
        """A guild's current policy and lists."""
        return self._run(_core.get_guild(guild_id))  # type: ignore[no-any-return]

    def put_policy(self, guild_id: str, policy: dict[str, Any]) -> Guild:
        """A new policy version."""
        return self._run(_core.put_policy(guild_id, policy))  # type: ignore[no-any-return]

    def put_lists(self, guild_id: str, lists: dict[str, Any]) -> Guild:
        """A new word/link list version."""
        return self._run(_core.put_lists(guild_id, lists))  # type: ignore[no-any-return]

    def guild_history(self, guild_id: str) -> list[dict[str, Any]]:
        """Every policy and list version."""
        return self._run(_core.guild_history(guild_id))  # type: ignore[no-any-return]

    def put_webhook(self, url: str) -> Webhook:
        """Register the webhook URL; the answer carries the signing secret once."""
        return self._run(_core.put_webhook(url))  # type: ignore[no-any-return]

    def get_webhook(self) -> Webhook:
        """The registered webhook (without its secret)."""
        return self._run(_core.get_webhook())  # type: ignore[no-any-return]

    def request(self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        """Any other route (e.g. /v1/banks): its JSON answer; errors raise HeronAPIError."""
        return self._run(_core.request(method, path, json, params))

    def deliveries(self, decision_id: str) -> list[dict[str, Any]]:
        """Every webhook event of a decision (one per revision), with every attempt."""
        return self._run(_core.deliveries(decision_id))  # type: ignore[no-any-return]

    def redeliver(self, decision_id: str) -> dict[str, Any]:
        """Send the decision's current revision to the webhook again."""
        return self._run(_core.redeliver(decision_id))  # type: ignore[no-any-return]

    def report(
        self, message_id: str, reporter: str, reason: str, message: Message | dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Report a message for review (POST /v1/reports). Never retried."""
        return self._run(_core.report(message_id, reporter, reason, message))  # type: ignore[no-any-return]

    def appeal(self, decision_id: str, appellant: str, reason: str) -> dict[str, Any]:
        """Appeal a decision (POST /v1/appeals). Never retried."""
        return self._run(_core.appeal(decision_id, appellant, reason))  # type: ignore[no-any-return]


class AsyncHeronClient:
    """Asyncio client (httpx.AsyncClient): awaits never block the event loop."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncHeronClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, call: Call) -> Any:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            error: Exception | None = None
            try:
                response = await self._http.request(call.method, call.path, json=call.json, params=call.params or None)
            except httpx.HTTPError as exc:
                error = exc
            retries_left = call.retryable and attempt < self.retry.max_retries
            if retries_left and should_retry(response, error):
                attempt += 1
                await asyncio.sleep(self.retry.delay(attempt, response))
                continue
            if error is not None:
                raise HeronUnavailable(f"{call.method} {call.path}: {type(error).__name__}: {error}") from error
            assert response is not None
            raise_for_error(response)
            return call.parse(response)

    async def moderate(self, message: Message | dict[str, Any]) -> ModerateResult:
        """Decide one message now (POST /v1/moderate): a decision, or pending (202) when the budget ran out."""
        return await self._run(_core.moderate(message))  # type: ignore[no-any-return]

    async def submit(self, message: Message | dict[str, Any]) -> Pending:
        """Queue one message (POST /v1/messages); its decision arrives by webhook."""
        return await self._run(_core.submit(message))  # type: ignore[no-any-return]

    async def get_decision(self, decision_or_message_id: str) -> Decision:
        """Read a decision's current revision by decision id or message id."""
        return await self._run(_core.get_decision(decision_or_message_id))  # type: ignore[no-any-return]

    async def list_decisions(
        self,
        *,
        guild_id: str | None = None,
        action: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> DecisionPage:
        """One keyset page of decisions, oldest first (to reconcile after an outage)."""
        return await self._run(
            _core.list_decisions(guild_id=guild_id, action=action, since=since, until=until, limit=limit, cursor=cursor)
        )  # type: ignore[no-any-return]

    async def revisions(self, decision_id: str) -> list[Revision]:
        """A decision's history, one entry per revision."""
        return await self._run(_core.revisions(decision_id))  # type: ignore[no-any-return]

    async def revise(self, decision_id: str, action: str, reason: str, actor: str = "tenant") -> Decision:
        """A tenant moderator's override: a new revision, delivered by webhook. Never retried."""
        return await self._run(_core.revise(decision_id, action, reason, actor))  # type: ignore[no-any-return]

    async def put_guild(
        self, guild_id: str, policy: dict[str, Any] | None = None, lists: dict[str, Any] | None = None
    ) -> Guild:
        """Register a guild, optionally with its policy and lists."""
        return await self._run(_core.put_guild(guild_id, policy, lists))  # type: ignore[no-any-return]

    async def get_guild(self, guild_id: str) -> Guild:
        """A guild's current policy and lists."""
        return await self._run(_core.get_guild(guild_id))  # type: ignore[no-any-return]

    async def put_policy(self, guild_id: str, policy: dict[str, Any]) -> Guild:
        """A new policy version."""
        return await self._run(_core.put_policy(guild_id, policy))  # type: ignore[no-any-return]

    async def put_lists(self, guild_id: str, lists: dict[str, Any]) -> Guild:
        """A new word/link list version."""
        return await self._run(_core.put_lists(guild_id, lists))  # type: ignore[no-any-return]

    async def guild_history(self, guild_id: str) -> list[dict[str, Any]]:
        """Every policy and list version."""
        return await self._run(_core.guild_history(guild_id))  # type: ignore[no-any-return]

    async def put_webhook(self, url: str) -> Webhook:
        """Register the webhook URL; the answer carries the signing secret once."""
        return await self._run(_core.put_webhook(url))  # type: ignore[no-any-return]

    async def get_webhook(self) -> Webhook:
        """The registered webhook (without its secret)."""
        return await self._run(_core.get_webhook())  # type: ignore[no-any-return]

    async def request(self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        """Any other route (e.g. /v1/banks): its JSON answer; errors raise HeronAPIError."""
        return await self._run(_core.request(method, path, json, params))

    async def deliveries(self, decision_id: str) -> list[dict[str, Any]]:
        """Every webhook event of a decision (one per revision), with every attempt."""
        return await self._run(_core.deliveries(decision_id))  # type: ignore[no-any-return]

    async def redeliver(self, decision_id: str) -> dict[str, Any]:
        """Send the decision's current revision to the webhook again."""
        return await self._run(_core.redeliver(decision_id))  # type: ignore[no-any-return]

    async def report(
        self, message_id: str, reporter: str, reason: str, message: Message | dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Report a message for review (POST /v1/reports). Never retried."""
        return await self._run(_core.report(message_id, reporter, reason, message))  # type: ignore[no-any-return]

    async def appeal(self, decision_id: str, appellant: str, reason: str) -> dict[str, Any]:
        """Appeal a decision (POST /v1/appeals). Never retried."""
        return await self._run(_core.appeal(decision_id, appellant, reason))  # type: ignore[no-any-return]
