"""The work a queue worker does, as plain functions over narrow interfaces (store, service).

Celery tasks and the embedded worker are thin wrappers around these, so both paths behave the
same and the logic is testable without a broker.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable

from pipeline.guilds import PLATFORM_GUILD, GuildConfig
from pipeline.logs import log_context
from pipeline.metrics import observe_decided
from pipeline.service import ModerationService
from pipeline.store.messages import StoredMessage
from pipeline.store.protocols import DecidingStore
from pipeline.types import Decision, DecisionStatus, Message
from pipeline.waves import WaveReviser

log = logging.getLogger(__name__)


def decide_stored_messages(
    store: DecidingStore, service: ModerationService, row_ids: list[int], on_decided: Callable[[], None] | None = None,
    waves: WaveReviser | None = None,
) -> list[Decision]:
    """Decide stored messages by row id; idempotent: already-decided messages are skipped.

    Messages of the same tenant are scored as one batch. New decisions are stored with their
    outbox events in one transaction; delivering them is the sinks' work, not this function's
    (`on_decided` only tells a drainer in this process to look now). `waves`: once stored, a
    decision that recognises a spam wave holds the wave's earlier members (pipeline/waves.py).
    """
    if not row_ids:
        return []
    stored = [m for m in store.messages.load(row_ids) if m.status != "decided" or _partial(store, m)]
    by_tenant: dict[str, list[StoredMessage]] = defaultdict(list)
    for m in stored:
        by_tenant[m.tenant_id].append(m)
    created: list[Decision] = []
    for tenant_id, msgs in by_tenant.items():
        batch: list[tuple[Message, GuildConfig | None]] = []
        for m in msgs:
            guild: GuildConfig | None = PLATFORM_GUILD
            if m.message.guild_id:
                guild = store.guilds.get(tenant_id, m.message.guild_id) or PLATFORM_GUILD
            batch.append((m.message, guild))
        decisions = service.decide_batch(tenant_id, batch)
        request_ids = {m.message.id: m.request_id for m in msgs}
        new = store.decisions.save_many([(tenant_id, d) for d in decisions], request_ids=request_ids)
        new += _complete_partials(store, tenant_id, decisions, {d.id for _, d in new}, request_ids)
        store.messages.drop_inline(tenant_id, [d.message_id for d in decisions if d.status is DecisionStatus.COMPLETE])
        for _, d in new:
            with log_context(request_id=request_ids.get(d.message_id), message_id=d.message_id, tenant_id=tenant_id):
                log.info("decided: %s", d.action.value, extra={"decision_id": d.id, "action": d.action.value})
        created.extend(d for _, d in new)
        if waves is not None:
            waves.after_decided(tenant_id, [d for _, d in new])
    received = {m.message.id: m.received_at for m in stored}
    observe_decided(created, [(d.decided_at - received[d.message_id]).total_seconds()
                              for d in created if received.get(d.message_id) is not None])
    if created and on_decided is not None:
        on_decided()
    return created


def _partial(store: DecidingStore, m: StoredMessage) -> bool:
    """A decided message whose decision was answered on text alone (the sync path deferred its
    images): it is decided again, fully, and stored as the next revision."""
    current = store.decisions.get(m.tenant_id, m.message.id)
    return current is not None and current.status is DecisionStatus.PARTIAL


def _complete_partials(
    store: DecidingStore, tenant_id: str, decisions: list[Decision], created: set[str],
    request_ids: dict[str, str | None],
) -> list[tuple[str, Decision]]:
    """Complete decisions whose message already has a partial one: the next revision (webhook and
    audit included), never a second decision."""
    out: list[tuple[str, Decision]] = []
    for d in decisions:
        if d.id in created or d.status is not DecisionStatus.COMPLETE:
            continue
        current = store.decisions.get(tenant_id, d.message_id)
        if current is None or current.status is not DecisionStatus.PARTIAL:
            continue
        note = "signals pending at the first answer: " + ", ".join(current.pending_signals)
        revised = store.decisions.revise(tenant_id, d, cause="media_verdict", actor="system:pipeline", note=note,
                                         request_id=request_ids.get(d.message_id))
        out.append((tenant_id, revised))
    return out


def sweep(store: DecidingStore, requeue_after_s: float, enqueue: Callable[[list[int]], object]) -> int:
    """Re-enqueue messages that stayed pending too long (a lost task, a dead worker, Redis restarted)."""
    row_ids = store.messages.claim_stale_pending(requeue_after_s)
    if row_ids:
        log.warning("re-enqueuing %d stale pending messages", len(row_ids))
        for start in range(0, len(row_ids), 64):
            enqueue(row_ids[start : start + 64])
    return len(row_ids)
