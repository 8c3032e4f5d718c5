"""Request and response shapes of the HTTP API (XCreate / XPublic)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from pipeline.policy import GuildPolicy
from pipeline.types import Decision, Message

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
    decision_id: str
    status: str
    attempts: int
    next_attempt_at: str
    last_error: str | None
    last_status_code: int | None
