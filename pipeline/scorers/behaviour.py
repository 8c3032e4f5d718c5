"""The behaviour scorer: spam (and scam) from what the author and guild are doing, and how the
text model reads the message.

Reads `ItemContext.behaviour` (the windowed counters of `pipeline.features.behaviour`) and the
text scorer's spam score for the same message (`reads = {"text"}`: the service runs the text
scorer first and hands its signal over in `ItemContext.signals`, so there is no second forward
pass), and scores them with the behaviour model (`models/behaviour`). Without a text signal (no
text, the text scorer not configured or failed) the model scores behaviour alone; it was trained
for both. The model's label is a spam *actor*: a spam-looking text from an established member at
a normal pace scores low here and is left to the text model's own vote (held or blocked by the
policy, never timed out: only this scorer says 1.0, and only for repeats), while the same text
from an account that joined minutes ago scores high. It emits:

- `spam`: the model's probability;
- `scam`: the same probability, but only for a message carrying a link or invite from a brand
  new account or member (account under a day old, or joined under an hour ago, or its first
  message in the guild): the "free nitro" drop from a throwaway account. Other messages get no
  `scam` score from this scorer (it says nothing about scams it cannot see).

Its evidence is written for people ("12 messages in 10 s across 5 channels; account 3 minutes
old; same text from 9 accounts in 10 min (spam wave cl_...)"). The ensemble takes this scorer's
scores as a floor (`EnsembleConfig.floor_scorers`): a raid of innocuous words ("hi all") must not
be averaged away by a text model that rightly finds the words harmless.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from pipeline.features.behaviour import UNKNOWN_AGE_S
from pipeline.features.context import Feature, ScoringItem
from pipeline.scorers.base import Modality, Scorer
from pipeline.settings import Settings
from pipeline.types import Evidence, Signal

SCAM_ACCOUNT_S = 86_400
SCAM_TENURE_S = 3_600
# The model alone never says "certain" (1.0, the timeout level of the platform policy): only a
# confident score (>= CERTAIN_MODEL) on an author's third message within a minute, or their third
# copy of the same text, does. One message, however suspicious, is held or blocked, not timed out.
CONFIDENT_CAP = 0.999
CERTAIN_MODEL = 0.99
CERTAIN_REPEATS = 3
# Below this spam probability the evidence is not worth a reviewer's time.
EVIDENCE_MIN = 0.5
TEXT_SCORER = "text"  # whose spam score the model reads


def _duration(seconds: float) -> str:
    s = max(0, int(seconds))
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if s >= size:
            n = s // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{s} second{'s' if s != 1 else ''}"


def describe(c: Mapping[str, float], cluster_id: str | None) -> list[str]:
    """The behaviour that stands out, as short phrases a moderator can read."""
    parts: list[str] = []
    for window, label in (("10s", "10 s"), ("60s", "1 min"), ("600s", "10 min")):
        n = int(c[f"author.msgs.{window}"])
        thresh = {"10s": 4, "60s": 8, "600s": 30}[window]
        if n >= thresh:
            ch = int(c[f"author.channels.{window}"])
            parts.append(f"{n} messages in {label}" + (f" across {ch} channels" if ch > 1 else ""))
            break
    else:
        ch = int(c["author.channels.60s"])
        if ch >= 3:
            parts.append(f"posted in {ch} channels in 1 min")
    if c["author.dups.600s"] >= 2:
        parts.append(f"repeated the same text {int(c['author.dups.600s'])} times in 10 min")
    if c["msg.mass_mention"] or c["author.mentions.60s"] >= 10:
        parts.append(f"{int(c['msg.mentions'])} mentions in this message, {int(c['author.mentions.60s'])} in 1 min")
    if c["near.authors.600s"] >= 3:
        wave = f" (spam wave {cluster_id})" if cluster_id else ""
        parts.append(f"same text from {int(c['near.authors.600s']) + 1} accounts in 10 min{wave}")
    if c["guild.new_authors.60s"] >= 5:
        parts.append(f"{int(c['guild.new_authors.60s'])} new accounts posting in the guild in 1 min")
    if c["msg.first_with_link"]:
        parts.append("first message in the guild carries a link")
    elif c["msg.invites"]:
        parts.append("carries a server invite")
    if c["account.age_s"] < 7 * 86_400:
        parts.append(f"account {_duration(c['account.age_s'])} old")
    if c["account.tenure_s"] < 86_400:
        parts.append(f"joined {_duration(c['account.tenure_s'])} ago")
    return parts


def served_spam(p: float, c: Mapping[str, float]) -> float:
    """The scorer's `spam` from the model's probability: capped below certain, and 1.0 (the
    policy's timeout level) only for a confident score on a repeated message."""
    p = round(min(CONFIDENT_CAP, max(0.0, p)), 4)
    if p >= CERTAIN_MODEL and (c["author.msgs.60s"] >= CERTAIN_REPEATS or c["author.dups.600s"] >= 2):
        return 1.0  # a confident score, repeated: the policy's "certain" (timeout) level
    return p


def text_spam(item: ScoringItem) -> float | None:
    """The text scorer's spam score for this message, if it gave one."""
    sig = item.context.signals.get(TEXT_SCORER)
    if sig is None or not sig.ok:
        return None
    return sig.scores.get("spam")


class BehaviourScorer(Scorer):
    """Spam/scam from behaviour features, with a scikit-learn model saved by skops."""

    name: ClassVar[str] = "behaviour"
    modality: ClassVar[Modality] = Modality.BEHAVIOR
    labels: ClassVar[tuple[str, ...]] = ("spam", "scam")
    batched: ClassVar[bool] = True
    needs: ClassVar[frozenset[Feature]] = frozenset({Feature.BEHAVIOUR})
    reads: ClassVar[frozenset[str]] = frozenset({TEXT_SCORER})

    def __init__(self, artifact_dir: Path | None = None) -> None:
        self.artifact_dir = artifact_dir
        self.model: Any = None
        self.version = "unloaded"

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(getattr(settings, "behaviour_model_dir", None))

    def load(self, artifact_dir: Path | None = None) -> Self:
        from models.behaviour.model import load_model

        self.model = load_model(artifact_dir or self.artifact_dir)
        self.version = self.model.version
        return self

    def status(self) -> dict[str, Any]:
        if self.model is None:
            return {"ok": False, "detail": "behaviour model not loaded"}
        return {"ok": True, "detail": f"behaviour model {self.version}"}

    def score(self, items: Sequence[ScoringItem]) -> list[Signal]:
        import time

        if self.model is None:
            self.load()
        started = time.perf_counter()
        out: list[Signal | None] = [None] * len(items)
        rows: list[Mapping[str, float]] = []
        texts: list[float | None] = []
        idx: list[int] = []
        for i, it in enumerate(items):
            snap = it.context.behaviour
            if snap is None:
                out[i] = self.error_signal("no behaviour features (the behaviour extractor did not run)")
            else:
                rows.append(snap.counters)
                texts.append(text_spam(it))
                idx.append(i)
        probs = self.model.predict_proba(rows, texts) if rows else []
        per_ms = (time.perf_counter() - started) * 1000 / max(1, len(items))
        for i, p, t in zip(idx, probs, texts, strict=True):
            snap = items[i].context.behaviour
            assert snap is not None
            out[i] = self._signal(float(p), snap.counters, snap.cluster_id, per_ms, t)
        return [s for s in out if s is not None]

    def _signal(
        self, p: float, c: Mapping[str, float], cluster_id: str | None, ms: float, text: float | None = None
    ) -> Signal:
        p = served_spam(p, c)
        scores = {"spam": p}
        fresh = c["account.age_s"] < SCAM_ACCOUNT_S or c["account.tenure_s"] < SCAM_TENURE_S or c["msg.first_with_link"]
        if (c["msg.links"] or c["msg.invites"]) and fresh:
            scores["scam"] = p
        evidence: list[Evidence] = []
        if p >= EVIDENCE_MIN:
            parts = describe(c, cluster_id)
            if text is not None and text >= EVIDENCE_MIN:
                parts.append(f"text reads as spam ({text:.2f})")
            detail = "; ".join(parts) or "unusual posting pattern"
            evidence = [Evidence(category=k, detail=detail) for k in scores]
        # Knowing the author, the model (which read the text model's spam score) is the chat spam
        # score; without account dates it has only guessed an old account, so the text vote stands.
        knows_author = c["account.age_s"] != UNKNOWN_AGE_S and c["account.tenure_s"] != UNKNOWN_AGE_S
        supersedes = ["spam"] if knows_author and text is not None else []
        return Signal(
            scorer=self.name,
            version=self.version,
            scores=scores,
            evidence=evidence,
            latency_ms=ms,
            supersedes=supersedes,
        )
