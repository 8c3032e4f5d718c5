"""Known-bad link matching: the platform phishing list plus each guild's own blocked links.

URLs are pulled from the raw message text (the normalised text drops the dots between letters),
however they are written: with or without a scheme (``discord-nitro.gift/abc``), inside markdown
``[label](url)`` (the label too: ``[discord.com](https://evil.ru)`` is the classic masked link),
inside ``<url>``, defanged (``hxxp://evil[.]com``), followed by punctuation, in upper case, with
full-width letters or zero-width characters, and as Unicode or punycode (IDNA) host names.

A host matches an entry for itself or for any parent domain (``a.b.evil.com`` hits ``evil.com``);
entries with a path (``bit.ly/abc``, how the list blocks single short links) match that path and
anything below it.

Scores: a hit is ``scam`` 1.0, ``definitive``. Links that are on no list give ``scam`` 0.0 — a
real negative from a list check, but only that: a domain missing from a list is not proof that it
is safe (new phishing domains appear daily); a learned link score is the link model's job. No
links at all: ``applies_to`` is False and the Signal has empty scores.

The platform list is a JSON file ``{"domains": [...]}`` read at start-up from, in order: the
constructor's ``blocklist_path``, the ``HERON_LINK_BLOCKLIST`` environment variable (several
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
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

from pipeline.guilds import GuildLists
from pipeline.normalize import _INVISIBLE
from pipeline.scorers.base import Modality, Scorer, ScoringItem
from pipeline.types import Evidence, Signal

log = logging.getLogger(__name__)

ENV_BLOCKLIST = "HERON_LINK_BLOCKLIST"
DEFAULT_BLOCKLIST = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "discord_phishing_links" / "domain-list.json"
)
# Entries of the upstream list that are legitimate sites (see the data set's PROVENANCE.md):
# flagging them as definitive scams would block ordinary messages in gaming guilds.
KNOWN_FALSE_POSITIVES: frozenset[str] = frozenset({"counter-strike.net"})
MAX_EVIDENCE = 10

# --- extraction -------------------------------------------------------------------------------

# Defanged spellings people (and threat feeds) use so a link is not clickable.
_DEFANG = re.compile(
    r"hxxp(s?)(?=\[?:)|\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\{dot\}|\[:\]|\[/\]",
    re.IGNORECASE,
)
_DOTS = {"\u3002": ".", "\uff0e": ".", "\uff61": "."}  # ideographic full stops that IDNA reads as dots

_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
_TLD = r"(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})"
_SCHEME_URL = re.compile(r"(?<![\w.+-])[a-z][a-z0-9+.-]{1,15}://[^\s<>\"'`]+", re.IGNORECASE)
_BARE_URL = re.compile(
    rf"(?<![\w@.:/-])((?:{_LABEL}\.)+{_TLD})\.?(?::\d{{1,5}})?(?![\w-])(?:[/?#][^\s<>\"'`]*)?",
    re.IGNORECASE,
)
_TRAILING = ".,;:!?'\"*_~"
_PAIRS = {")": "(", "]": "[", "}": "{", ">": "<"}


@dataclass(frozen=True)
class Link:
    """One link found in a message."""

    host: str  # ASCII (punycode) lower-case host name, no trailing dot
    path: str  # lower-case path without the leading '/', query or fragment
    text: str  # the link as written in the message
    span: tuple[int, int]  # in the original message text


def _clean(text: str) -> tuple[str, list[int]]:
    """NFKC-fold characters, drop invisible ones and refang, keeping a map back to original offsets."""
    chars: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        if ch.isascii():
            chars.append(ch)
            index.append(i)
            continue
        if ord(ch) in _INVISIBLE:
            continue
        folded = _DOTS.get(ch) or unicodedata.normalize("NFKC", ch)
        for c in folded:
            chars.append(_DOTS.get(c, c))
            index.append(i)
    folded_text = "".join(chars)
    out: list[str] = []
    out_index: list[int] = []
    pos = 0
    for m in _DEFANG.finditer(folded_text):
        out.append(folded_text[pos : m.start()])
        out_index.extend(index[pos : m.start()])
        token = m.group(0).lower()
        repl = "http" + m.group(1) if token.startswith("hxxp") else token.strip("[](){}").replace("dot", ".")
        out.append(repl)
        out_index.extend([index[m.start()]] * len(repl))
        pos = m.end()
    out.append(folded_text[pos:])
    out_index.extend(index[pos:])
    return "".join(out), out_index


def _trim(url: str) -> str:
    """Drop trailing punctuation and closing brackets that are not part of the URL."""
    while url:
        last = url[-1]
        if last in _TRAILING:
            url = url[:-1]
        elif last in _PAIRS and url.count(last) > url.count(_PAIRS[last]):
            url = url[:-1]
        else:
            break
    return url


def to_ascii_host(host: str) -> str:
    """Lower-case ASCII (IDNA/punycode) form of a host name; list entries and links meet here."""
    host = host.strip().strip(".").lower()
    if host.isascii():
        return host
    labels = []
    for label in host.split("."):
        if label.isascii():
            labels.append(label)
            continue
        try:
            labels.append(label.encode("idna").decode("ascii"))
        except UnicodeError:
            try:
                labels.append("xn--" + label.encode("punycode").decode("ascii"))
            except UnicodeError:
                labels.append(label)
    return ".".join(labels)


def _split(url: str, has_scheme: bool) -> tuple[str, str] | None:
    try:
        parts = urlsplit(url if has_scheme else "//" + url)
        host = parts.hostname or ""
    except ValueError:  # e.g. an invalid port or IPv6 literal
        return None
    if not host or "." not in host.strip("."):
        return None
    return to_ascii_host(host), parts.path.lstrip("/").lower()


def extract_links(text: str) -> list[Link]:
    """Every link in `text`, in order of appearance, each host once per path."""
    clean, index = _clean(text)
    found: list[Link] = []
    seen: set[tuple[str, str]] = set()
    taken: list[tuple[int, int]] = []

    def add(start: int, raw: str, has_scheme: bool) -> None:
        url = _trim(raw)
        if not url:
            return
        split = _split(url, has_scheme)
        if split is None:
            return
        end = start + len(url)
        span = (index[start], index[end - 1] + 1)
        taken.append((start, end))
        if split in seen:
            return
        seen.add(split)
        found.append(Link(host=split[0], path=split[1], text=text[span[0] : span[1]], span=span))

    for m in _SCHEME_URL.finditer(clean):
        add(m.start(), m.group(0), True)
    for m in _BARE_URL.finditer(clean):
        if any(a <= m.start() < b for a, b in taken):
            continue
        add(m.start(), m.group(0), False)
    found.sort(key=lambda link: link.span)
    return found


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

    def match(self, link: Link) -> str | None:
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


def _configured_paths(explicit: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None) -> list[Path]:
    if explicit is not None:
        items = [explicit] if isinstance(explicit, str | os.PathLike) else list(explicit)
        return [Path(p) for p in items]
    env = os.environ.get(ENV_BLOCKLIST, "").strip()
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p.strip()]
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

    inline: ClassVar[bool] = True  # compiled matchers, sub-millisecond: safe on the event loop

    name: ClassVar[str] = "links"
    modality: ClassVar[Modality] = Modality.LINK
    labels: ClassVar[tuple[str, ...]] = ("scam",)
    version = "1"

    def __init__(
        self,
        blocklist_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        never_block: Iterable[str] = KNOWN_FALSE_POSITIVES,
    ) -> None:
        self._explicit = blocklist_path
        self._never_block = frozenset(never_block)
        self._platform: LinkList | None = None
        self._status: dict[str, Any] = {"ok": False, "detail": "not loaded yet", "paths": [], "entries": 0}
        self._guild_cache: OrderedDict[tuple[str, ...], LinkList] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, artifact_dir: Path | None = None) -> Self:
        """Read the platform list. A missing or broken file is reported by status(), not raised:
        guild lists still work, and readiness decides whether that is good enough."""
        paths = _configured_paths(self._explicit)
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

    def applies_to(self, item: ScoringItem) -> bool:
        return bool(extract_links(item.message.text))

    def _guild_list(self, lists: GuildLists) -> LinkList | None:
        """The guild's compiled extra list, cached by content: the policy layer may build a new
        GuildLists per request, and these lists are short, so the content is a cheap key."""
        if not lists.blocked_links:
            return None
        key = tuple(lists.blocked_links)
        with self._lock:
            hit = self._guild_cache.get(key)
            if hit is not None:
                self._guild_cache.move_to_end(key)
                return hit
        compiled = LinkList.from_entries(key)
        with self._lock:
            self._guild_cache[key] = compiled
            while len(self._guild_cache) > 512:
                self._guild_cache.popitem(last=False)
        return compiled

    def score(self, items: Sequence[ScoringItem]) -> list[Signal]:
        if self._platform is None:
            self.load()
        return self.score_each(items, self._score_one)

    def _score_one(self, item: ScoringItem, started: float) -> Signal:
        links = extract_links(item.message.text)
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
