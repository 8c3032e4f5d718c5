"""moderate(): scorers → ensemble → policy → Decision. Knows nothing about HTTP or queues.

Scorers run batched. A scorer that raises, returns the wrong number of signals, or failed to load
at start-up becomes an error signal for the affected messages: the decision lists it in
`missing_signals`, and the guild's fail-open/fail-closed choice applies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.ensemble import EnsembleConfig, combine
from pipeline.guilds import PLATFORM_GUILD, GuildConfig
from pipeline.normalize import normalize
from pipeline.policy import decide
from pipeline.scorers import registry
from pipeline.scorers.base import Scorer, ScoringItem
from pipeline.types import Decision, Message, Signal, decision_id_for

log = logging.getLogger(__name__)


@dataclass
class ScorerStatus:
    name: str
    ok: bool
    version: str | None = None
    error: str | None = None
    detail: dict[str, object] = field(default_factory=dict)


class ModerationService:
    def __init__(
        self,
        scorers: Sequence[Scorer],
        ensemble: EnsembleConfig | None = None,
        unavailable: dict[str, str] | None = None,
    ) -> None:
        self.scorers = list(scorers)
        self.ensemble = ensemble or EnsembleConfig()
        self.unavailable = dict(unavailable or {})

    @classmethod
    def from_names(
        cls,
        names: Sequence[str],
        ensemble: EnsembleConfig | None = None,
        scorer_kwargs: dict[str, dict[str, object]] | None = None,
    ) -> ModerationService:
        """Build the registered scorers by name; one that fails to load is reported, not fatal."""
        scorers: list[Scorer] = []
        unavailable: dict[str, str] = {}
        for name in names:
            try:
                entry = registry.get_entry(name)
                scorer = entry.load_class()(**(scorer_kwargs or {}).get(name, {})).load()
                scorers.append(scorer)
            except Exception as exc:  # noqa: BLE001 - any load failure makes the signal unavailable
                log.exception("scorer %s failed to load", name)
                unavailable[name] = f"failed to load: {type(exc).__name__}: {exc}"
        return cls(scorers, ensemble, unavailable)

    def status(self) -> list[ScorerStatus]:
        out = []
        for s in self.scorers:
            detail: dict[str, object] = {}
            status_fn = getattr(s, "status", None)
            if callable(status_fn):
                detail = dict(status_fn())
            out.append(ScorerStatus(s.name, bool(detail.get("ok", True)), s.version, None, detail))
        out += [ScorerStatus(n, False, None, e) for n, e in self.unavailable.items()]
        return out

    def versions(self) -> dict[str, str]:
        return {s.name: s.version for s in self.scorers}

    def _run_scorer(self, scorer: Scorer, items: Sequence[ScoringItem]) -> list[Signal | None]:
        """Signals for the items this scorer applies to (None elsewhere)."""
        idx = [i for i, it in enumerate(items) if scorer.applies_to(it)]
        out: list[Signal | None] = [None] * len(items)
        if not idx:
            return out
        started = time.perf_counter()
        try:
            signals = scorer.score([items[i] for i in idx])
            if len(signals) != len(idx):
                raise RuntimeError(f"returned {len(signals)} signals for {len(idx)} items")
        except Exception as exc:  # noqa: BLE001 - a scorer failure is a missing signal, not a crash
            log.exception("scorer %s failed", scorer.name)
            err = scorer.error_signal(f"{type(exc).__name__}: {exc}", started)
            signals = [err] * len(idx)
        for i, sig in zip(idx, signals, strict=True):
            out[i] = sig
        return out

    def decide_batch(self, tenant_id: str, batch: Sequence[tuple[Message, GuildConfig | None]]) -> list[Decision]:
        """Decide a batch of messages (each with its guild's config) in one pass per scorer."""
        started = time.perf_counter()
        items = [ScoringItem(m, normalize(m.text), (g or PLATFORM_GUILD).lists) for m, g in batch]
        per_scorer = [self._run_scorer(s, items) for s in self.scorers]
        elapsed_ms = (time.perf_counter() - started) * 1000
        return [
            self._assemble(tenant_id, message, guild, [col[i] for col in per_scorer if col[i] is not None], elapsed_ms)
            for i, (message, guild) in enumerate(batch)
        ]

    def _assemble(
        self, tenant_id: str, message: Message, guild: GuildConfig | None, signals: list[Signal], elapsed_ms: float
    ) -> Decision:
        guild = guild or PLATFORM_GUILD
        signals = signals + [
            Signal(scorer=name, version="unavailable", error=err) for name, err in self.unavailable.items()
        ]
        result = combine(signals, self.ensemble)
        action, reasons = decide(result, message, guild.policy)
        return Decision(
            id=decision_id_for(tenant_id, message.id),
            message_id=message.id,
            guild_id=message.guild_id,
            action=action,
            scores=result.scores,
            reasons=reasons,
            missing_signals=result.missing,
            model_versions={s.scorer: s.version for s in signals if s.ok},
            policy_version=guild.policy_version,
            latency_ms=round(elapsed_ms, 3),
        )

    async def decide_one_async(self, tenant_id: str, message: Message, guild: GuildConfig | None = None) -> Decision:
        """One message on the event loop: micro-batching scorers (`submit`) are awaited, so
        concurrent requests share a forward pass; cheap list scorers run inline."""
        started = time.perf_counter()
        item = ScoringItem(message, normalize(message.text), (guild or PLATFORM_GUILD).lists)
        signals: list[Signal] = []
        waits = []
        for scorer in self.scorers:
            score_async = getattr(scorer, "score_one_async", None)
            if score_async is not None:
                if scorer.applies_to(item):
                    waits.append(score_async(item))
                continue
            if scorer.inline:
                sig = self._run_scorer(scorer, [item])[0]
                if sig is not None:
                    signals.append(sig)
            elif scorer.applies_to(item):
                loop = asyncio.get_running_loop()
                waits.append(loop.run_in_executor(None, lambda s=scorer: self._run_scorer(s, [item])[0]))
        if len(waits) == 1:  # the common case (one model scorer): no gather, no extra task
            got = await waits[0]
            if got is not None:
                signals.append(got)
        elif waits:
            signals.extend(s for s in await asyncio.gather(*waits) if s is not None)
        return self._assemble(tenant_id, message, guild, signals, (time.perf_counter() - started) * 1000)

    def decide_one(self, tenant_id: str, message: Message, guild: GuildConfig | None = None) -> Decision:
        return self.decide_batch(tenant_id, [(message, guild)])[0]

    def warm_up(self) -> None:
        """Run a few messages through every scorer before taking traffic.

        Model runtimes allocate and optimise on their first calls (ONNX Runtime's first run is
        tens of times slower than the next): without this, a user's first request can blow the
        sync budget and come back as 202 pending.
        """
        texts = ["hello there", "you are a complete idiot and everyone hates you " * 3, "free nitro at discord.gift"]
        messages = [Message(text=t) for t in texts]
        self.decide_batch("warm-up", [(m, None) for m in messages])
        for scorer in self.scorers:
            submit = getattr(scorer, "submit", None)
            if submit is None:
                continue
            futures = [submit(ScoringItem(m, normalize(m.text))) for m in messages * 4]
            for f in futures:
                f.result(timeout=120)

    def close(self) -> None:
        for s in self.scorers:
            s.close()
