"""Link extraction for the feature stage: every link in a message, found once per message.

URLs are pulled from the raw message text (the normalised text drops the dots between letters),
however they are written: with or without a scheme (``discord-nitro.gift/abc``), inside markdown
``[label](url)`` (the label too: ``[discord.com](https://evil.ru)`` is the classic masked link),
inside ``<url>``, defanged (``hxxp://evil[.]com``), followed by punctuation, in upper case, with
full-width letters or zero-width characters, and as Unicode or punycode (IDNA) host names.

The link-list scorer (`pipeline.scorers.links`) reads the result from `ItemContext.links`; a
learned link model will read the same tuple instead of extracting again.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import ClassVar
from urllib.parse import urlsplit

from pipeline.features.context import ExtractedLink, Feature, ScoringItem
from pipeline.features.domains import plausible_bare_host
from pipeline.features.stage import FeatureExtractor
from pipeline.normalize import _INVISIBLE

_INVITE_HOSTS = frozenset({"discord.gg", "www.discord.gg"})
_INVITE_PATH_HOSTS = frozenset({"discord.com", "www.discord.com", "discordapp.com", "www.discordapp.com"})
_INVITE_CODE = re.compile(r"[A-Za-z0-9-]{2,32}")

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


def _split(url: str, has_scheme: bool) -> tuple[str, str, str] | None:
    """(ASCII host, lower-case path, path as written) of a URL, or None when it has no dotted host."""
    try:
        parts = urlsplit(url if has_scheme else "//" + url)
        host = parts.hostname or ""
    except ValueError:  # e.g. an invalid port or IPv6 literal
        return None
    if not host or "." not in host.strip("."):
        return None
    path = parts.path.lstrip("/")
    return to_ascii_host(host), path.lower(), path


def invite_code(host: str, path: str) -> str | None:
    """The Discord invite code a link carries (`discord.gg/AbC`, `discord.com/invite/AbC`), else None.

    `path` is as written: invite codes are case-sensitive."""
    if host in _INVITE_HOSTS:
        code = path
    elif host in _INVITE_PATH_HOSTS and path[:7].lower() == "invite/":
        code = path[7:]
    else:
        return None
    code = code.split("/", 1)[0]
    return code if _INVITE_CODE.fullmatch(code) else None


def extract_links(text: str) -> list[ExtractedLink]:
    """Every link in `text`, in order of appearance, each host once per path.

    The public entry point for any text that may carry links: message text here, and OCR and QR
    text from images, so that a link in a picture is found and judged the same way.

    A name written without a scheme counts only if it ends in a real public suffix (the bundled
    public-suffix list: ``os.path`` and ``e.g`` do not) and, for file-extension-like suffixes
    (``file.py``, ``readme.md``), only with a path or ``www.``; see `pipeline.features.domains`."""
    if text.isascii() and "." not in text and "dot" not in text.lower():
        # No dot and no defanged one: no host name can be in here. ASCII text folds to itself,
        # so this check is exact, and it skips the per-character pass for most chat messages.
        return []
    clean, index = _clean(text)
    found: list[ExtractedLink] = []
    seen: set[tuple[str, str]] = set()
    taken: list[tuple[int, int]] = []

    def add(start: int, raw: str, has_scheme: bool, bare_host_len: int = 0) -> None:
        url = _trim(raw)
        if not url:
            return
        split = _split(url, has_scheme)
        if split is None:
            return
        if not has_scheme and not plausible_bare_host(split[0], has_path=len(url.rstrip(".")) > bare_host_len):
            return  # "file.py", "os.path", "e.g": a dotted word, not a link
        end = start + len(url)
        span = (index[start], index[end - 1] + 1)
        taken.append((start, end))
        host, path, written_path = split
        if (host, path) in seen:
            return
        seen.add((host, path))
        written = text[span[0] : span[1]]
        found.append(ExtractedLink(host, path, written, span, invite_code(host, written_path)))

    for m in _SCHEME_URL.finditer(clean):
        add(m.start(), m.group(0), True)
    for m in _BARE_URL.finditer(clean):
        if any(a <= m.start() < b for a, b in taken):
            continue
        add(m.start(), m.group(0), False, len(m.group(1)))
    found.sort(key=lambda link: link.span)
    return found


class LinkExtractor(FeatureExtractor):
    """Fills `ItemContext.links` from the message text."""

    name: ClassVar[str] = "links"
    provides: ClassVar[frozenset[Feature]] = frozenset({Feature.LINKS})

    def extract(self, items: Sequence[ScoringItem]) -> None:
        for item in items:
            item.context.links = tuple(extract_links(item.message.text))
