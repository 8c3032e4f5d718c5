"""Spam waves, after the fact: when a wave is recognised, its earlier messages are held too.

A raid's first messages look like anybody's "hi all": the behaviour model holds or times out an
account by its third message, once near-identical texts from several accounts have piled up. The
messages that came before were allowed. When a decision holds (or worse) a message for its
behaviour and names its spam wave (`Decision.cluster_id`), every earlier member of that wave whose
decision is milder than a hold gets the next revision: `hold_for_review`, cause `spam_wave`, with
a reason that names the wave, delivered by webhook like any revision. The chat service can then
hide them, and the review queue has the whole wave in one cluster (`POST /v1/review/bulk`).

Never more than a hold: an earlier member was not itself judged to deserve a block or a timeout,
and one reviewer verdict over the cluster settles them all. Never milder than what stands: a
member already held, blocked or sent to `support` is left alone. Exemptions are honoured: an
exempt channel always (the wave records each member's channel), an exempt role when Heron kept
the message (the async path keeps every message; the sync path only held ones).

Each (tenant, wave) remembers the members it already handled, for as long as the wave lives in
the behaviour state, so a raid of 500 messages does not look its members up 500 times. The
memory is per process: two workers may each look a member up once, and the second finds it
already held and leaves it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import cachetools

from pipeline.guilds import PLATFORM_GUILD
from pipeline.policy import _exemption
from pipeline.types import Action, Decision, Message, Reason

log = logging.getLogger(__name__)

WAVE_ACTION = Action.HOLD_FOR_REVIEW
MAX_MEMBERS = 1000  # at most this many earlier members revised per wave
WAVE_SCORERS = ("behaviour",)

ClusterLookup = Callable[[str, str], dict[str, Any] | None]


def recognised_wave(decision: Decision) -> str | None:
    """The wave a decision recognises: it names one, and the behaviour scorer's reason took the
    message to a hold or beyond. A 'gg' burst forms a cluster too, but nobody is held for it."""
    if decision.cluster_id is None or decision.action.severity < WAVE_ACTION.severity:
        return None
    for r in decision.reasons:
        if r.action.severity >= WAVE_ACTION.severity and any(s in r.source.split(",") for s in WAVE_SCORERS):
            return decision.cluster_id
    return None


class WaveReviser:
    """Revises the earlier members of recognised spam waves (see the module docstring)."""

    def __init__(self, store: Any, lookup: ClusterLookup, memory_s: float = 86_400) -> None:
        self.store = store
        self.lookup = lookup
        self._handled: cachetools.TTLCache[tuple[str, str], set[str]] = cachetools.TTLCache(10_000, memory_s)
        self._lock = threading.Lock()

    def after_decided(self, tenant_id: str, decisions: Sequence[Decision]) -> list[Decision]:
        """Call after `decisions` are stored. Returns the revisions it made; never raises (a failed
        wave revision is logged: the decisions themselves are already safe)."""
        waves: dict[str, set[str]] = {}
        for d in decisions:
            cid = recognised_wave(d)
            if cid is not None:
                waves.setdefault(cid, set()).add(d.message_id)
        revised: list[Decision] = []
        for cid, triggers in waves.items():
            try:
                revised += self._revise(tenant_id, cid, triggers)
            except Exception:  # noqa: BLE001 - logged; the next message of the wave tries again
                log.exception("could not revise the earlier members of spam wave %s", cid)
        return revised

    def _revise(self, tenant_id: str, cid: str, triggers: set[str]) -> list[Decision]:
        cluster = self.lookup(tenant_id, cid)
        if cluster is None:
            return []
        with self._lock:
            handled = self._handled.setdefault((tenant_id, cid), set())
            todo = [m for m in cluster["members"] if m["message_id"] not in handled and m["message_id"] not in triggers]
            handled.update(m["message_id"] for m in todo)
            handled.update(triggers)
        out: list[Decision] = []
        for member in todo[:MAX_MEMBERS]:
            current = self.store.decisions.get(tenant_id, member["message_id"])
            if current is None or current.action.severity >= WAVE_ACTION.severity or current.action is Action.SUPPORT:
                continue  # not decided here (yet), or already held or worse, or sent to support
            guild = self.store.guilds.get(tenant_id, current.guild_id) if current.guild_id else None
            policy = (guild or PLATFORM_GUILD).policy
            message: Message | None = self.store.messages.get(tenant_id, member["message_id"])
            probe = message or Message(id=member["message_id"], text="-", channel_id=member["channel_id"])
            if _exemption(probe, policy):
                continue
            text = (
                f"member of spam wave {cid} ({cluster['message_count']} messages from {cluster['author_count']} "
                f"accounts since {cluster['first_seen']}), recognised after this message was decided"
            )
            reason = Reason(category="spam", action=WAVE_ACTION, source="behaviour", text=text)
            new = current.model_copy(update={
                "action": WAVE_ACTION, "reasons": [*current.reasons, reason], "cluster_id": cid,
            })  # fmt: skip
            out.append(
                self.store.decisions.revise(
                    tenant_id, new, cause="spam_wave", actor="system:behaviour", note=f"spam wave {cid} recognised"
                )
            )
        if out:
            log.info("spam wave %s: held %d earlier member(s)", cid, len(out))
        return out
