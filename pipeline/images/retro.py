"""Retroactive bank matching: content added to a bank is checked against the image hashes seen in
the last N days (the hashes are kept, never the images), and the decisions of matching messages
are revised (the next revision, delivered by webhook; the audit log keeps every one).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pipeline.ensemble import EnsembleResult
from pipeline.guilds import PLATFORM_GUILD
from pipeline.images.pdq import DIHEDRAL, MATCH_THRESHOLD, distances, to_words
from pipeline.policy import decide
from pipeline.store.banks import BankEntry
from pipeline.taxonomy import CATEGORY_NAMES
from pipeline.types import Action, Decision, Evidence, Message

log = logging.getLogger(__name__)


def find_matches(
    seen: Sequence[tuple[str, int, list[str]]], added: Sequence[BankEntry]
) -> dict[str, list[tuple[int, BankEntry, int, str]]]:
    """Message id -> [(attachment, entry, distance, variant)] for seen images within 31 bits of
    an added hash, over their dihedral variants."""
    out: dict[str, list[tuple[int, BankEntry, int, str]]] = {}
    if not seen or not added:
        return out
    for variant_no, variant in enumerate(DIHEDRAL):
        rows = [(m, a, hs[variant_no]) for m, a, hs in seen if len(hs) > variant_no]
        if not rows:
            continue
        words = to_words([h for _, _, h in rows])
        for entry, q in zip(added, to_words([e.hash for e in added]), strict=True):
            d = distances(words, q)
            for r in (d <= MATCH_THRESHOLD).nonzero()[0].tolist():
                m, a, _ = rows[r]
                out.setdefault(m, []).append((a, entry, int(d[r]), variant))
    return out


def revised_decision(current: Decision, message: Message | None, policy: Any, bank: Any,
                     hits: list[tuple[int, BankEntry, int, str]]) -> Decision:
    """The decision with the bank match folded in: the bank's category floors at 1.0, the policy
    is applied again, and the bank's forced action applies."""
    best: dict[int, tuple[BankEntry, int, str]] = {}
    for a, e, d, v in hits:
        if a not in best or d < best[a][1]:
            best[a] = (e, d, v)
    evidence = [
        Evidence(category=bank.category, detail=f"attachment {a} matches bank {bank.name!r}"
                 + (f" label {e.label!r}" if e.label else "") + f" at distance {d} ({v}); found after the fact")
        for a, (e, d, v) in sorted(best.items())
    ]
    scores = dict(current.scores)
    scores[bank.category] = 1.0
    unscored = {c: why for c, why in current.unscored.items() if c != bank.category}
    contributors: dict[str, list[str]] = {c: [] for c in CATEGORY_NAMES}
    contributors[bank.category] = ["image_hash"]
    ev: dict[str, list[tuple[str, Evidence]]] = {c: [] for c in CATEGORY_NAMES}
    ev[bank.category] = [("image_hash", e) for e in evidence]
    forced = [("image_hash", Action(bank.action), "; ".join(e.detail for e in evidence))] if bank.action else []
    result = EnsembleResult(scores, contributors, ev, list(current.missing_signals), [], forced=forced,
                            unscored=unscored)
    msg = message or Message(id=current.message_id, text="-")
    action, reasons = decide(result, msg, policy)
    if action.severity < current.action.severity:  # never milder than what was already decided
        action = current.action
    return current.model_copy(update={
        "action": action, "scores": scores, "unscored": unscored, "reasons": reasons,
        "model_versions": {**current.model_versions, "image_hash": "pdq-1"},
    })


def recheck_after_add(
    store: Any, tenant_id: str, bank_name: str, added: Sequence[BankEntry], days: float
) -> list[Decision]:
    """Revise the decisions of messages seen in the last `days` days whose images match `added`."""
    if not added or days <= 0:
        return []
    seen = store.banks.seen_since(tenant_id, days)
    matches = find_matches(seen, added)
    if not matches:
        return []
    bank = store.banks.get(tenant_id, bank_name)
    revised: list[Decision] = []
    for message_id, hits in matches.items():
        current = store.decisions.get(tenant_id, message_id)
        if current is None:
            continue
        if any(f"bank {bank.name!r}" in r.text for r in current.reasons):
            continue  # already matched this bank
        message = store.messages.get(tenant_id, message_id)
        guild = store.guilds.get(tenant_id, current.guild_id) if current.guild_id else None
        new = revised_decision(current, message, (guild or PLATFORM_GUILD).policy, bank, hits)
        revised.append(store.decisions.revise(tenant_id, new, cause="bank_match", actor="system:banks",
                                              note=f"bank {bank.name!r} gained matching content"))
        log.info("revised %s after bank %s gained matching content", message_id, bank.name)
    return revised
