"""Known-bad link matching: the platform phishing list plus each guild's own blocked links.

The links come from the feature stage (`pipeline.features.links`, `ItemContext.links`): found
once per message, however they are written (no scheme, markdown masks, ``<url>``, defanged,
full-width or zero-width characters, Unicode or punycode host names). This scorer only matches.

A host matches an entry for itself or for any parent domain (``a.b.evil.com`` hits ``evil.com``);
entries with a path (``bit.ly/abc``, how the list blocks single short links) match that path and
anything below it.

Scores: a hit is ``scam`` 1.0, ``definitive``. Links that are on no list give ``scam`` 0.0 — a
real negative from a list check, but only that: a domain missing from a list is not proof that it
is safe (new phishing domains appear daily); a learned link score is the link model's job. No
links at all: ``applies_to`` is False and the Signal has empty scores.

The platform list is a JSON file ``{"domains": [...]}`` read at start-up from, in order: the
constructor's ``blocklist_path``, ``Settings.link_blocklist`` (``HERON_LINK_BLOCKLIST``, several
paths separated by ``os.pathsep``), or ``<repo root>/../shared/data/discord_phishing_links/
domain-list.json`` when that exists. The data is never copied into the repository. Without a
list the scorer still runs guild lists and ``status()`` says the platform list is missing, so
readiness can report it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from cachetools import LRUCache

from pipeline.features.context import ExtractedLink, Feature
from pipeline.features.links import to_ascii_host
from pipeline.guilds import GuildLists
from pipeline.scorers.base import Modality, Scorer, ScoringItem
from pipeline.settings import Settings, get_settings
from pipeline.types import Evidence, Signal

log = logging.getLogger(__name__)

DEFAULT_BLOCKLIST = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "discord_phishing_links" / "domain-list.json"
)
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
    def from_entries(cls, entries: Iterable[str], exclude: Iterable[str] = ()) -> LinkList:
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
    """Read a `{"domains": [...]}` file (a bare JSON list is accepted too)."""
    data = json.loads(path.read_text("utf-8"))
    entries = data.get("domains") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise ValueError(f'{path}: expected {{"domains": [strings]}}')
    return entries


class LinkScorer(Scorer):
    """Flags links to known phishing/scam domains (platform list and per-guild `blocked_links`)."""

    name: ClassVar[str] = "links"
    modality: ClassVar[Modality] = Modality.LINK
    labels: ClassVar[tuple[str, ...]] = ("scam",)
    version = "1"
    inline: ClassVar[bool] = True  # set look-ups, sub-millisecond: safe on the event loop
    needs: ClassVar[frozenset[Feature]] = frozenset({Feature.LINKS})

    def __init__(
        self,
        blocklist_path: BlocklistPaths | None = None,
        never_block: Iterable[str] = KNOWN_FALSE_POSITIVES,
        settings: Settings | None = None,
    ) -> None:
        """`blocklist_path` None: `settings.link_blocklist` (default: the process settings)."""
        self._explicit = blocklist_path
        self._configured = (settings or get_settings()).link_blocklist if blocklist_path is None else None
        self._never_block = frozenset(never_block)
        self._platform: LinkList | None = None
        self._status: dict[str, Any] = {"ok": False, "detail": "not loaded yet", "paths": [], "entries": 0}
        self._guild_cache: LRUCache[tuple[str, ...], LinkList] = LRUCache(maxsize=GUILD_CACHE_SIZE)
        self._lock = threading.Lock()  # cachetools caches are not thread-safe

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings=settings)

    def load(self, artifact_dir: Path | None = None) -> Self:
        """Read the platform list. A missing or broken file is reported by status(), not raised:
        guild lists still work, and readiness decides whether that is good enough."""
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
        self._platform = LinkList.from_entries(entries, exclude=self._never_block)
        n = len(self._platform)
        ok = not problems and n > 0
        detail = "; ".join(problems) if problems else ("platform link list is empty" if n == 0 else "ok")
        self._status = {"ok": ok, "detail": detail, "paths": [str(p) for p in paths], "entries": n}
        for problem in problems:
            log.warning("links: %s", problem)
        log.info("links: %d platform entries loaded in %.0f ms", n, (time.perf_counter() - started) * 1000)
        return self

    def status(self) -> dict[str, Any]:
        """For readiness: `ok`, a human `detail`, the list `paths` tried and how many `entries` loaded."""
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

    def score(self, items: Sequence[ScoringItem]) -> list[Signal]:
        if self._platform is None:
            self.load()
        return self.score_each(items, self._score_one)

    def _score_one(self, item: ScoringItem, started: float) -> Signal:
        links = item.context.links
        if not links:
            return Signal(scorer=self.name, version=self.version, latency_ms=_ms(started))
        platform = self._platform or LinkList()
        guild = self._guild_list(item.lists)
        evidence: list[Evidence] = []
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
            if len(evidence) < MAX_EVIDENCE:
                evidence.append(Evidence(category="scam", detail=detail, span=link.span))
        hit = bool(evidence)
        return Signal(
            scorer=self.name,
            version=self.version,
            scores={"scam": 1.0 if hit else 0.0},
            evidence=evidence,
            definitive=hit,
            latency_ms=_ms(started),
        )


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
