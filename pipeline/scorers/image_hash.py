"""`image_hash`: PDQ hashes of each image matched against the tenant's hash banks.

A match (Hamming distance <= 31 to a banked hash, over the 8 dihedral variants of the image, so
a rotated or mirrored repost matches too) is a definitive signal: its category scores 1.0 and its
evidence names the bank, the label, the distance and the variant. A bank that forces an action
(say `block`) puts it on the signal, and the policy applies it whatever the thresholds say.
Hashes with quality below 50 (flat, featureless images, where unrelated pictures collide) are
not matched, and the evidence says so. An attachment that could not be read (corrupt, refused,
an image format Heron cannot decode) makes the signal an error unless another attachment
matched: the bank check did not cover the message, and the policy's missing-signal rule (fail
closed by default) decides. An attachment that is not a picture at all (`MediaRef.not_scanned`:
a video, a PDF) is outside the banks' scope and does not make the signal an error.

Banks are read from the store (`HERON_DATABASE_URL`) and cached per tenant as an in-memory
index (`pipeline.images.pdq.PDQIndex`); the cache checks the banks' version every
`CACHE_TTL_S`, so bank edits reach every worker within seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pipeline.features.context import Feature, MediaRef
from pipeline.scorers.base import Modality, Scorer, ScoringItem
from pipeline.settings import Settings
from pipeline.taxonomy import CATEGORY_NAMES
from pipeline.types import Action, Evidence, Signal

log = logging.getLogger(__name__)

CACHE_TTL_S = 2.0


@dataclass(frozen=True)
class FrameHashes:
    """The 8 dihedral PDQ hashes of one frame and its quality."""

    hashes: tuple[str, ...]
    quality: int

    @property
    def original(self) -> str:
        return self.hashes[0]


class _HashCache:
    """PDQ hashes by the attachment's sha256 and frame: the service's media keeper (hashes kept for
    retroactive matching) reads what the scorer computed instead of hashing again."""

    def __init__(self, size: int = 4096) -> None:
        self._d: OrderedDict[tuple[str, int], FrameHashes] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size

    def get(self, ref: MediaRef) -> list[FrameHashes]:
        from pipeline.images.pdq import hash_dihedral

        decoded = ref.decoded
        if decoded is None:
            return []
        out = []
        for n, frame in enumerate(decoded.frames):
            key = (decoded.sha256, n)
            with self._lock:
                hit = self._d.get(key)
            if hit is None:
                hashes, quality = hash_dihedral(frame)
                hit = FrameHashes(tuple(hashes), quality)
                with self._lock:
                    self._d[key] = hit
                    while len(self._d) > self.size:
                        self._d.popitem(last=False)
            out.append(hit)
        return out


HASHES = _HashCache()


class _TenantIndex:
    def __init__(self, key: tuple[int, int], entries: list[Any]) -> None:
        from pipeline.images.pdq import PDQIndex

        self.key = key
        self.entries = entries
        self.index = PDQIndex.from_hex([e.hash for e in entries])
        self.checked = time.monotonic()


class ImageHashScorer(Scorer):
    name: ClassVar[str] = "image_hash"
    modality: ClassVar[Modality] = Modality.IMAGE
    labels: ClassVar[tuple[str, ...]] = CATEGORY_NAMES
    needs: ClassVar[frozenset[Feature]] = frozenset({Feature.MEDIA})
    version = "pdq-1"

    def __init__(self, database_url: str | None = None, banks: Any = None) -> None:
        self.database_url = database_url
        self._banks = banks
        self._tenants: dict[str, _TenantIndex] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings.database_url)

    def load(self, artifact_dir: Any = None) -> Self:
        import pdqhash  # noqa: F401 - fail at start-up, not on the first image, if it is missing

        return self

    @property
    def banks(self) -> Any:
        if self._banks is None:
            from pipeline.store.banks import Banks
            from pipeline.store.engine import Database, make_engine

            if not self.database_url:
                raise RuntimeError("no database configured for the hash banks")
            self._banks = Banks(Database(make_engine(self.database_url)))
        return self._banks

    def tenant_index(self, tenant_id: str) -> _TenantIndex:
        with self._lock:
            cached = self._tenants.get(tenant_id)
        if cached is not None and time.monotonic() - cached.checked < CACHE_TTL_S:
            return cached
        key = self.banks.version_key(tenant_id)
        if cached is not None and cached.key == key:
            cached.checked = time.monotonic()
            return cached
        fresh = _TenantIndex(key, self.banks.all_hashes(tenant_id) if key[0] else [])
        with self._lock:
            self._tenants[tenant_id] = fresh
        return fresh

    def _one(self, item: ScoringItem, started: float) -> Signal:
        from pipeline.images.pdq import DIHEDRAL, MATCH_THRESHOLD, MIN_QUALITY, to_words

        if not item.context.media:  # nothing to hash: nothing to say (the service skips such items anyway)
            return Signal(scorer=self.name, version=self.version, definitive=True)
        readable = [r for r in item.context.media if r.decoded is not None]
        in_scope = [r for r in item.context.media if r.not_scanned is None]
        if not in_scope:  # videos, documents: nothing a picture bank can say (the decision lists them)
            return Signal(scorer=self.name, version=self.version, definitive=True)
        if not readable:
            errors = "; ".join(f"attachment {r.index}: {r.error or 'not decoded'}" for r in in_scope)
            return self.error_signal(f"no image could be read ({errors})", started)
        index = self.tenant_index(item.tenant_id)
        scores: dict[str, float] = {}
        evidence: list[Evidence] = []
        forced: Action | None = None
        for ref in readable:
            best: dict[int, tuple[int, str]] = {}  # entry row -> (distance, variant)
            for fh in HASHES.get(ref):
                if fh.quality < MIN_QUALITY or index.index.size == 0:
                    continue  # too flat to match reliably (unrelated images collide), or nothing banked
                for variant, words in zip(DIHEDRAL, to_words(list(fh.hashes)), strict=True):
                    for hit in index.index.search(words, MATCH_THRESHOLD):
                        if hit.row not in best or hit.distance < best[hit.row][0]:
                            best[hit.row] = (hit.distance, variant)
            for row, (dist, variant) in sorted(best.items(), key=lambda kv: kv[1][0]):
                entry = index.entries[row]
                scores[entry.category] = 1.0
                label = f" label {entry.label!r}" if entry.label else ""
                evidence.append(Evidence(
                    category=entry.category,
                    detail=f"attachment {ref.index} matches bank {entry.bank!r}{label} at distance {dist} "
                           f"({variant})",
                ))
                if entry.action and (forced is None or Action(entry.action).severity > forced.severity):
                    forced = Action(entry.action)
        unread = [f"attachment {r.index}: {r.error or 'not decoded'}" for r in in_scope if r.decoded is None]
        if unread and not scores:
            # Some attachments could not be checked and nothing matched in the rest: "checked the
            # readable ones" must not read as "checked the message", or a harmless picture next to
            # a hostile file would turn the policy's fail-closed hold into an allow.
            return self.error_signal(
                f"attachment(s) not checked against the banks ({'; '.join(unread)}); the other "
                f"{len(readable)} checked, no match", started)
        if unread:
            evidence.append(Evidence(category=evidence[0].category, detail="not checked: " + "; ".join(unread)))
        return Signal(
            scorer=self.name, version=self.version, scores=scores, evidence=evidence,
            definitive=True, action=forced, latency_ms=(time.perf_counter() - started) * 1000,
        )

    def score(self, items: Sequence[ScoringItem]) -> list[Signal]:
        return self.score_each(items, self._one)

    def status(self) -> dict[str, Any]:
        return {"tenants_cached": len(self._tenants)}
