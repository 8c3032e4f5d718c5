"""Request and response shapes of the HTTP API (XCreate / XPublic)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from pipeline.policy import GuildPolicy
from pipeline.types import Action, Decision, Message

EXAMPLE_MESSAGE: dict[str, Any] = {
    "id": "1183847102938475",
    "guild_id": "guild-1",
    "channel_id": "general",
    "author": {
        "id": "user-42",
        "created_at": "2026-11-01T10:00:00Z",
        "joined_at": "2026-11-20T09:00:00Z",
        "roles": ["member"],
    },
    "text": "you are a complete idiot",
}


class MessageCreate(Message):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_MESSAGE]})


class DecisionPublic(Decision):
    pass


class PendingPublic(BaseModel):
    status: Literal["pending", "accepted"]
    message_id: str
    decision_id: str
    duplicate: bool = False
    detail: str


class ListsBody(BaseModel):
    """Per-guild lists (AutoMod style). Keys of keywords/regexes are taxonomy categories."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "keywords": {"toxicity": ["idiot", "stupid*"]},
                    "regexes": {"spam": [r"free\s+nitro"]},
                    "allowlist": ["scunthorpe"],
                    "blocked_links": ["evil.example"],
                }
            ]
        },
    )

    keywords: dict[str, list[str]] = Field(default_factory=dict)
    regexes: dict[str, list[str]] = Field(default_factory=dict)
    allowlist: list[str] = Field(default_factory=list, max_length=1000)
    blocked_links: list[str] = Field(default_factory=list, max_length=10000)

    @field_validator("keywords", "regexes")
    @classmethod
    def _categories(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        from pipeline.taxonomy import parse_category

        for k, terms in v.items():
            parse_category(k)
            if len(terms) > 1000:
                raise ValueError(f"{k}: at most 1000 terms")
            for t in terms:
                if not t.strip() or len(t) > 200:
                    raise ValueError(f"{k}: terms must be 1-200 characters")
        return v


class GuildCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: GuildPolicy | None = None
    lists: ListsBody | None = None


class GuildPublic(BaseModel):
    guild_id: str
    policy: dict[str, Any]
    policy_version: int
    uses_platform_default: bool
    lists: dict[str, Any]
    lists_version: int


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"url": "https://chat.example/heron-hook"}]}
    )

    url: HttpUrl


class WebhookPublic(BaseModel):
    url: str
    secret: str | None = Field(default=None, description="shown once, when the webhook is registered")
    signature_header: str = "Heron-Signature"
    timestamp_header: str = "Heron-Timestamp"


class DeliveryPublic(BaseModel):
    """One webhook event: a decision revision on its way to the chat service."""

    decision_id: str
    message_id: str
    revision: int
    event_id: str = Field(description="decision id + revision: dedupe on it (also the Heron-Event-Id header)")
    status: Literal["pending", "delivered", "dead"]
    attempts: int = Field(description="every attempt ever made, across redeliveries")
    next_attempt_at: str | None = Field(description="when the next attempt is due; null once delivered or dead")
    last_error: str | None
    last_status_code: int | None
    created_at: str
    delivered_at: str | None = None
    dead_at: str | None = None


class AttemptPublic(BaseModel):
    attempt: int
    at: str
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float | None


class DeliveryDetail(DeliveryPublic):
    history: list[AttemptPublic]


class RevisionPublic(BaseModel):
    """One outcome in a decision's history."""

    revision: int
    cause: str = Field(description="initial, override, image, behaviour, review, appeal, ...")
    actor: str
    action: str
    created_at: str
    decision: DecisionPublic


class DecisionList(BaseModel):
    items: list[DecisionPublic]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class DecisionRevise(BaseModel):
    """A tenant's own moderator overrides Heron's outcome for a message (e.g. after a user report)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"action": "allow", "reason": "reviewed by a guild moderator: sarcasm",
                                         "actor": "mod-17"}]},
    )

    action: Action
    reason: str = Field(min_length=1, max_length=500)
    actor: str = Field(default="tenant", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:@\-]+$")
