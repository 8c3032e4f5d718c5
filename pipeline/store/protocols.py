"""The small interfaces the rest of the core depends on, instead of the whole store.

`pipeline.queue.processing` needs to load messages, read guild configs and save decisions; the
sinks need to claim and record outbox events. Typing them against these Protocols (which the
SQLAlchemy repositories satisfy) keeps those modules free of SQLAlchemy and lets a test or another
backend supply just the role it needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from pipeline.guilds import GuildConfig
from pipeline.store.messages import StoredMessage
from pipeline.store.outbox import AttemptOutcome, OutboxEvent
from pipeline.types import Decision


class MessageRepo(Protocol):
    def load(self, row_ids: list[int]) -> list[StoredMessage]: ...
    def claim_stale_pending(self, older_than_s: float, limit: int = 500) -> list[int]: ...
    def drop_inline(self, tenant_id: str, message_ids: list[str]) -> None: ...


class GuildRepo(Protocol):
    def get(self, tenant_id: str, guild_id: str) -> GuildConfig | None: ...


class DecisionRepo(Protocol):
    def save_many(
        self,
        items: Sequence[tuple[str, Decision]],
        *,
        actor: str = ...,
        path: str = ...,
        request_ids: dict[str, str | None] | None = ...,
    ) -> list[tuple[str, Decision]]: ...
    def get(self, tenant_id: str, decision_or_message_id: str) -> Decision | None: ...
    def revise(
        self, tenant_id: str, decision: Decision, *, cause: str, actor: str, note: str | None = ...,
        request_id: str | None = ...,
    ) -> Decision: ...


class OutboxRepo(Protocol):
    def claim_due(
        self,
        sink: str,
        *,
        owner: str,
        lease_s: float,
        limit: int = ...,
        exclude_tenants: Iterable[str] = ...,
        per_tenant: dict[str, int] | None = ...,
        default_per_tenant: int | None = ...,
        max_tenants: int = ...,
    ) -> list[OutboxEvent]: ...
    def record_attempts(self, outcomes: Sequence[AttemptOutcome], *, owner: str) -> None: ...
    def defer(self, events: Sequence[OutboxEvent], *, owner: str, until: datetime) -> None: ...


class DecidingStore(Protocol):
    """What a queue worker's `decide_stored_messages` needs."""

    @property
    def messages(self) -> MessageRepo: ...
    @property
    def guilds(self) -> GuildRepo: ...
    @property
    def decisions(self) -> DecisionRepo: ...


class DrainingStore(Protocol):
    """What an outbox drainer needs."""

    @property
    def outbox(self) -> OutboxRepo: ...
