"""What the sync and async clients share: the request each API call makes, how its answer is
parsed, and the retry policy. Each call is described once (`Call`) so the two clients cannot
disagree about a path or a shape; they differ only in how they wait and send.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from heron_client.errors import HeronAPIError, HeronError
from heron_client.models import (
    Decision,
    DecisionPage,
    Guild,
    Message,
    ModerateResult,
    Pending,
    Revision,
    Webhook,
)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff and full jitter on 429, 5xx and network errors.

    A 429's Retry-After is honoured (capped at `max_delay_s`). Every request the client retries
    carries the same message id, so Heron decides a message once however often it is sent.
    `max_retries=0` disables retrying (a pre-send check inside a latency budget wants that).
    """

    max_retries: int = 3
    base_delay_s: float = 0.25
    max_delay_s: float = 10.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        if response is not None:
            after = retry_after_s(response)
            if after is not None:
                return min(after, self.max_delay_s)
        cap = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return random.uniform(cap / 2, cap)


def retry_after_s(response: httpx.Response) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    now = datetime.now(when.tzinfo)
    return max(0.0, (when - now).total_seconds())


def should_retry(response: httpx.Response | None, exc: Exception | None) -> bool:
    if exc is not None:
        # Timeouts and connection failures; a request Heron may have received is safe to repeat
        # because it carries the same message id.
        return isinstance(exc, httpx.TransportError)
    assert response is not None
    return response.status_code in RETRY_STATUSES


def raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    code, message, details = "http_error", response.text[:500], None
    try:
        body = response.json()
        err = body.get("error", {}) if isinstance(body, dict) else {}
        code = err.get("code", code)
        message = err.get("message", message)
        details = err.get("details")
    except ValueError:
        pass
    raise HeronAPIError(response.status_code, code, message, details=details, retry_after_s=retry_after_s(response))


def _seg(value: str) -> str:
    return quote(value, safe="")


@dataclass
class Call:
    method: str
    path: str
    parse: Callable[[httpx.Response], Any]
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    # Every call is retried only when repeating it is harmless: reads, PUTs (idempotent), and
    # message sends (idempotent by message id).
    retryable: bool = True


def _json(r: httpx.Response) -> Any:
    return r.json()


def _none(r: httpx.Response) -> None:
    return None


def _moderate_result(r: httpx.Response) -> ModerateResult:
    if r.status_code == 202:
        return ModerateResult(pending=Pending.from_json(r.json()))
    return ModerateResult(decision=Decision.from_json(r.json()))


def _message_json(message: Message | dict[str, Any]) -> dict[str, Any]:
    if isinstance(message, Message):
        return message.to_json()
    if not isinstance(message, dict):
        raise HeronError("message must be a heron_client.Message or a dict")
    # A dict without an id gets one here, so retries of this call reuse it.
    if "id" not in message:
        from heron_client.models import new_message_id

        message = {**message, "id": new_message_id()}
    return message


# ---- one builder per API route ----------------------------------------------------------------


def moderate(message: Message | dict[str, Any]) -> Call:
    return Call("POST", "/v1/moderate", _moderate_result, json=_message_json(message))


def submit(message: Message | dict[str, Any]) -> Call:
    return Call("POST", "/v1/messages", lambda r: Pending.from_json(r.json()), json=_message_json(message))


def get_decision(decision_or_message_id: str) -> Call:
    return Call("GET", f"/v1/decisions/{_seg(decision_or_message_id)}", lambda r: Decision.from_json(r.json()))


def list_decisions(
    *,
    guild_id: str | None = None,
    action: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call:
    params = {
        "guild_id": guild_id,
        "action": action,
        "since": since.isoformat() if isinstance(since, datetime) else since,
        "until": until.isoformat() if isinstance(until, datetime) else until,
        "limit": limit,
        "cursor": cursor,
    }

    def parse(r: httpx.Response) -> DecisionPage:
        body = r.json()
        return DecisionPage(items=[Decision.from_json(d) for d in body["items"]], next_cursor=body.get("next_cursor"))

    return Call("GET", "/v1/decisions", parse, params={k: v for k, v in params.items() if v is not None})


def revisions(decision_id: str) -> Call:
    return Call(
        "GET", f"/v1/decisions/{_seg(decision_id)}/revisions", lambda r: [Revision.from_json(x) for x in r.json()]
    )


def revise(decision_id: str, action: str, reason: str, actor: str = "tenant") -> Call:
    # Not retried: each accepted override is a new revision, so a lost answer must not add a second.
    return Call(
        "POST",
        f"/v1/decisions/{_seg(decision_id)}/revisions",
        lambda r: Decision.from_json(r.json()),
        json={"action": action, "reason": reason, "actor": actor},
        retryable=False,
    )


def put_guild(guild_id: str, policy: dict[str, Any] | None = None, lists: dict[str, Any] | None = None) -> Call:
    body = {k: v for k, v in {"policy": policy, "lists": lists}.items() if v is not None}
    return Call("PUT", f"/v1/guilds/{_seg(guild_id)}", lambda r: Guild.from_json(r.json()), json=body)


def get_guild(guild_id: str) -> Call:
    return Call("GET", f"/v1/guilds/{_seg(guild_id)}", lambda r: Guild.from_json(r.json()))


def put_policy(guild_id: str, policy: dict[str, Any]) -> Call:
    return Call("PUT", f"/v1/guilds/{_seg(guild_id)}/policy", lambda r: Guild.from_json(r.json()), json=policy)


def put_lists(guild_id: str, lists: dict[str, Any]) -> Call:
    return Call("PUT", f"/v1/guilds/{_seg(guild_id)}/lists", lambda r: Guild.from_json(r.json()), json=lists)


def guild_history(guild_id: str) -> Call:
    return Call("GET", f"/v1/guilds/{_seg(guild_id)}/history", _json)


def put_webhook(url: str) -> Call:
    return Call("PUT", "/v1/webhook", lambda r: Webhook.from_json(r.json()), json={"url": url})


def get_webhook() -> Call:
    return Call("GET", "/v1/webhook", lambda r: Webhook.from_json(r.json()))


def request(method: str, path: str, json: Any = None, params: dict[str, Any] | None = None) -> Call:
    """Any other route (one newer than this client, e.g. /v1/banks): the JSON answer, or None for 204.
    Retried like the typed calls only for GET and PUT."""
    return Call(
        method.upper(),
        path,
        lambda r: None if r.status_code == 204 or not r.content else r.json(),
        json=json,
        params=params or {},
        retryable=method.upper() in ("GET", "PUT"),
    )


def deliveries(decision_id: str) -> Call:
    """Every webhook event of a decision (one per revision), with every attempt."""
    return Call("GET", f"/v1/webhook/deliveries/{_seg(decision_id)}", _json)


def redeliver(decision_id: str) -> Call:
    """Send the decision's current revision again (safe to repeat: the receiver dedupes)."""
    return Call("POST", f"/v1/webhook/deliveries/{_seg(decision_id)}/redeliver", _json)


def report(message_id: str, reporter: str, reason: str, message: Message | dict[str, Any] | None = None) -> Call:
    """A user's report of a message (POST /v1/reports). Pass `message` when Heron may not have kept
    it (a sync decision that needed no review). Answers the review item."""
    body: dict[str, Any] = {"message_id": message_id, "reporter": reporter, "reason": reason}
    if message is not None:
        body["message"] = _message_json(message)
    return Call("POST", "/v1/reports", _json, json=body, retryable=False)


def appeal(decision_id: str, appellant: str, reason: str) -> Call:
    """An author's appeal of a decision (POST /v1/appeals); the outcome arrives as a revision."""
    return Call(
        "POST",
        "/v1/appeals",
        _json,
        json={"decision_id": decision_id, "appellant": appellant, "reason": reason},
        retryable=False,
    )
