"""moderate(): features → scorers → ensemble → policy → Decision. Knows nothing about HTTP or queues.

The feature stage fills each message's context once (normalised text, links, attachment
references; later decoded media and behaviour counters), running only the extractors some scorer
`needs`. Scorers run batched and are driven by their declared capabilities (`scorers/base.py`).
A scorer that raises, returns the wrong number of signals, failed to load at start-up, or needs
a feature whose extractor failed becomes an error signal for the affected messages: the
decision lists it in `missing_signals`, and the guild's fail-open/fail-closed choice applies.
A scorer that reads other scorers' signals (`Scorer.reads`: the behaviour model reads the text
model's spam score) runs after the others, with their signals in `ItemContext.signals`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pipeline.ensemble import EnsembleConfig, combine
from pipeline.features import FeatureStage, build_stage
from pipeline.features.context import Feature, MediaRef
from pipeline.guilds import PLATFORM_GUILD, GuildConfig
from pipeline.policy import decide
from pipeline.scorers import registry
from pipeline.scorers.base import Scorer, ScoringItem
from pipeline.settings import Settings, get_settings
from pipeline.types import Decision, DecisionStatus, MediaReport, Message, ScorerScores, Signal, decision_id_for

log = logging.getLogger(__name__)


@dataclass
class ScorerStatus:
    name: str
    ok: bool
    version: str | None = None
    error: str | None = None
    detail: dict[str, object] = field(default_factory=dict)


def needed_features(scorers: Sequence[Scorer]) -> frozenset[Feature]:
    """The features at least one of `scorers` reads: the only extractors worth running."""
    return frozenset().union(*(s.needs for s in scorers))


def media_report(ref: MediaRef) -> MediaReport:
    d = ref.decoded
    return MediaReport(
        index=ref.index, kind=ref.kind, format=d.format if d else None, width=d.width if d else None,
        height=d.height if d else None, frames=len(d.frames) if d else None, sha256=d.sha256 if d else None,
        error=ref.error, not_scanned=ref.not_scanned,
    )


@dataclass
class ScoredBatch:
    """One decided batch with what it was decided from: each message's signals (as the ensemble saw
    them, unavailable scorers included) beside its decision. A shadow (pipeline/shadow.py) re-decides
    from these instead of running the other scorers again: behaviour counters, for one, would count
    the message twice."""

    tenant_id: str
    batch: Sequence[tuple[Message, GuildConfig | None]]
    items: list[ScoringItem]
    signals: list[list[Signal]]
    decisions: list[Decision]


def scorer_coverage(scorers: Sequence[Scorer], unavailable: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """Scorer name -> the categories it can score, unavailable scorers included (from the
    registry), so a decision can say *why* a category has no score."""
    from pipeline.scorers.registry import BY_NAME

    cov = {s.name: tuple(s.labels) for s in scorers}
    for name in unavailable:
        entry = BY_NAME.get(name)
        if entry is not None:
            try:
                cov[name] = tuple(entry.load_class().labels)
            except Exception:  # noqa: BLE001 - an unimportable scorer still counts as covering nothing known
                cov[name] = ()
    return cov


def signal_summary(signals: Sequence[Signal]) -> dict[str, ScorerScores]:
    """What a decision keeps of its signals: each answered scorer's scores, 4 decimals."""
    return {s.scorer: ScorerScores(scores={c: round(v, 4) for c, v in s.scores.items()}, definitive=s.definitive)
            for s in signals if s.ok and s.scores}


class ModerationService:
    # Run the extractors only reading scorers need on a thread while the others score (see
    # `_split`); False runs every extractor first, in order (bench/bench_behaviour.py compares).
    overlap_features: bool = True

    def __init__(
        self,
        scorers: Sequence[Scorer],
        ensemble: EnsembleConfig | None = None,
        unavailable: dict[str, str] | None = None,
        features: FeatureStage | None = None,
    ) -> None:
        """`features` None: a stage with the extractors the scorers need (`Scorer.needs`)."""
        self.scorers = list(scorers)
        self.ensemble = ensemble or EnsembleConfig()
        self.unavailable = dict(unavailable or {})
        self.features = features if features is not None else build_stage(needed_features(self.scorers))
        # The sync path's stage when images are deferred: everything but the decoder.
        self.light_features = FeatureStage(e for e in self.features.extractors if e.name != "decode")
        self.media_scorers = [s for s in self.scorers if Feature.MEDIA in s.needs]
        # Called with (tenant, [(item, decision)]) after each batch: the runtime keeps image hashes
        # (retroactive bank matching) and review thumbnails there. None: nothing is kept.
        self.on_media: Callable[[str, list[tuple[ScoringItem, Decision]]], None] | None = None
        self.coverage = scorer_coverage(self.scorers, self.unavailable)
        # Called with each ScoredBatch `decide_batch` made (the async path's shadow, pipeline/shadow.py);
        # it must not raise into the live path, and a failure here is logged, never the decision's.
        self.after_batch: Callable[[ScoredBatch], None] | None = None
        # Extractors that only reading scorers need (the behaviour counters) run on this thread
        # while the other scorers score (`_split`); one thread keeps batches in order.
        self._overlap = ThreadPoolExecutor(1, thread_name_prefix="heron-features")
        self._splits: dict[int, tuple[FeatureStage, FeatureStage, FeatureStage]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, ensemble: EnsembleConfig | None = None) -> ModerationService:
        """The scorers named in `settings.scorers`, each built by its `from_settings`; the ensemble
        uses the learned weights of HERON_ENSEMBLE_STACKING when that names a file (validated when
        the settings were read)."""
        if ensemble is None and settings.ensemble_stacking is not None:
            from pipeline.stacking import load as load_stacking

            ensemble = EnsembleConfig(stacking=load_stacking(settings.ensemble_stacking))
        return cls.from_names(settings.scorers, ensemble, settings)

    @classmethod
    def from_names(
        cls, names: Sequence[str], ensemble: EnsembleConfig | None = None, settings: Settings | None = None
    ) -> ModerationService:
        """Build the registered scorers by name (from `settings`, default the process's); one that
        fails to load is reported, not fatal."""
        settings = settings or get_settings()
        scorers, unavailable = registry.load_many(names, settings)  # shared models loaded once
        return cls(scorers, ensemble, unavailable, build_stage(needed_features(scorers), settings))

    def status(self) -> list[ScorerStatus]:
        out = []
        for s in self.scorers:
            detail = dict(s.status())
            out.append(ScorerStatus(s.name, bool(detail.get("ok", True)), s.version, None, detail))
        out += [ScorerStatus(n, False, None, e) for n, e in self.unavailable.items()]
        return out

    def versions(self) -> dict[str, str]:
        return {s.name: s.version for s in self.scorers}

    def _items(self, tenant_id: str, batch: Sequence[tuple[Message, GuildConfig | None]]) -> list[ScoringItem]:
        return [ScoringItem(m, tenant_id=tenant_id, lists=(g or PLATFORM_GUILD).lists) for m, g in batch]

    def _run_scorer(self, scorer: Scorer, items: Sequence[ScoringItem]) -> list[Signal | None]:
        """Signals for the items this scorer applies to (None elsewhere); an error signal where a
        feature it needs failed (whether it would apply cannot be known then)."""
        out: list[Signal | None] = [None] * len(items)
        idx = []
        for i, it in enumerate(items):
            missing = it.context.missing(scorer.needs)
            if missing is not None:
                out[i] = scorer.error_signal(missing)
            elif scorer.applies_to(it):
                idx.append(i)
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

    @staticmethod
    def hand_over(reader: Scorer, items: Sequence[ScoringItem], columns: dict[str, list[Signal | None]]) -> None:
        """Put the successful signals a reading scorer declares (`Scorer.reads`) into each item's
        `context.signals`; `columns` maps a scorer name to its per-item signals."""
        for name in reader.reads:
            for it, sig in zip(items, columns.get(name, ()), strict=False):
                if sig is not None and sig.ok:
                    it.context.signals[name] = sig

    def _split(self, stage: FeatureStage) -> tuple[FeatureStage, FeatureStage]:
        """(the extractors the scorers that read no signals need, the rest): the rest is needed only
        by reading scorers, which run last, so it can overlap the others' scoring."""
        if not self.overlap_features:
            return stage, FeatureStage(())
        got = self._splits.get(id(stage))
        if got is None or got[0] is not stage:
            first, rest = stage.split(needed_features([s for s in self.scorers if not s.reads]))
            got = self._splits[id(stage)] = (stage, first, rest)
        return got[1], got[2]

    def _columns(self, items: Sequence[ScoringItem]) -> list[list[Signal | None]]:
        """Features, then every scorer's signals in configured order: scorers that read nothing
        first, with the extractors only the readers need running on a thread meanwhile (the
        behaviour counters' Redis round trip overlaps the text model's forward pass); then the
        readers, each handed the signals it reads."""
        first, rest = self._split(self.features)
        first.run(items)
        late = self._overlap.submit(rest.run, items) if rest.extractors else None
        cols: dict[int, list[Signal | None]] = {}
        try:
            for k, s in enumerate(self.scorers):
                if not s.reads:
                    cols[k] = self._run_scorer(s, items)
        finally:
            if late is not None:
                late.result()
        named = {self.scorers[k].name: col for k, col in cols.items()}
        for k, s in enumerate(self.scorers):
            if s.reads:
                self.hand_over(s, items, named)
                cols[k] = self._run_scorer(s, items)
        return [cols[k] for k in range(len(self.scorers))]

    def decide_batch(self, tenant_id: str, batch: Sequence[tuple[Message, GuildConfig | None]]) -> list[Decision]:
        """Decide a batch of messages (each with its guild's config) in one pass per scorer."""
        scored = self.score_batch(tenant_id, batch)
        if self.after_batch is not None:
            try:
                self.after_batch(scored)
            except Exception:  # noqa: BLE001 - an observer (the shadow) never costs the live decisions
                log.exception("after-batch hook failed; the live decisions stand")
        return scored.decisions

    def score_batch(self, tenant_id: str, batch: Sequence[tuple[Message, GuildConfig | None]]) -> ScoredBatch:
        """`decide_batch` with each message's signals kept beside its decision."""
        started = time.perf_counter()
        items = self._items(tenant_id, batch)
        per_scorer = self._columns(items)
        elapsed_ms = (time.perf_counter() - started) * 1000
        signals = [self.full_signals(message, [col[i] for col in per_scorer if col[i] is not None])
                   for i, (message, _) in enumerate(batch)]
        decisions = [
            self._assemble(tenant_id, message, guild, signals[i], elapsed_ms, items[i].context.media, complete=True,
                           item=items[i])
            for i, (message, guild) in enumerate(batch)
        ]
        self._media_done(tenant_id, items, decisions)
        return ScoredBatch(tenant_id, batch, items, signals, decisions)

    def _media_done(self, tenant_id: str, items: Sequence[ScoringItem], decisions: Sequence[Decision]) -> None:
        if self.on_media is None:
            return
        with_media = [(it, d) for it, d in zip(items, decisions, strict=True) if it.context.media]
        if not with_media:
            return
        try:
            self.on_media(tenant_id, with_media)
        except Exception:  # noqa: BLE001 - keeping hashes/thumbnails must not cost the decision
            log.exception("keeping media hashes/thumbnails failed")

    def full_signals(self, message: Message, signals: list[Signal], pending: Sequence[str] = ()) -> list[Signal]:
        """The scorers' signals plus what stands for the ones that could not answer: an error signal
        per unavailable scorer, and one for attachments no configured scorer reads."""
        signals = signals + [
            Signal(scorer=name, version="unavailable", error=err) for name, err in self.unavailable.items()
        ]
        if message.attachments and not self.media_scorers and not pending and "image" not in self.unavailable:
            # Attachments and no scorer that reads them: "not checked" must not read as "clean".
            signals.append(Signal(scorer="image", version="none", error="no image scorer is configured"))
        return signals

    def _assemble(
        self, tenant_id: str, message: Message, guild: GuildConfig | None, signals: list[Signal], elapsed_ms: float,
        media: Sequence[MediaRef] = (), pending: Sequence[str] = (), *, complete: bool = False,
        item: ScoringItem | None = None,
    ) -> Decision:
        """`complete`: `signals` already went through `full_signals`. `item`: the scored item, whose
        behaviour snapshot names the message's spam wave."""
        guild = guild or PLATFORM_GUILD
        if not complete:
            signals = self.full_signals(message, signals, pending)
        result = combine(signals, self.ensemble, self.coverage)
        action, reasons = decide(result, message, guild.policy)
        versions = {s.scorer: s.version for s in signals if s.ok}
        if self.ensemble.stacking is not None:
            versions["ensemble"] = f"stacking:{self.ensemble.stacking.version}"
        return Decision(
            id=decision_id_for(tenant_id, message.id),
            message_id=message.id,
            guild_id=message.guild_id,
            action=action,
            scores=result.scores,
            unscored=result.unscored,
            reasons=reasons,
            missing_signals=result.missing,
            status=DecisionStatus.PARTIAL if pending else DecisionStatus.COMPLETE,
            pending_signals=list(pending),
            media=[media_report(r) for r in media],
            cluster_id=item.context.behaviour.cluster_id if item is not None and item.context.behaviour else None,
            model_versions=versions,
            policy_version=guild.policy_version,
            latency_ms=round(elapsed_ms, 3),
            signals=signal_summary(signals),
        )

    async def decide_one_async(
        self, tenant_id: str, message: Message, guild: GuildConfig | None = None, *, defer_media: bool = False
    ) -> Decision:
        """One message on the event loop: `async_single` scorers are awaited (the text model's
        micro-batcher, so concurrent requests share a forward pass); `inline` scorers run right
        here; the rest on a thread. Inline extractors (all of today's) run without a coroutine.

        `defer_media`: a message with attachments is decided without decoding them; the media
        scorers are named in `pending_signals` (status `partial`) and the caller completes the
        decision later (the sync API hands it to the async path, which stores it as a revision)."""
        started = time.perf_counter()
        item = ScoringItem(message, tenant_id=tenant_id, lists=(guild or PLATFORM_GUILD).lists)
        items = (item,)
        deferring = defer_media and bool(message.attachments)
        # Without attachments the decoder has nothing to do: the light stage runs inline, with no
        # thread hop on the sync path's hot path.
        stage = self.light_features if deferring or not message.attachments else self.features
        stage, rest = self._split(stage)  # `rest` (behaviour counters) overlaps the scorers below
        if stage.sync_only:
            stage.run(items)
        else:
            await stage.run_async(items)
        late = asyncio.ensure_future(rest.run_async(items)) if rest.extractors else None
        signals: list[Signal] = []
        waits = []
        failed = item.context.failed
        pending: list[str] = []
        readers: list[Scorer] = []
        for scorer in self.scorers:
            if deferring and Feature.MEDIA in scorer.needs:
                if scorer.applies_to(item):
                    pending.append(scorer.name)
                continue
            if scorer.reads:  # runs once the signals it reads are in (below)
                readers.append(scorer)
                continue
            if scorer.inline and not scorer.async_single:
                sig = self._run_scorer(scorer, items)[0]
                if sig is not None:
                    signals.append(sig)
                continue
            missing = item.context.missing(scorer.needs) if failed else None
            if missing is not None:
                signals.append(scorer.error_signal(missing))
            elif not scorer.applies_to(item):
                continue
            elif scorer.async_single:
                waits.append(scorer.score_one_async(item))
            else:
                loop = asyncio.get_running_loop()
                waits.append(loop.run_in_executor(None, lambda s=scorer: self._run_scorer(s, items)[0]))
        if len(waits) == 1:  # the common case (one model scorer): no gather, no extra task
            got = await waits[0]
            if got is not None:
                signals.append(got)
        elif waits:
            signals.extend(s for s in await asyncio.gather(*waits) if s is not None)
        if late is not None:
            await late
        for reader in readers:  # after the signals they read
            self.hand_over(reader, items, {s.scorer: [s] for s in signals})
            if reader.inline:
                col = self._run_scorer(reader, items)
            else:
                col = await asyncio.get_running_loop().run_in_executor(None, self._run_scorer, reader, items)
            if col[0] is not None:
                signals.append(col[0])
        decision = self._assemble(tenant_id, message, guild, signals, (time.perf_counter() - started) * 1000,
                                  item.context.media, pending, item=item)
        if self.on_media is not None and not deferring and item.context.media:
            await asyncio.to_thread(self._media_done, tenant_id, items, [decision])
        return decision

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
        self.score_batch("warm-up", [(m, None) for m in messages])  # not decide_batch: no shadow of warm-up
        items = self._items("warm-up", [(m, None) for m in messages * 4])
        self.features.run(items)
        for scorer in self.scorers:
            if not scorer.micro_batching:
                continue
            futures = [scorer.submit(it) for it in items]
            for f in futures:
                f.result(timeout=120)

    def close(self) -> None:
        self._overlap.shutdown(wait=True)
        for s in self.scorers:
            s.close()
        self.features.close()
