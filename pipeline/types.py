"""Domain types shared by scorers, ensemble, policy, queue and API.

They are pydantic models because the same shapes cross process boundaries (Celery, webhooks,
JSON lines) and the API edge; `extra="forbid"` makes an unknown field a clear error instead of
a silently dropped one.
"""

from __future__ import annotations

import binascii
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    TypeAdapter,
    field_validator,
    model_validator,
)

from pipeline.taxonomy import parse_category

MAX_TEXT_CHARS = 4000
MAX_ATTACHMENTS = 10
# URLs anywhere (attachments, webhooks, blocked links): the webhooks.url column is this wide.
MAX_URL_CHARS = 2048
# One inline attachment, base64: 960,000 characters (720,000 bytes decoded). Chosen so that a
# message carrying one still fits the default HERON_MAX_BODY_BYTES (1,000,000) with room for its
# text and context; several inline attachments share that body limit.
MAX_ATTACHMENT_BASE64_CHARS = 960_000

Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]


def new_id() -> str:
    """A fresh message/decision id for callers that did not send one."""
    return uuid.uuid4().hex


def decision_id_for(tenant_id: str, message_id: str) -> str:
    """Deterministic: the same message always yields the same decision id, so receivers can dedupe."""
    return "dec_" + uuid.uuid5(uuid.NAMESPACE_URL, f"heron:{tenant_id}:{message_id}").hex


def utcnow() -> datetime:
    return datetime.now(UTC)


def _iso_timestamp(value: Any) -> Any:
    """Timestamps are ISO 8601 strings (or datetimes in Python): pydantic would also take a number
    as Unix seconds, which the schema does not offer and which hides a client sending ms."""
    if isinstance(value, int | float):
        raise ValueError("must be an ISO 8601 date-time string, e.g. 2026-11-20T09:00:00Z")
    return value


Timestamp = Annotated[datetime, BeforeValidator(_iso_timestamp)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class Author(_Strict):
    """Who wrote the message; account age and guild tenure feed the spam-behaviour signals."""

    id: Id = "unknown"
    created_at: Timestamp | None = Field(default=None, description="account creation time")
    joined_at: Timestamp | None = Field(default=None, description="when the author joined the guild")
    roles: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=250)
    bot: bool = Field(default=False, strict=True)  # 1 or "yes" is a client bug, not a bot


_HTTP_URL: TypeAdapter[HttpUrl] = TypeAdapter(HttpUrl)


def _http_url(value: str) -> str:
    """An absolute http(s) URL with a host; the string is kept as sent (the chat service's own)."""
    try:
        url = _HTTP_URL.validate_python(value)
    except ValueError:
        raise ValueError("must be an absolute http or https URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an absolute http or https URL")
    return value


def _base64(value: str) -> str:
    """Standard base64 with padding; refused here rather than when a scorer first decodes it."""
    try:
        binascii.a2b_base64(value, strict_mode=True)
    except binascii.Error as exc:
        raise ValueError(f"is not valid base64 ({exc})") from None
    return value


class Attachment(_Strict):
    """A file sent with the message: either a URL the chat service hosts, or inline base64 bytes."""

    url: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_URL_CHARS,
            json_schema_extra={"format": "uri"},
            description=f"absolute http(s) URL, at most {MAX_URL_CHARS} characters",
        ),
        AfterValidator(_http_url),
    ] | None = None
    content_base64: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_ATTACHMENT_BASE64_CHARS,
            description=(
                f"standard base64 with padding, at most {MAX_ATTACHMENT_BASE64_CHARS:,} characters "
                f"({MAX_ATTACHMENT_BASE64_CHARS // 4 * 3:,} bytes decoded); the whole request must also fit "
                "HERON_MAX_BODY_BYTES (default 1,000,000 bytes)"
            ),
        ),
        AfterValidator(_base64),
    ] | None = None
    content_type: Annotated[str, Field(max_length=100)] | None = None
    filename: Annotated[str, Field(max_length=255)] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Attachment:
        if (self.url is None) == (self.content_base64 is None):
            raise ValueError("an attachment needs exactly one of 'url' or 'content_base64'")
        return self


class Context(_Strict):
    """Conversation context: what this message replies to and the recent thread, oldest first."""

    reply_to_id: Id | None = None
    reply_to_text: Annotated[str, Field(max_length=MAX_TEXT_CHARS)] | None = None
    thread_id: Id | None = None
    previous_texts: list[Annotated[str, Field(max_length=MAX_TEXT_CHARS)]] = Field(default_factory=list, max_length=20)


class Message(_Strict):
    """One chat message as the chat service sends it.

    Only `text` is needed; everything else has defaults so `{"text": "..."}` is a valid message.
    """

    id: Id = Field(default_factory=new_id)
    guild_id: Id | None = Field(default=None, description="None means no guild: the platform default policy")
    channel_id: Id | None = None
    author: Author = Field(default_factory=Author)
    text: Annotated[str, Field(max_length=MAX_TEXT_CHARS)] = ""
    attachments: list[Attachment] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)
    context: Context = Field(default_factory=Context)
    timestamp: Timestamp = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _not_empty(self) -> Message:
        if not self.text.strip() and not self.attachments:
            raise ValueError("a message needs non-empty 'text' or at least one attachment")
        return self


class Action(StrEnum):
    """What the chat service should do, ordered from least to most severe.

    `support`: the author may be at risk (self_harm); reach out to them with the resources the
    webhook carries, leave the message up, punish no one. It ranks above `flag` because someone
    must act, and below `hold_for_review`/`block`/`timeout_author` because those answer a risk to
    *other* people (a threat in the same message must still be held); when one of them wins, the
    webhook still carries the support resources (any reason with `support` does).
    """

    ALLOW = "allow"
    FLAG = "flag"
    SUPPORT = "support"
    HOLD_FOR_REVIEW = "hold_for_review"
    BLOCK = "block"
    TIMEOUT_AUTHOR = "timeout_author"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {a: i for i, a in enumerate(Action)}


class Evidence(_Strict):
    """Why a scorer gave a category its score: a matched rule, a link, a model head."""

    category: str
    detail: str
    span: tuple[int, int] | None = None


class Signal(_Strict):
    """What one scorer says about one message.

    A failed scorer returns `error` and no scores: a missing signal is never a zero.
    `definitive` marks exact list matches (keyword lists, known-bad links) that the ensemble
    takes as a floor instead of averaging away.
    """

    scorer: str
    version: str
    scores: dict[str, float] = Field(default_factory=dict)
    evidence: list[Evidence] = Field(default_factory=list)
    definitive: bool = False
    # An action this signal forces whatever the thresholds say (a hash bank set to always block).
    action: Action | None = None
    error: str | None = None
    latency_ms: float = 0.0
    # Categories where this signal's score replaces the other scorers' model votes, because it
    # already read them: the behaviour model scores spam from the text model's spam score and the
    # author's behaviour together (pipeline/ensemble.py). List matches still set their floor.
    supersedes: list[str] = Field(default_factory=list)

    @field_validator("scores")
    @classmethod
    def _valid_scores(cls, v: dict[str, float]) -> dict[str, float]:
        for k, s in v.items():
            parse_category(k)
            if not 0.0 <= s <= 1.0:
                raise ValueError(f"score for {k} out of [0, 1]: {s}")
        return v

    @property
    def ok(self) -> bool:
        return self.error is None


class Reason(_Strict):
    """A reason a person can read, plus the machine fields behind it.

    `category` is None for reasons that are not about one category (an exempt role, a scorer
    that was unavailable).
    """

    category: str | None = None
    score: float | None = None
    threshold: float | None = None
    action: Action
    source: str
    text: str


class DecisionStatus(StrEnum):
    COMPLETE = "complete"
    # Answered within the sync budget on some signals (text) while others (images) are still being
    # computed; `pending_signals` names them and the complete decision follows as the next revision.
    PARTIAL = "partial"


class MediaReport(_Strict):
    """What happened to one attachment: its sniffed format, size and hashes, or why it could not be
    read (too large, corrupt, a decompression bomb, a polyglot, a refused URL, ...)."""

    index: int
    kind: str
    format: str | None = None
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    sha256: str | None = None
    error: str | None = None
    not_scanned: str | None = Field(
        default=None,
        description="why no scorer read this attachment (a video, a PDF: not an image); unlike `error`, "
        "this is not a failed check and does not hold the message",
    )


class ScorerScores(_Strict):
    """One scorer's own scores for a message, before the ensemble combined them.

    Kept on the decision (compactly: answered scorers only) because a reviewer's verdict is only
    useful for learning the ensemble (`heron train stacking`) if the per-scorer inputs of that
    decision are known; the combined `scores` alone cannot be re-weighted."""

    scores: dict[str, float]
    definitive: bool = False  # an exact list match: the ensemble took it as a floor


class Decision(_Strict):
    """The outcome for one message, as stored, returned and delivered by webhook."""

    id: str
    message_id: str
    guild_id: str | None = None
    status: DecisionStatus = DecisionStatus.COMPLETE
    action: Action
    scores: dict[str, float | None] = Field(
        description="per-category score in [0, 1]; null = not scored (the `unscored` field says why), never a 0.0 "
        "that would read as checked and clean")
    unscored: dict[str, str] = Field(
        default_factory=dict, description="category -> why it has no score (no scorer covers it, or its scorer failed)")
    reasons: list[Reason] = Field(default_factory=list)
    missing_signals: list[str] = Field(default_factory=list)
    pending_signals: list[str] = Field(
        default_factory=list, description="signals still being computed (status `partial`); the complete "
        "decision follows by webhook as the next revision"
    )
    media: list[MediaReport] = Field(default_factory=list, description="one report per attachment")
    cluster_id: str | None = Field(
        default=None,
        description="the spam wave (near-identical messages from several accounts in the guild) this message "
        "joined, if any: `GET /v1/behaviour/clusters/{id}` lists it, review items are grouped by it and "
        "`POST /v1/review/bulk` acts on all of it",
    )
    model_versions: dict[str, str] = Field(default_factory=dict)
    policy_version: int = 0
    latency_ms: float = 0.0
    decided_at: datetime = Field(default_factory=utcnow)
    signals: dict[str, ScorerScores] = Field(
        default_factory=dict, description="each scorer that answered -> its own per-category scores, before the "
        "ensemble combined them into `scores` (what learned ensemble weights are trained from)")
    revision: int = Field(
        default=1, ge=1, description="1 for the first decision; each later outcome (an image verdict, a reviewer, "
        "an appeal, an override) is the next revision of the same decision"
    )
