"""The work a queue worker does, as plain functions over narrow interfaces (store, service, sink).

Celery tasks and the embedded worker are thin wrappers around these, so both paths behave the
same and the logic is testable without a broker.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from pipeline.guilds import PLATFORM_GUILD, GuildConfig
from pipeline.metrics import observe_decided
from pipeline.service import ModerationService
from pipeline.sinks import WebhookSink
from pipeline.store import Store
from pipeline.types import Decision

log = logging.getLogger(__name__)


def decide_stored_messages(
    store: Store, service: ModerationService, sink: WebhookSink | None, row_ids: list[int]
) -> list[Decision]:
    """Decide stored messages by row id; idempotent: already-decided messages are skipped.

    Messages of the same tenant are scored as one batch. New decisions are stored (with their
    webhook delivery, in one transaction) and delivered right away; a failed delivery is retried
    later by `deliver_due` with backoff.
    """
    if not row_ids:
        return []
    stored = [m for m in store.load_messages(row_ids) if m.status != "decided"]
    by_tenant: dict[str, list] = defaultdict(list)
    for m in stored:
        by_tenant[m.tenant_id].append(m)
    created: list[Decision] = []
    for tenant_id, msgs in by_tenant.items():
        batch: list[tuple] = []
        for m in msgs:
            guild: GuildConfig | None = PLATFORM_GUILD
            if m.message.guild_id:
                guild = store.guild(tenant_id, m.message.guild_id) or PLATFORM_GUILD
            batch.append((m.message, guild))
        decisions = service.decide_batch(tenant_id, batch)
        created.extend(d for _, d in store.save_decisions([(tenant_id, d) for d in decisions]))
    observe_decided(created)
    if sink is not None and created:
        sink.deliver_due(limit=max(50, len(created)))
    return created


def sweep(store: Store, requeue_after_s: float, enqueue: object) -> int:
    """Re-enqueue messages that stayed pending too long (a lost task, a dead worker, Redis restarted)."""
    row_ids = store.claim_stale_pending(requeue_after_s)
    if row_ids:
        log.warning("re-enqueuing %d stale pending messages", len(row_ids))
        for start in range(0, len(row_ids), 64):
            enqueue(row_ids[start : start + 64])  # type: ignore[operator]
    return len(row_ids)
