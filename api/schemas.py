"""Request and response shapes of the HTTP API (XCreate / XPublic)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl, UrlConstraints, field_validator

from pipeline.policy import GuildPolicy
from pipeline.scorers.rules import (
    MAX_ALLOWLIST,
    MAX_KEYWORD_CHARS,
    MAX_KEYWORDS_PER_CATEGORY,
    MAX_REGEX_CHARS,
    MAX_REGEXES_PER_CATEGORY,
)
from pipeline.taxonomy import CATEGORY_NAMES, parse_category
from pipeline.types import MAX_URL_CHARS, Action, Decision, Message

MAX_BLOCKED_LINKS = 10_000


class ErrorDetail(BaseModel):
    """One problem in the request; validation errors name the field."""

    model_config = ConfigDict(extra="allow")

    field: str | None = None
    type: str | None = None
    message: str


class ErrorBody(BaseModel):
    code: str = Field(description="stable, machine-readable; listed in docs/errors.md")
    message: str = Field(description="for people; may change between versions")
    details: list[ErrorDetail] | None = None


class ErrorPublic(BaseModel):
    """Every 4xx and 5xx answer has this shape."""

    error: ErrorBody

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
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [EXAMPLE_MESSAGE],
            # Message._not_empty, stated in the schema: non-blank text or at least one attachment.
            "anyOf": [
                {"required": ["text"], "properties": {"text": {"pattern": r"\S"}}},
                {"required": ["attachments"], "properties": {"attachments": {"minItems": 1}}},
            ],
        },
    )


class DecisionPublic(Decision):
    pass


class PendingPublic(BaseModel):
    status: Literal["pending", "accepted"]
    message_id: str
    decision_id: str
    duplicate: bool = False
    detail: str


def _not_blank(term: str) -> str:
    if not term.strip():
        raise ValueError("a term must not be blank")
    return term


# The limits come from the scorers that run the lists, so the schema documents what they accept.
# "pattern" is for the schema only (a readable error comes from _not_blank).
_NOT_BLANK = {"pattern": r"\S"}
Keyword = Annotated[
    str, Field(min_length=1, max_length=MAX_KEYWORD_CHARS, json_schema_extra=_NOT_BLANK), AfterValidator(_not_blank)
]
Regex = Annotated[
    str, Field(min_length=1, max_length=MAX_REGEX_CHARS, json_schema_extra=_NOT_BLANK), AfterValidator(_not_blank)
]
LinkEntry = Annotated[
    str, Field(min_length=1, max_length=MAX_URL_CHARS, json_schema_extra=_NOT_BLANK), AfterValidator(_not_blank)
]
# Keys of keywords/regexes are categories; the validator below gives the readable error.
_CATEGORY_KEYS: dict[str, Any] = {"propertyNames": {"enum": list(CATEGORY_NAMES)}}


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

    keywords: dict[str, Annotated[list[Keyword], Field(max_length=MAX_KEYWORDS_PER_CATEGORY)]] = Field(
        default_factory=dict,
        description=f"category -> terms ('word', 'word*', '*word', '*word*'), each at most {MAX_KEYWORD_CHARS} chars",
        json_schema_extra=_CATEGORY_KEYS,
    )
    regexes: dict[str, Annotated[list[Regex], Field(max_length=MAX_REGEXES_PER_CATEGORY)]] = Field(
        default_factory=dict,
        description=f"category -> RE2 patterns, each at most {MAX_REGEX_CHARS} chars",
        json_schema_extra=_CATEGORY_KEYS,
    )
    allowlist: list[Keyword] = Field(default_factory=list, max_length=MAX_ALLOWLIST)
    blocked_links: list[LinkEntry] = Field(
        default_factory=list, max_length=MAX_BLOCKED_LINKS, description="domains or URL prefixes"
    )

    @field_validator("keywords", "regexes")
    @classmethod
    def _categories(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for k in v:
            parse_category(k)
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

    url: Annotated[HttpUrl, UrlConstraints(max_length=MAX_URL_CHARS)] = Field(
        description=(
            f"http(s), at most {MAX_URL_CHARS} characters (also once normalised); the host must resolve to "
            "public addresses only unless HERON_ALLOW_PRIVATE_WEBHOOKS is set"
        )
    )

    @field_validator("url")
    @classmethod
    def _normalised_fits(cls, v: HttpUrl) -> HttpUrl:
        # Normalising percent-encodes non-ASCII and punycodes the host, so a URL under the limit
        # can grow past it; the stored form is the normalised one.
        if len(str(v)) > MAX_URL_CHARS:
            raise ValueError(f"the URL is longer than {MAX_URL_CHARS} characters once normalised")
        return v


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


class BlockedLinksChange(BaseModel):
    """Entries to add to and remove from a guild's `blocked_links`, as one new lists version."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"add": ["evil.example", "bit.ly/abc"], "remove": []}]}
    )

    add: list[LinkEntry] = Field(
        default_factory=list, max_length=MAX_BLOCKED_LINKS, description="domains or URL prefixes"
    )
    remove: list[LinkEntry] = Field(default_factory=list, max_length=MAX_BLOCKED_LINKS, description="entries to drop")
