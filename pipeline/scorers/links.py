"""Link scorer: known-bad matching, look-alikes of protected brands, and a learned domain score.

The links come from the feature stage (`pipeline.features.links`, `ItemContext.links`): found
once per message, however they are written (no scheme, markdown masks, ``<url>``, defanged,
full-width or zero-width characters, Unicode or punycode host names). This scorer only judges.

1. **Known-bad banks.** A host matches an entry for itself or for any parent domain
   (``a.b.evil.com`` hits ``evil.com``); entries with a path (``bit.ly/abc``, how the list
   blocks single short links) match that path and anything below it. A hit is ``scam`` 1.0,
   ``definitive``. The platform bank is the bundled ``models/links/known_bad.json.gz`` (built
   from the shared phishing list by ``heron train links-bank``, with its provenance), or the
   file(s) in ``Settings.link_blocklist`` (``HERON_LINK_BLOCKLIST``, several joined by
   ``os.pathsep``). Entries that block a whole URL shortener (``clck.ru``) are ignored in the
   platform bank. Each guild adds its own ``blocked_links`` (``PUT /v1/guilds/{id}/lists`` or the
   add/remove endpoint).
2. **Look-alikes** (`pipeline.scorers.link_lookalike`): homoglyphs and near-misses of protected
   brands, brand words in subdomains and paths; URL shorteners are flagged as such.
3. **The learned domain model** (`models.links.domain_model`): a score for any host from its
   string alone, offline, cached per host. Brand-owned domains and shorteners are not scored.

Without a bank hit the signal is ``scam`` = the strongest look-alike or learned score of the
message's links (never 1.0), not definitive, with evidence saying which link and why. No links
at all: ``applies_to`` is False and the Signal has empty scores. A missing or broken bank or
model is reported by ``status()`` (for readiness), not raised: the other checks still run.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from cachetools import LRUCache

from pipeline.features.context import ExtractedLink, Feature
from pipeline.features.domains import is_shortener, registrable_domain
from pipeline.features.links import to_ascii_host
from pipeline.guilds import GuildLists
from pipeline.scorers.base import Modality, Scorer, ScoringItem
from pipeline.settings import Settings, get_settings
from pipeline.types import Evidence, Signal

if TYPE_CHECKING:
    from models.links.domain_model import LinkModel
    from pipeline.scorers.link_lookalike import BrandChecker

log = logging.getLogger(__name__)

# The bundled bank (``heron train links-bank`` writes it from the shared phishing list).
BUNDLED_BANK = Path(__file__).resolve().parents[2] / "models" / "links" / "known_bad.json.gz"
DEFAULT_BLOCKLIST = BUNDLED_BANK
MODEL_CACHE_SIZE = 50_000  # learned scores kept per host: spam waves repeat the same few hosts
EVIDENCE_MIN_SCORE = 0.5  # a learned score is evidence from here (hold for review under the default policy)
# Entries of the upstream list that are legitimate sites (see the data set's PROVENANCE.md):
# flagging them as definitive scams would block ordinary messages in gaming guilds.
KNOWN_FALSE_POSITIVES: frozenset[str] = frozenset({"counter-strike.net"})
MAX_EVIDENCE = 10
GUILD_CACHE_SIZE = 512  # compiled guild lists kept; a guild's list is compiled again after eviction

# --- lists ------------------------------------------------------------------------------------


@dataclass
class LinkList:
    """A set of bad domains plus path entries (host -> path prefixes), for O(labels) look-ups."""

    domains: set[str] = field(default_factory=set)
    paths: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def from_entries(
        cls, entries: Iterable[str], exclude: Iterable[str] = (), whole_shorteners: bool = True
    ) -> LinkList:
        """`whole_shorteners` False drops entries that block a whole URL shortener (``clck.ru``)."""
        skip = {to_ascii_host(e) for e in exclude}
        out = cls()
        for entry in entries:
            e = entry.strip().lower()
            if not e or e.startswith("#"):
                continue
            e = re.sub(r"^[a-z][a-z0-9+.-]*://", "", e)
            host, _, path = e.partition("/")
            host = to_ascii_host(host.split("@")[-1].split(":")[0])
            if not host or host in skip:
                continue
            path = path.split("?")[0].split("#")[0].strip("/")
            if not path and not whole_shorteners and is_shortener(host):
                continue
            if path:
                out.paths.setdefault(host, set()).add(path)
            else:
                out.domains.add(host)
        return out

    def __len__(self) -> int:
        return len(self.domains) + sum(len(p) for p in self.paths.values())

    def match(self, link: ExtractedLink) -> str | None:
        """The entry `link` hits (its host or a parent domain, or a host/path prefix), else None."""
        labels = link.host.split(".")
        for i in range(len(labels) - 1):
            candidate = ".".join(labels[i:])
            if candidate in self.domains:
                return candidate
            prefixes = self.paths.get(candidate)
            if prefixes:
                for p in prefixes:
                    if link.path == p or link.path.startswith(p + "/"):
                        return f"{candidate}/{p}"
        return None


def normalize_link_entry(entry: str) -> str:
    """The canonical form of one bank entry (``host`` or ``host/path``), or ValueError saying why.

    Scheme, user info, port, query and fragment are dropped, the host goes to lower-case ASCII
    (punycode); the host must end in a real public suffix (``evil.example`` style reserved names
    too), so a typo cannot silently become an entry that matches nothing."""
    e = entry.strip()
    e = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", e)
    host, sep, path = e.partition("/")
    host = to_ascii_host(host.split("@")[-1].split(":")[0])
    if not host or registrable_domain(host) is None:
        raise ValueError(f"{entry!r} is not a domain or URL with a public suffix (e.g. evil.example or bit.ly/abc)")
    path = path.split("?")[0].split("#")[0].strip("/")
    return f"{host}/{path.lower()}" if path else host


BlocklistPaths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def _configured_paths(explicit: BlocklistPaths | None, configured: str | None) -> list[Path]:
    """The explicit path(s), else the setting's os.pathsep-separated list, else the shared list."""
    if explicit is not None:
        items = [explicit] if isinstance(explicit, str | os.PathLike) else list(explicit)
        return [Path(p) for p in items]
    if configured and configured.strip():
        return [Path(p) for p in configured.split(os.pathsep) if p.strip()]
    return [DEFAULT_BLOCKLIST]


def load_blocklist(path: Path) -> list[str]:
    """Read a `{"domains": [...]}` file, gzipped when its name ends in .gz (a bare JSON list too)."""
    raw = path.read_bytes()
    data = json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
    entries = data.get("domains") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise ValueError(f'{path}: expected {{"domains": [strings]}}')
    return entries


class LinkScorer(Scorer):
    """Scores links: known-bad banks (platform + guild), brand look-alikes, learned domain score."""

    name: ClassVar[str] = "links"
    modality: ClassVar[Modality] = Modality.LINK
    labels: ClassVar[tuple[str, ...]] = ("scam",)
    version = "2"
    inline: ClassVar[bool] = True  # set look-ups and cached per-host model scores: fine on the event loop
    needs: ClassVar[frozenset[Feature]] = frozenset({Feature.LINKS})

    def __init__(
        self,
        blocklist_path: BlocklistPaths | None = None,
        never_block: Iterable[str] = KNOWN_FALSE_POSITIVES,
        settings: Settings | None = None,
        model_dir: Path | None = None,
        use_model: bool | None = None,
        brands: dict[str, list[str]] | None = None,
    ) -> None:
        """`blocklist_path` None: `settings.link_blocklist` (default: the process settings).

        `use_model`/`model_dir`/`brands` None: `settings.link_model`, `settings.link_model_dir`
        and `settings.link_protected_brands`."""
        settings = settings or get_settings()
        self._explicit = blocklist_path
        self._configured = settings.link_blocklist if blocklist_path is None else None
        self._never_block = frozenset(never_block)
        self._use_model = settings.link_model if use_model is None else use_model
        self._model_dir = model_dir or settings.link_model_dir
        self._brands = brands if brands is not None else settings.link_protected_brands
        self._allowed = tuple(settings.link_allowed_domains)
        self._platform: LinkList | None = None
        self._checker: BrandChecker | None = None
        self._model: LinkModel | None = None
        self._status: dict[str, Any] = {"ok": False, "detail": "not loaded yet", "paths": [], "entries": 0}
        self._guild_cache: LRUCache[tuple[str, ...], LinkList] = LRUCache(maxsize=GUILD_CACHE_SIZE)
        self._model_cache: LRUCache[str, float] = LRUCache(maxsize=MODEL_CACHE_SIZE)
        self._lock = threading.Lock()  # cachetools caches are not thread-safe

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings=settings)

    def load(self, artifact_dir: Path | None = None) -> Self:
        """Read the platform bank and the learned model. A missing or broken file is reported by
        status(), not raised: the other checks still work, and readiness decides whether that is
        good enough."""
        from pipeline.scorers.link_lookalike import BrandChecker

        paths = _configured_paths(self._explicit, self._configured)
        entries: list[str] = []
        problems: list[str] = []
        for p in paths:
            try:
                entries.extend(load_blocklist(p))
            except FileNotFoundError:
                problems.append(f"platform link list not found: {p}")
            except (OSError, ValueError) as e:
                problems.append(f"platform link list unreadable: {p}: {e}")
        started = time.perf_counter()
        self._platform = LinkList.from_entries(entries, exclude=self._never_block, whole_shorteners=False)
        self._checker = BrandChecker(self._brands, self._allowed)
        n = len(self._platform)
        model_version = None
        if self._use_model:
            from models.links.domain_model import DEFAULT_ARTIFACT_DIR, ArtifactError, LinkModel

            try:
                self._model = LinkModel.load(artifact_dir or self._model_dir or DEFAULT_ARTIFACT_DIR)
                model_version = self._model.version
            except (ArtifactError, OSError, ValueError) as e:
                problems.append(f"link model not loaded: {e}")
        ok = not problems and n > 0
        detail = "; ".join(problems) if problems else ("platform link list is empty" if n == 0 else "ok")
        self._status = {
            "ok": ok, "detail": detail, "paths": [str(p) for p in paths], "entries": n, "model": model_version,
        }  # fmt: skip
        for problem in problems:
            log.warning("links: %s", problem)
        log.info("links: %d platform entries loaded in %.0f ms", n, (time.perf_counter() - started) * 1000)
        return self

    def status(self) -> dict[str, Any]:
        """For readiness: `ok`, a human `detail`, the list `paths` tried, how many `entries`
        loaded and the learned `model` version (None when off or not loaded)."""
        return dict(self._status)

    def _guild_list(self, lists: GuildLists) -> LinkList | None:
        """The guild's compiled extra list, cached by content: the policy layer may build a new
        GuildLists per request, and these lists are short, so the content is a cheap key."""
        if not lists.blocked_links:
            return None
        key = tuple(lists.blocked_links)
        with self._lock:
            hit = self._guild_cache.get(key)
        if hit is not None:
            return hit
        compiled = LinkList.from_entries(key)  # outside the lock: other guilds need not wait
        with self._lock:
            self._guild_cache[key] = compiled
        return compiled

    def _learned(self, hosts: Iterable[str]) -> dict[str, float]:
        """Learned scores of the hosts worth scoring, from the cache or one batched model call."""
        if self._model is None or self._checker is None:
            return {}
        wanted = {
            h for h in hosts
            if not is_shortener(h) and h not in self._checker.trusted
            and (registrable_domain(h) or h) not in self._checker.trusted
        }  # fmt: skip
        with self._lock:
            out = {h: self._model_cache[h] for h in wanted if h in self._model_cache}
        todo = sorted(wanted - out.keys())
        if todo:
            fresh = dict(zip(todo, (float(v) for v in self._model.score(todo)), strict=True))
            with self._lock:
                self._model_cache.update(fresh)
            out.update(fresh)
        return out

    def score(self, items: Sequence[ScoringItem]) -> list[Signal]:
        if self._platform is None:
            self.load()
        try:
            learned = self._learned({link.host for item in items for link in item.context.links})
        except Exception:  # noqa: BLE001 - the banks and look-alikes still answer without the model
            log.exception("links: learned model failed; scoring without it")
            learned = {}
        return self.score_each(items, lambda item, started: self._score_one(item, started, learned))

    def _score_one(self, item: ScoringItem, started: float, learned: dict[str, float]) -> Signal:
        links = item.context.links
        if not links:
            return Signal(scorer=self.name, version=self.version, latency_ms=_ms(started))
        platform = self._platform or LinkList()
        guild = self._guild_list(item.lists)
        hits: list[Evidence] = []
        for link in links:
            entry = platform.match(link)
            source = "known phishing"
            if entry is None and guild is not None:
                entry = guild.match(link)
                source = "server-blocked"
            if entry is None:
                continue
            kind = "link" if "/" in entry else "domain"
            detail = f'{source} {kind} "{entry}"'
            if link.text.lower().rstrip("/") != entry:
                detail += f' (link "{link.text}")'
            if len(hits) < MAX_EVIDENCE:
                hits.append(Evidence(category="scam", detail=detail, span=link.span))
        if hits:
            return Signal(
                scorer=self.name, version=self.version, scores={"scam": 1.0}, evidence=hits, definitive=True,
                latency_ms=_ms(started),
            )  # fmt: skip
        best = 0.0
        evidence: list[Evidence] = []
        for link in links:
            flags = self._checker.flags(link) if self._checker is not None else []
            model_score = learned.get(link.host)
            link_score = max([f.score for f in flags] + [model_score or 0.0])
            best = max(best, link_score)
            notes = [f.detail for f in flags]
            if model_score is not None and model_score >= EVIDENCE_MIN_SCORE:
                notes.append(f"learned domain score {model_score:.2f} for {link.host}")
            if notes and len(evidence) < MAX_EVIDENCE:
                evidence.append(Evidence(category="scam", detail="; ".join(notes), span=link.span))
        return Signal(
            scorer=self.name, version=self.version, scores={"scam": round(best, 4)}, evidence=evidence,
            latency_ms=_ms(started),
        )  # fmt: skip


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
