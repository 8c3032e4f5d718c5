"""Typed shapes of what the Heron API takes and returns.

Plain dataclasses rather than pydantic: the client must not pull in the server's dependency set.
Unknown fields in answers are kept in `extra` instead of failing, so a newer server (a new score
category, a new field) does not break an older client; outgoing messages are serialised with only
the fields that were set.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

Action = Literal["allow", "flag", "hold_for_review", "block", "timeout_author"]
ACTIONS: tuple[str, ...] = ("allow", "flag", "hold_for_review", "block", "timeout_author")
# Actions after which a chat service should not show the message (pre-send: do not deliver it).
REMOVING_ACTIONS = frozenset({"hold_for_review", "block", "timeout_author"})


def new_message_id() -> str:
    """A message id for callers that have none: the client sends it on every retry, so Heron's
    per-(tenant, message id) dedupe makes a retried request decide the message once."""
    return uuid.uuid4().hex


def _iso(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("datetimes sent to Heron must be timezone-aware")
    return value.isoformat().replace("+00:00", "Z")


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None and v != [] and v != {}}


@dataclass
class Author:
    id: str = "unknown"
    created_at: datetime | str | None = None
    joined_at: datetime | str | None = None
    roles: list[str] = field(default_factory=list)
    bot: bool = False

    def to_json(self) -> dict[str, Any]:
        out = _drop_none(
            {"id": self.id, "created_at": _iso(self.created_at), "joined_at": _iso(self.joined_at), "roles": self.roles}
        )
        if self.bot:
            out["bot"] = True
        return out


@dataclass
class Attachment:
    """Exactly one of `url` (a URL Heron can fetch) or `content` (bytes, sent inline as base64)."""

    url: str | None = None
    content: bytes | None = None
    content_type: str | None = None
    filename: str | None = None

    def __post_init__(self) -> None:
        if (self.url is None) == (self.content is None):
            raise ValueError("an attachment needs exactly one of url or content")

    def to_json(self) -> dict[str, Any]:
        b64 = base64.b64encode(self.content).decode() if self.content is not None else None
        return _drop_none(
            {"url": self.url, "content_base64": b64, "content_type": self.content_type, "filename": self.filename}
        )


@dataclass
class Context:
    reply_to_id: str | None = None
    reply_to_text: str | None = None
    thread_id: str | None = None
    previous_texts: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return _drop_none(
            {
                "reply_to_id": self.reply_to_id,
                "reply_to_text": self.reply_to_text,
                "thread_id": self.thread_id,
                "previous_texts": self.previous_texts,
            }
        )


@dataclass
class Message:
    """One chat message. `id` defaults to a fresh one; set it to the chat service's own id so a
    resend (by this client's retries or by the caller) is recognised as the same message."""

    text: str = ""
    id: str = field(default_factory=new_message_id)
    guild_id: str | None = None
    channel_id: str | None = None
    author: Author | None = None
    attachments: list[Attachment] = field(default_factory=list)
    context: Context | None = None
    timestamp: datetime | str | None = None

    def to_json(self) -> dict[str, Any]:
        return _drop_none(
            {
                "id": self.id,
                "guild_id": self.guild_id,
                "channel_id": self.channel_id,
                "author": self.author.to_json() if self.author else None,
                "text": self.text or None,
                "attachments": [a.to_json() for a in self.attachments],
                "context": (self.context.to_json() or None) if self.context else None,
                "timestamp": _iso(self.timestamp),
            }
        )


def _split(cls: type, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    names = {f.name for f in fields(cls)}
    known = {k: v for k, v in data.items() if k in names}
    extra = {k: v for k, v in data.items() if k not in names}
    return known, extra


@dataclass
class Reason:
    action: str
    source: str
    text: str
    category: str | None = None
    score: float | None = None
    threshold: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reason:
        known, extra = _split(cls, data)
        return cls(**known, extra=extra)


@dataclass
class Decision:
    """A decision (its current revision) as Heron returns and delivers it."""

    id: str
    message_id: str
    action: str
    scores: dict[str, float | None]
    guild_id: str | None = None
    status: str = "complete"
    reasons: list[Reason] = field(default_factory=list)
    missing_signals: list[str] = field(default_factory=list)
    model_versions: dict[str, str] = field(default_factory=dict)
    policy_version: int = 0
    latency_ms: float = 0.0
    decided_at: str | None = None
    revision: int = 1
    cluster_id: str | None = None  # the spam wave this message joined (GET /v1/behaviour/clusters/{id})
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        known, extra = _split(cls, data)
        known["reasons"] = [Reason.from_json(r) for r in known.get("reasons", [])]
        return cls(**known, extra=extra)

    @property
    def removes(self) -> bool:
        """True when the chat service should not show the message."""
        return self.action in REMOVING_ACTIONS


@dataclass
class Pending:
    """A 202: stored, decided later; the decision arrives by webhook and at get_decision()."""

    message_id: str
    decision_id: str
    status: str
    duplicate: bool = False
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pending:
        known, extra = _split(cls, data)
        return cls(**known, extra=extra)


@dataclass
class ModerateResult:
    """What POST /v1/moderate answered: a decision (200) or pending (202)."""

    decision: Decision | None = None
    pending: Pending | None = None

    @property
    def is_decided(self) -> bool:
        return self.decision is not None


@dataclass
class DecisionPage:
    items: list[Decision]
    next_cursor: str | None


@dataclass
class Revision:
    revision: int
    cause: str
    actor: str
    action: str
    created_at: str
    decision: Decision

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Revision:
        return cls(
            revision=data["revision"],
            cause=data["cause"],
            actor=data["actor"],
            action=data["action"],
            created_at=data["created_at"],
            decision=Decision.from_json(data["decision"]),
        )


@dataclass
class Guild:
    guild_id: str
    policy: dict[str, Any]
    policy_version: int
    uses_platform_default: bool
    lists: dict[str, Any]
    lists_version: int
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Guild:
        known, extra = _split(cls, data)
        return cls(**known, extra=extra)


@dataclass
class Webhook:
    url: str
    secret: str | None = None
    signature_header: str = "Heron-Signature"
    timestamp_header: str = "Heron-Timestamp"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Webhook:
        known, extra = _split(cls, data)
        return cls(**known, extra=extra)


@dataclass
class WebhookEvent:
    """One verified webhook delivery. `duplicate` is True when this event id was already seen by
    the verifier (an at-least-once redelivery): apply nothing, answer 2xx."""

    type: str
    event_id: str
    revision: int
    decision: Decision
    cause: str | None = None
    duplicate: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WebhookEvent:
        known, extra = _split(cls, data)
        known.pop("duplicate", None)
        known["decision"] = Decision.from_json(known["decision"])
        return cls(**known, extra=extra)
