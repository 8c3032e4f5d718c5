"""Shadow mode: a candidate text model, policy or ensemble decides live traffic beside the serving one,
and what it would have done is recorded, never acted on.

Why beside the live path and not in a replay: a candidate that looks better on test splits can
still behave differently on this platform's traffic (its slang, its raids, its guild policies).
Shadowing shows that before promotion, and the reviewers' verdicts on the same messages say which
of the two was right (`heron shadow report`, pipeline/shadow_report.py).

How it runs (docs/shadow.md):
- Only the asynchronous path is shadowed (the Celery worker and the embedded worker: both decide
  through `ModerationService.decide_batch`). The sync path answers within a 250 ms budget and is
  left alone.
- The shadow re-decides from the live batch's signals (`ScoredBatch`): only the candidate text
  model runs again, in place of the serving one; every other scorer's signal is reused, not
  recomputed (re-running the behaviour features would count each message twice).
- It runs on its own thread from a bounded queue, after the live decisions are made: it never
  changes, delays the storing of, or sends webhooks for a live decision. The thread runs at a lower
  CPU priority (nice +10 on Linux), so on a busy machine the live path gets the cores first and the
  shadow lags instead; when its queue is full the batch goes unshadowed and is counted. A candidate
  that fails to load or to score, or a store that refuses the rows, is logged and counted, and the
  live path goes on.
- HERON_SHADOW_SAMPLE shadows a share of the messages (by a hash of tenant and message id, so the
  same messages every time): the candidate text model costs about as much CPU as the serving one.

Metrics: `heron_shadow_decisions_total{agreement}` (same/different action as live),
`heron_shadow_dropped_total` (messages left unshadowed: queue full), and
`heron_shadow_failures_total{stage}` (load, score, store).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from pipeline.ensemble import EnsembleConfig, combine
from pipeline.features.context import ItemContext
from pipeline.guilds import PLATFORM_GUILD
from pipeline.policy import GuildPolicy, decide
from pipeline.scorers.base import Scorer, ScoringItem
from pipeline.service import ModerationService, ScoredBatch
from pipeline.settings import Settings
from pipeline.store.engine import now
from pipeline.store.shadow import ShadowDecisions
from pipeline.types import Action, Reason, Signal

log = logging.getLogger(__name__)

SHADOW_DECISIONS = Counter("heron_shadow_decisions", "Messages the shadow decided, by whether its action matched the "
                           "live one (same, different)", ["agreement"])
SHADOW_DROPPED = Counter("heron_shadow_dropped", "Messages left unshadowed because the shadow's queue was full")
SHADOW_FAILURES = Counter("heron_shadow_failures", "Shadow failures (the live decisions were unaffected), by stage: "
                          "load, score, store", ["stage"])
VERSION_MAX = 255
SHADOW_NICE = 10  # added to the shadow thread's niceness: the live path comes first on a busy machine


class ShadowError(ValueError):
    """A shadow setting that cannot be used (a policy file that does not validate, ...)."""


@dataclass(frozen=True)
class ShadowSpec:
    """What the settings ask the shadow to replace; nothing set: no shadow."""

    text_artifact: Path | None = None
    text_quantize: str | None = None
    policy: Path | None = None
    stacking: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ShadowSpec:
        return cls(settings.shadow_text_artifact, settings.shadow_text_quantize, settings.shadow_policy,
                   settings.shadow_stacking)

    @property
    def enabled(self) -> bool:
        return any(x is not None for x in (self.text_artifact, self.policy, self.stacking))


def _file_tag(path: Path) -> str:
    return f"{path.name}@{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"


def load_policy(path: Path) -> GuildPolicy:
    """A policy file: the same JSON body as `PUT /v1/guilds/{id}`'s `policy`."""
    try:
        body = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShadowError(f"shadow policy {path}: not readable JSON ({exc})") from None
    try:
        return GuildPolicy.model_validate(body)
    except ValueError as exc:
        raise ShadowError(f"shadow policy {path}: not a valid policy ({exc})") from None


def category_actions(reasons: Sequence[Reason]) -> dict[str, str]:
    """category -> the most severe action a rule of that category chose (what the report compares)."""
    out: dict[str, Action] = {}
    for r in reasons:
        if r.category is None:
            continue
        if r.category not in out or r.action.severity > out[r.category].severity:
            out[r.category] = r.action
    return {c: a.value for c, a in sorted(out.items())}


class Shadow:
    """A candidate decider over the live signals: a text scorer in place of the serving one, a
    policy in place of each guild's, and/or learned ensemble weights in place of the live ones."""

    def __init__(self, *, live: ModerationService, text_scorer: Scorer | None = None,
                 policy: GuildPolicy | None = None, policy_tag: str | None = None,
                 ensemble: EnsembleConfig | None = None, stacking_tag: str | None = None) -> None:
        self.text_scorer = text_scorer
        self.policy = policy
        self.policy_tag = policy_tag
        self.ensemble = ensemble or live.ensemble
        self.coverage = live.coverage
        parts = []
        if text_scorer is not None:
            parts.append(f"text={text_scorer.version}")
        if policy is not None:
            parts.append(f"policy={policy_tag}")
        if stacking_tag is not None:
            parts.append(f"stacking={stacking_tag}")
        if not parts:
            raise ShadowError("a shadow needs a candidate: a text artifact, a policy or a stacking file")
        self.version = ";".join(parts)[:VERSION_MAX]

    @classmethod
    def load(cls, spec: ShadowSpec, settings: Settings, live: ModerationService) -> Shadow:
        """Load the candidate; raises whatever stops it (the caller logs, counts and goes on without)."""
        text_scorer: Scorer | None = None
        if spec.text_artifact is not None:
            from pipeline.scorers.text import TextScorer

            if not spec.text_artifact.is_dir():
                raise ShadowError(f"shadow text artifact {spec.text_artifact}: no such folder")
            text_scorer = TextScorer(artifact_dir=spec.text_artifact, quantize=spec.text_quantize,
                                     settings=settings).load()
        policy = load_policy(spec.policy) if spec.policy is not None else None
        ensemble, stacking_tag = None, None
        if spec.stacking is not None:
            from pipeline.stacking import load as load_stacking

            stacking = load_stacking(spec.stacking)
            ensemble = EnsembleConfig(weights=live.ensemble.weights, default_weight=live.ensemble.default_weight,
                                      floor_scorers=live.ensemble.floor_scorers, stacking=stacking)
            stacking_tag = stacking.version
        return cls(live=live, text_scorer=text_scorer, policy=policy,
                   policy_tag=_file_tag(spec.policy) if spec.policy is not None else None,
                   ensemble=ensemble, stacking_tag=stacking_tag)

    def _candidate_signals(self, items: Sequence[ScoringItem]) -> list[Signal | None]:
        if self.text_scorer is None:
            return [None] * len(items)
        idx = [i for i, it in enumerate(items) if self.text_scorer.applies_to(it)]
        out: list[Signal | None] = [None] * len(items)
        if idx:
            got = self.text_scorer.score([items[i] for i in idx])
            if len(got) != len(idx):
                raise RuntimeError(f"candidate text scorer returned {len(got)} signals for {len(idx)} items")
            for i, sig in zip(idx, got, strict=True):
                out[i] = sig
        return out

    def decide(self, scored: ScoredBatch) -> list[dict[str, Any]]:
        """The shadow rows for one live batch (see pipeline/store/shadow.py for the columns)."""
        candidate = self._candidate_signals(scored.items)
        ts = now()
        rows = []
        for i, (message, guild) in enumerate(scored.batch):
            signals = list(scored.signals[i])
            if self.text_scorer is not None:
                signals = [s for s in signals if s.scorer != self.text_scorer.name]
                if candidate[i] is not None:
                    signals.append(candidate[i])  # type: ignore[arg-type]
            result = combine(signals, self.ensemble, self.coverage)
            g = guild or PLATFORM_GUILD
            action, reasons = decide(result, message, self.policy or g.policy)
            live = scored.decisions[i]
            versions = {s.scorer: s.version for s in signals if s.ok}
            if self.ensemble.stacking is not None:
                versions["ensemble"] = f"stacking:{self.ensemble.stacking.version}"
            rows.append({
                "tenant_id": scored.tenant_id,
                "message_id": live.message_id,
                "decision_id": live.id,
                "guild_id": live.guild_id,
                "shadow_version": self.version,
                "live_action": live.action.value,
                "shadow_action": action.value,
                "live_categories": category_actions(live.reasons),
                "shadow_categories": category_actions(reasons),
                "live_scores": live.scores,
                "shadow_scores": result.scores,
                "shadow_reasons": [r.model_dump(mode="json") for r in reasons],
                "shadow_model_versions": versions,
                "live_policy_version": live.policy_version,
                "shadow_policy": self.policy_tag,
                "created_at": ts,
            })
        return rows

    def close(self) -> None:
        if self.text_scorer is not None:
            self.text_scorer.close()


def sampled(tenant_id: str, message_id: str, share: float) -> bool:
    """Whether a message is in the shadowed share: by hash, so reproducible across processes."""
    if share >= 1.0:
        return True
    h = int(hashlib.sha256(f"{tenant_id}:{message_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < share


def _slim(scored: ScoredBatch, keep: Sequence[int]) -> ScoredBatch:
    """What the shadow keeps of a batch while it waits (the sampled messages only): no decoded media
    (frames are large, and the signals that read them are already in), no attachment bytes."""
    batch, items, signals, decisions = [], [], [], []
    for i in keep:
        (message, guild), item = scored.batch[i], scored.items[i]
        slim = message.model_copy(update={"attachments": []}) if message.attachments else message
        batch.append((slim, guild))
        ctx = ItemContext(normalized_text=item.context.normalized_text, links=item.context.links,
                          failed=dict(item.context.failed))
        items.append(ScoringItem(slim, tenant_id=item.tenant_id, lists=item.lists, context=ctx))
        signals.append(list(scored.signals[i]))
        decisions.append(scored.decisions[i])
    return ScoredBatch(scored.tenant_id, batch, items, signals, decisions)


class ShadowRunner:
    """Runs a Shadow on its own thread from a bounded queue and stores its rows.

    Installed as `ModerationService.after_batch`: `__call__` only enqueues (or drops and counts), so
    the live batch goes on at once to be stored and delivered."""

    def __init__(self, shadow: Shadow, store: ShadowDecisions, max_queue: int = 10_000, sample: float = 1.0) -> None:
        self.shadow = shadow
        self.store = store
        self.max_queue = max_queue
        self.sample = sample
        self._queue: queue.Queue[ScoredBatch | None] = queue.Queue()
        self._waiting = 0  # messages queued, not yet taken
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="heron-shadow", daemon=True)
        self._thread.start()

    @property
    def version(self) -> str:
        return self.shadow.version

    def __call__(self, scored: ScoredBatch) -> None:
        keep = [i for i, d in enumerate(scored.decisions) if sampled(scored.tenant_id, d.message_id, self.sample)]
        n = len(keep)
        if not n:
            return
        with self._lock:
            if self._waiting + n > self.max_queue:
                SHADOW_DROPPED.inc(n)
                return
            self._waiting += n
        self._queue.put(_slim(scored, keep))

    def _loop(self) -> None:
        try:  # Linux: a thread's own niceness; lowering priority needs no privilege
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SHADOW_NICE)
        except (AttributeError, OSError):  # pragma: no cover - other platforms: same priority
            pass
        while True:
            scored = self._queue.get()
            try:
                if scored is None:
                    return
                with self._lock:
                    self._waiting -= len(scored.decisions)
                self._run(scored)
            finally:
                self._queue.task_done()

    def _run(self, scored: ScoredBatch) -> None:
        try:
            rows = self.shadow.decide(scored)
        except Exception:  # noqa: BLE001 - a failing candidate costs its rows, never the live decisions
            SHADOW_FAILURES.labels(stage="score").inc()
            log.exception("shadow %s failed to decide %d messages", self.version, len(scored.decisions))
            return
        try:
            self.store.save_many(rows)
        except Exception:  # noqa: BLE001
            SHADOW_FAILURES.labels(stage="store").inc()
            log.exception("shadow %s could not store %d rows", self.version, len(rows))
            return
        same = sum(1 for r in rows if r["live_action"] == r["shadow_action"])
        SHADOW_DECISIONS.labels(agreement="same").inc(same)
        SHADOW_DECISIONS.labels(agreement="different").inc(len(rows) - same)

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until everything queued so far is shadowed (benches, tests, shutdown)."""
        done = threading.Event()

        def _join() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=_join, daemon=True).start()
        return done.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued (up to `timeout`), then stop the thread and the candidate."""
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout=timeout)
        self.shadow.close()


def attach(settings: Settings, service: ModerationService, engine: Any,
           spec: ShadowSpec | None = None) -> ShadowRunner | None:
    """Give `service` a shadow per the settings; None when none is configured or it failed to load
    (logged and counted: the live path starts and runs without it)."""
    spec = spec or ShadowSpec.from_settings(settings)
    if not spec.enabled:
        return None
    try:
        shadow = Shadow.load(spec, settings, service)
    except Exception as exc:  # noqa: BLE001 - a broken candidate must not stop the live service
        SHADOW_FAILURES.labels(stage="load").inc()
        log.error("shadow disabled: the candidate failed to load (%s: %s); live decisions are unaffected",
                  type(exc).__name__, exc)
        return None
    runner = ShadowRunner(shadow, ShadowDecisions.for_engine(engine), settings.shadow_queue_max,
                          settings.shadow_sample)
    service.after_batch = runner
    log.info("shadow %s runs beside the live decisions", runner.version)
    return runner
