"""Per-guild keyword and regex lists, matched after evasion-aware normalisation.

Semantics follow Discord AutoMod's keyword filter so moderators meet no surprises:

- ``word``    matches the whole word only ("ass" does not match "class" or "assistant");
- ``word*``   matches words starting with ``word``;
- ``*word``   matches words ending with ``word``;
- ``*word*``  matches ``word`` anywhere, inside other words too;
- a term with spaces is a phrase: its words may be separated by any run of non-letters, or by
  nothing ("kill yourself", "kill, yourself", "killyourself");
- allowlist terms (same syntax) suppress a keyword or regex match that lies inside them: block
  ``*ass*``, allow ``class`` and "class" passes while "badass" does not;
- regexes are listed per category and run on the normalised text, then on the raw text (so a
  pattern such as ``discord\\.gg/\\w+`` still works although normalisation drops dots between
  letters), case-insensitively.

Matching runs on ``pipeline.normalize.normalize`` output, which already undoes NFKC variants,
confusable letters, zero-width characters, spaced-out letters, punctuation inside words and
leetspeak, and caps repeated letters at two. Repeated letters are then compared by *runs*: each run
of a letter in a term matches a run at least as long in the text, so "fuck" matches "fuuuuck"
(normalised to "fuuck") but "ass" does not match "as" and a double-g slur does not match "Niger".
That is the squeezed comparison (collapse runs on both sides) without its false positives: with
plain squeezing, text that has *fewer* repeats than the term matches too.

Guild regexes run on RE2 (``google-re2``), whose automaton matching is linear in the text length
whatever the pattern: no pattern can backtrack catastrophically on the hot path. We preferred it
to the ``regex`` module's timeout, which still burns the whole timeout of CPU per message and
turns an attack into latency. RE2 has no backreferences or lookaround, like AutoMod's Rust regex
engine, so patterns moderators bring from AutoMod keep working. ``validate_regex`` is for policy
save time and also rejects nested repeating quantifiers (``(a+)+``): harmless under RE2, but they
are the classic ReDoS shape and would be dangerous if a pattern were ever exported to a
backtracking engine.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import unicodedata
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import ClassVar

import cachetools
import re2

from pipeline.guilds import GuildLists
from pipeline.normalize import _INVISIBLE, _LEET, NORMALIZER_VERSION, normalize, squeeze
from pipeline.scorers.base import Modality, Scorer, ScoringItem
from pipeline.taxonomy import CATEGORY_NAMES, parse_category
from pipeline.types import Evidence, Signal

log = logging.getLogger(__name__)

# Limits as in Discord AutoMod, so lists moderators copy over fit, and the matcher stays cheap.
MAX_KEYWORD_CHARS = 60
MAX_KEYWORDS_PER_CATEGORY = 1000
MAX_REGEX_CHARS = 260
MAX_REGEXES_PER_CATEGORY = 10
MAX_ALLOWLIST = 100
# RE2 "program size" (compiled instructions); past this a pattern is rejected as too complex.
MAX_REGEX_PROGRAM_SIZE = 5000
# Evidence kept per message: enough for a reviewer, bounded for a 4000-character spam wall.
MAX_EVIDENCE = 20
_SNIPPET_CHARS = 80

_NON_WORD = re.compile(r"[\W_]+")


class _Mode(Enum):
    WHOLE = "whole"
    PREFIX = "prefix"  # word*
    SUFFIX = "suffix"  # *word
    ANYWHERE = "anywhere"  # *word*


@dataclass(frozen=True)
class _Term:
    """A compiled keyword or allowlist term."""

    raw: str  # as the guild wrote it, shown in evidence
    core: str  # the term without wildcards, normalised
    mode: _Mode
    probe: str  # squeezed letters-and-digits form: a cheap `in` test before the regex runs
    pattern: re.Pattern[str]

    def spans(self, text: str) -> Iterable[tuple[int, int]]:
        """Where the term matches in normalised `text`, widened over the wildcard part of the word.

        The widening makes `idiot*` report "idiots" and lets an allowlisted `class*` cover
        all of "classes".
        """
        for m in self.pattern.finditer(text):
            start, end = m.span()
            if self.mode in (_Mode.SUFFIX, _Mode.ANYWHERE):
                while start > 0 and _is_word_char(text[start - 1]):
                    start -= 1
            if self.mode in (_Mode.PREFIX, _Mode.ANYWHERE):
                while end < len(text) and _is_word_char(text[end]):
                    end += 1
            yield start, end


@dataclass(frozen=True)
class _Regex:
    category: str
    raw: str
    compiled: re2._Regexp


@dataclass(frozen=True)
class _Matcher:
    """Everything compiled from one GuildLists value; built once, then reused for every message."""

    keywords: tuple[tuple[str, _Term], ...]  # (category, term), in list order
    regexes: tuple[_Regex, ...]
    allow: tuple[_Term, ...]
    categories: tuple[str, ...]  # categories that have at least one usable keyword or regex


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _probe(text: str) -> str:
    """Letters and digits only, runs squeezed: a necessary condition for any term match."""
    return squeeze(_NON_WORD.sub("", text))


def _re2_options() -> re2.Options:
    opts = re2.Options()
    opts.case_sensitive = False
    opts.log_errors = False  # a bad guild pattern is a ValueError for the caller, not log noise
    opts.max_mem = 8 << 20
    return opts


def _parse_term(term: str) -> tuple[str, _Mode]:
    t = term.strip()
    lead, trail = t.startswith("*"), t.endswith("*") and len(t) > 1
    core = t.strip("*")
    mode = {
        (False, False): _Mode.WHOLE,
        (False, True): _Mode.PREFIX,
        (True, False): _Mode.SUFFIX,
        (True, True): _Mode.ANYWHERE,
    }[(lead, trail)]
    return core, mode


def _core_pattern(core: str) -> str:
    """Regex for a normalised term: letter runs as minimum counts, spaces as optional separators.

    Adjacent units always differ (runs are grouped), so matching never backtracks more than the
    term's length per start position.
    """
    parts: list[str] = []
    for run in re.finditer(r"(.)\1*", core):
        ch, n = run.group(1), len(run.group(0))
        if ch.isspace():
            parts.append(r"[\W_]*")
        elif ch.isalpha():
            parts.append(re.escape(ch) + ("+" if n == 1 else f"{{{n},}}"))
        else:  # digits and punctuation are not stretched by normalisation: match them exactly
            parts.append(re.escape(ch * n))
    return "".join(parts)


def _compile_term(term: str) -> _Term | None:
    """Compile one term, or None when nothing is left after normalisation (e.g. "***", "!!")."""
    core_raw, mode = _parse_term(term)
    core = normalize(core_raw)
    if not core or not _probe(core):
        return None
    body = _core_pattern(core)
    left = r"(?<!\w)" if mode in (_Mode.WHOLE, _Mode.PREFIX) else ""
    right = r"(?!\w)" if mode in (_Mode.WHOLE, _Mode.SUFFIX) else ""
    return _Term(raw=term.strip(), core=core, mode=mode, probe=_probe(core), pattern=re.compile(left + body + right))


def validate_keyword(term: str) -> None:
    """Raise ValueError with a reason a moderator can act on if `term` cannot be a list term."""
    t = term.strip()
    if not t.strip("*").strip():
        raise ValueError(f"keyword {term!r} is empty; it would match nothing or everything")
    if len(t) > MAX_KEYWORD_CHARS:
        raise ValueError(f"keyword {t[:20]!r}... is {len(t)} characters; the limit is {MAX_KEYWORD_CHARS}")
    if "*" in t.strip("*"):
        raise ValueError(f"keyword {t!r}: '*' is a wildcard only at the start or end of a term")
    if _compile_term(t) is None:
        raise ValueError(f"keyword {t!r} has no letters or digits left after normalisation")


def _nested_quantifier(pattern: str) -> str | None:
    """Return the part of `pattern` where a repeated group contains a repeat, e.g. "(a+)+", else None.

    "Repeat" inside means a variable count (`*`, `+`, `?`, `{n,}`, `{n,m}`), the source of
    ambiguous matches; a fixed `{3}` inside is fine, so `(\\d{3}-){2}` passes. Outside, any count
    above one repeats the group. A small scanner rather than a full parser: it tracks groups and
    skips escapes and character classes.
    """
    stack: list[tuple[int, bool]] = [(0, False)]  # (group start, contains a variable quantifier)
    last_group: tuple[int, bool] | None = None  # the group that just closed, if the last atom was one
    i, n = 0, len(pattern)
    brace = re.compile(r"\{(\d+)(,(\d*))?\}")
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            if i - 1 < n and pattern[i - 1] in "pPx" and i < n and pattern[i] == "{":
                close = pattern.find("}", i)
                i = n if close < 0 else close + 1
            last_group = None
            continue
        if c == "[":
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                if pattern[j] == "\\":
                    j += 2
                elif pattern.startswith("[:", j):
                    close = pattern.find(":]", j + 2)
                    j = n if close < 0 else close + 2
                else:
                    j += 1
            i = j + 1
            last_group = None
            continue
        if c == "(":
            start = i
            i += 1
            if i < n and pattern[i] == "?":
                j = i + 1
                if j < n and pattern[j] in "P<" and not pattern.startswith("<=", j) and not pattern.startswith("<!", j):
                    close = pattern.find(">", j)
                    i = n if close < 0 else close + 1
                else:
                    while j < n and (pattern[j].isalpha() or pattern[j] == "-"):
                        j += 1
                    if j < n and pattern[j] == ")":  # a flag group like (?i): not a group
                        i = j + 1
                        last_group = None
                        continue
                    i = j + 1
            stack.append((start, False))
            last_group = None
            continue
        if c == ")":
            if len(stack) == 1:  # unbalanced; RE2 reports it with a better message
                i += 1
                continue
            start, inner = stack.pop()
            if inner:
                stack[-1] = (stack[-1][0], True)
            last_group = (start, inner)
            i += 1
            continue
        quant: str | None = None
        low, high = 1, 1  # repeat bounds; high -1 means unbounded
        if c in "*+?":
            quant, low, high = c, (1 if c == "+" else 0), (1 if c == "?" else -1)
        elif c == "{":
            m = brace.match(pattern, i)
            if m:
                quant, low = m.group(0), int(m.group(1))
                high = low if not m.group(2) else (int(m.group(3)) if m.group(3) else -1)
        variable = high != low  # matches a varying number of times: the source of ambiguity
        repeating = high == -1 or high > 1
        if quant is None:
            last_group = None
            i += 1
            continue
        end = i + len(quant)
        if end < n and pattern[end] in "?+":  # lazy or possessive modifier
            end += 1
        if repeating and last_group is not None and last_group[1]:
            return pattern[last_group[0] : end]
        if variable:
            stack[-1] = (stack[-1][0], True)
        last_group = None
        i = end
    return None


def _compile_regex(pattern: str) -> re2._Regexp:
    try:
        return re2.compile(pattern, _re2_options())
    except re2.error as e:
        reason = e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        hint = ""
        if any(s in pattern for s in ("(?=", "(?!", "(?<=", "(?<!")) or re.search(r"\\[1-9]", pattern):
            hint = " (lookaround and backreferences are not supported)"
        raise ValueError(f"regex {pattern!r} is not valid: {reason}{hint}") from None


def validate_regex(pattern: str) -> None:
    """Check a guild regex at policy-save time; raise ValueError with the reason it is refused.

    Refused: empty or longer than MAX_REGEX_CHARS, invalid RE2 syntax (including lookaround and
    backreferences), nested repeating quantifiers such as ``(a+)+`` or ``(\\w*\\s)*``, programs too
    large, and patterns that match empty text (they would flag every message).
    """
    if not pattern or not pattern.strip():
        raise ValueError("regex is empty; it would match every message")
    if len(pattern) > MAX_REGEX_CHARS:
        raise ValueError(f"regex is {len(pattern)} characters long; the limit is {MAX_REGEX_CHARS}")
    nested = _nested_quantifier(pattern)
    if nested is not None:
        raise ValueError(
            f"regex {pattern!r} has nested quantifiers in {nested!r}: a repeated group that itself "
            "contains a repeat can take exponential time in backtracking engines; "
            "rewrite it without the outer or inner repeat"
        )
    compiled = _compile_regex(pattern)
    if compiled.programsize > MAX_REGEX_PROGRAM_SIZE:
        raise ValueError(
            f"regex {pattern!r} is too complex (program size {compiled.programsize}, "
            f"limit {MAX_REGEX_PROGRAM_SIZE}); use smaller repeat counts"
        )
    if compiled.search("") is not None:
        raise ValueError(f"regex {pattern!r} matches empty text, so it would flag every message")


def validate_lists(lists: GuildLists) -> None:
    """Validate a whole GuildLists value at policy-save time (categories, counts, every term)."""
    for kind, groups, limit in (
        ("keywords", lists.keywords, MAX_KEYWORDS_PER_CATEGORY),
        ("regexes", lists.regexes, MAX_REGEXES_PER_CATEGORY),
    ):
        for category, items in groups.items():
            try:
                parse_category(category)
            except ValueError as e:
                raise ValueError(f"{kind}: {e}") from None
            if len(items) > limit:
                raise ValueError(f"{kind}[{category}] has {len(items)} entries; the limit is {limit}")
            for item in items:
                try:
                    (validate_keyword if kind == "keywords" else validate_regex)(item)
                except ValueError as e:
                    raise ValueError(f"{kind}[{category}]: {e}") from None
    if len(lists.allowlist) > MAX_ALLOWLIST:
        raise ValueError(f"allowlist has {len(lists.allowlist)} entries; the limit is {MAX_ALLOWLIST}")
    for term in lists.allowlist:
        try:
            validate_keyword(term)
        except ValueError as e:
            raise ValueError(f"allowlist: {e}") from None


def _build_matcher(lists: GuildLists) -> _Matcher:
    """Compile a GuildLists value. Bad entries are skipped with a warning, not raised: they should
    have been refused at save time, and one bad entry must not switch off a guild's whole list."""
    keywords: list[tuple[str, _Term]] = []
    regexes: list[_Regex] = []
    categories: list[str] = []
    for category, terms in lists.keywords.items():
        if category not in CATEGORY_NAMES:
            log.warning("rules: skipping keywords for unknown category %r", category)
            continue
        for t in terms:
            compiled = _compile_term(t)
            if compiled is None:
                log.warning("rules: skipping keyword %r: nothing left after normalisation", t)
                continue
            keywords.append((category, compiled))
            if category not in categories:
                categories.append(category)
    for category, patterns in lists.regexes.items():
        if category not in CATEGORY_NAMES:
            log.warning("rules: skipping regexes for unknown category %r", category)
            continue
        for p in patterns:
            try:
                validate_regex(p)
                regexes.append(_Regex(category, p, _compile_regex(p)))
            except ValueError as e:
                log.warning("rules: skipping regex: %s", e)
                continue
            if category not in categories:
                categories.append(category)
    allow = tuple(c for c in (_compile_term(t) for t in lists.allowlist) if c is not None)
    order = {c: i for i, c in enumerate(CATEGORY_NAMES)}
    return _Matcher(tuple(keywords), tuple(regexes), allow, tuple(sorted(categories, key=order.__getitem__)))


def _content_key(lists: GuildLists) -> tuple[object, ...]:
    return (
        tuple(sorted((k, tuple(v)) for k, v in lists.keywords.items())),
        tuple(sorted((k, tuple(v)) for k, v in lists.regexes.items())),
        tuple(lists.allowlist),
    )


# --- mapping a match back to the original text ------------------------------------------------


@lru_cache(maxsize=8192)
def _skeleton_char(ch: str) -> str:
    """What one original character becomes: normalised, every leet character read as a letter,
    punctuation and spaces dropped. Characters repeat a lot, so the cache makes this cheap."""
    return "".join(c for c in normalize(ch).translate(_LEET) if c.isalnum())


@dataclass(frozen=True)
class _Skeleton:
    """A text reduced to squeezed letters and digits, with each one's span in the text."""

    chars: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    @classmethod
    def of(cls, text: str) -> _Skeleton:
        chars: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        for i, ch in enumerate(text):
            for c in _skeleton_char(ch):
                if chars and chars[-1] == c:
                    ends[-1] = i + 1
                else:
                    chars.append(c)
                    starts.append(i)
                    ends.append(i + 1)
        return cls("".join(chars), tuple(starts), tuple(ends))


class _Aligner:
    """Maps spans of the normalised (or case-folded raw) text back to the original message text.

    normalize() is a chain of regex rewrites without an offset map, so we rebuild the
    correspondence: both texts are reduced to skeletons; the matched part's skeleton is looked up
    in the original's, taking the occurrence nearest to where it sits in the searched text.
    Skeletons are built once per message, and only when there is a match to show.
    """

    def __init__(self, original: str) -> None:
        self.original = original
        self._skeletons: dict[str, _Skeleton] = {}

    def _skeleton(self, text: str) -> _Skeleton:
        if text not in self._skeletons:
            self._skeletons[text] = _Skeleton.of(text)
        return self._skeletons[text]

    def align(self, text: str, span: tuple[int, int]) -> tuple[int, int] | None:
        """The span in the original text, or None when the match has no letters or digits."""
        if text == self.original:
            return span
        src = self._skeleton(text)
        i0, i1 = bisect_left(src.starts, span[0]), bisect_left(src.starts, span[1])
        target = src.chars[i0:i1]
        if not target:
            return None
        orig = self._skeleton(self.original)
        best: int | None = None
        pos = orig.chars.find(target)
        while pos >= 0:
            if best is None or abs(pos - i0) < abs(best - i0):
                best = pos
            pos = orig.chars.find(target, pos + 1)
        if best is None:
            return None
        return orig.starts[best], orig.ends[best + len(target) - 1]


def _show(text: str) -> str:
    """A snippet a person can read: invisible characters spelled out, newlines flattened, capped."""
    out = []
    for ch in text:
        if ord(ch) in _INVISIBLE or unicodedata.category(ch) in ("Cc", "Cf"):
            out.append("\\n" if ch == "\n" else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    s = "".join(out)
    return s if len(s) <= _SNIPPET_CHARS else s[: _SNIPPET_CHARS - 1] + "…"


def _inside(span: tuple[int, int], allowed: Sequence[tuple[int, int]]) -> bool:
    return any(a <= span[0] and span[1] <= b for a, b in allowed)


class RulesScorer(Scorer):
    """Per-guild keyword and regex lists (AutoMod-style) after evasion-aware normalisation.

    Scores: 1.0 for a category with a match (``definitive``: the ensemble takes it as a floor),
    0.0 for a category that has lists but no match, and nothing at all for categories the guild
    has no list for: a missing list is not evidence of innocence, so it must not read as a 0.0
    that could pull an ensemble average down. A guild without lists gets a Signal with empty
    scores. Items whose text is empty (attachments only) also get empty scores: there is no text
    to check, so a 0.0 would claim a check that did not happen.

    Compiled lists are cached per GuildLists object (identity first, then content), so the hot
    path only pays for matching.
    """

    inline: ClassVar[bool] = True  # compiled matchers, sub-millisecond: safe on the event loop

    name: ClassVar[str] = "rules"
    modality: ClassVar[Modality] = Modality.TEXT
    labels: ClassVar[tuple[str, ...]] = CATEGORY_NAMES
    version = f"1+norm{NORMALIZER_VERSION}"

    def __init__(self, cache_size: int = 512) -> None:
        # cachetools LRUs, guarded by one lock: they are not thread-safe, and the event loop and
        # the queue workers' threads look matchers up concurrently.
        self._by_id: cachetools.LRUCache[int, tuple[GuildLists, _Matcher]] = cachetools.LRUCache(max(1, cache_size))
        self._by_content: cachetools.LRUCache[tuple[object, ...], _Matcher] = cachetools.LRUCache(max(1, cache_size))
        self._lock = threading.Lock()

    def matcher_for(self, lists: GuildLists) -> _Matcher:
        """The compiled matcher for `lists`, compiled at most once per distinct content.

        Identity is the fast path; the cache keeps a reference to the lists object, so its id
        cannot be reused by another object while the entry lives. The content key catches a
        policy layer that rebuilds an equal GuildLists per request.
        """
        with self._lock:
            hit = self._by_id.get(id(lists))  # a lookup refreshes the entry's recency
            if hit is not None and hit[0] is lists:
                return hit[1]
        key = _content_key(lists)
        with self._lock:
            matcher = self._by_content.get(key)
        if matcher is None:
            matcher = _build_matcher(lists)
        with self._lock:
            self._by_content[key] = matcher
            self._by_id[id(lists)] = (lists, matcher)
        return matcher

    def applies_to(self, item: ScoringItem) -> bool:
        lists = item.lists
        has_lists = any(lists.keywords.values()) or any(lists.regexes.values())
        return has_lists and bool(item.message.text.strip())

    def score(self, items: Sequence[ScoringItem]) -> list[Signal]:
        return self.score_each(items, self._score_one)

    def _score_one(self, item: ScoringItem, started: float) -> Signal:
        if not self.applies_to(item):
            return Signal(scorer=self.name, version=self.version, latency_ms=_ms(started))
        matcher = self.matcher_for(item.lists)
        original = item.message.text
        text = item.normalized_text or normalize(original)
        probe = _probe(text)
        scores = dict.fromkeys(matcher.categories, 0.0)
        evidence: list[Evidence] = []
        allowed: dict[str, list[tuple[int, int]]] = {}
        aligner = _Aligner(original)

        def allowed_spans(which: str, t: str) -> list[tuple[int, int]]:
            if which not in allowed:
                p = probe if which == "normalized" else _probe(t)
                allowed[which] = [s for a in matcher.allow if a.probe in p for s in a.spans(t)]
            return allowed[which]

        for category, term in matcher.keywords:
            if term.probe not in probe:
                continue
            for span in term.spans(text):
                if _inside(span, allowed_spans("normalized", text)):
                    continue
                scores[category] = 1.0
                if len(evidence) < MAX_EVIDENCE:
                    evidence.append(_evidence(aligner, category, "term", term.raw, term.core, text, span))
                break
        raw = original.casefold()
        for rx in matcher.regexes:
            hit = self._regex_hit(rx, text, "normalized", allowed_spans)
            source = text
            if hit is None:
                hit = self._regex_hit(rx, raw, "raw", allowed_spans)
                source = raw
            if hit is None:
                continue
            scores[rx.category] = 1.0
            if len(evidence) < MAX_EVIDENCE:
                if source is raw and len(raw) == len(original):
                    source = original  # case folding kept every offset
                evidence.append(_evidence(aligner, rx.category, "pattern", rx.raw, None, source, hit))
        return Signal(
            scorer=self.name,
            version=self.version,
            scores=scores,
            evidence=evidence,
            definitive=any(v == 1.0 for v in scores.values()),
            latency_ms=_ms(started),
        )

    @staticmethod
    def _regex_hit(
        rx: _Regex, text: str, which: str, allowed_spans: Callable[[str, str], list[tuple[int, int]]]
    ) -> tuple[int, int] | None:
        for m in rx.compiled.finditer(text):
            span = m.span()
            if span[0] == span[1]:
                continue
            if not _inside(span, allowed_spans(which, text)):
                return span
        return None


def _evidence(
    aligner: _Aligner, category: str, kind: str, raw: str, core: str | None, text: str, span: tuple[int, int]
) -> Evidence:
    """Evidence for a match at `span` of `text`: the span in the original text when it can be
    mapped back (else None, rather than offsets into a text the reader never saw)."""
    mapped = aligner.align(text, span)
    if mapped is None:
        seen = text[span[0] : span[1]]
        detail = f'matched blocked {kind} "{raw}" (in normalised text as "{_show(seen)}")'
        return Evidence(category=category, detail=detail, span=None)
    seen = aligner.original[mapped[0] : mapped[1]]
    detail = f'matched blocked {kind} "{raw}"'
    if core is None or seen.casefold() != core:
        detail += f' (as "{_show(seen)}")'
    return Evidence(category=category, detail=detail, span=mapped)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
