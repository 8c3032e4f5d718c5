"""Evasion-aware text normalisation, shared by the word lists and the text model.

Why: people dodge filters with look-alike letters (Cyrillic 'а' for Latin 'a'), zero-width
characters, spaced-out letters ("f u c k"), punctuation inside words ("f.u.c.k"), leetspeak
("sh1t") and stretched letters ("fuuuuck"). Every scorer must see through the same tricks, so
the same function runs at training time and at serving time; changing it changes the inputs
the text model was trained on, so bump NORMALIZER_VERSION when you do.

Confusable characters come from Unicode's confusables table as packaged by
`confusable_homoglyphs`, rather than a hand-kept map; letters that table misses (small capitals
"ᴋ", squared and negative squared letters "🅰", letters with strokes "ł") are read from their
Unicode character names (`unicodedata`), so no table of ours has to list them either.

Links, bare domains ("google.com") and e-mail addresses are kept verbatim (the link scorer reads
them from the raw text; `models.text.canonical` turns them into one placeholder token each), and
common chat abbreviations written with digits ("b4", "gr8", "l8r") are spelled out rather than
de-leeted into nonsense ("ba", "grb").
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from importlib.resources import files

# 2: numbers, mentions, trailing "!", capital-I look-alikes, NUL, "1d10t".
# 3: chat abbreviations spelled out ("b4" -> "before"), a leading "!" is punctuation ("!ban"),
#    bare domains and e-mail addresses kept verbatim, letters folded by Unicode name ("🅰", "ᴋ"),
#    spaced letters no longer join across words
#    ("f.u.c.k f-u-c-k" -> "fuck fuck"), and "~", "+", "^", "=" also separate spelled-out letters.
NORMALIZER_VERSION = "3"

# Characters that render as nothing: zero-width spaces/joiners, BOM, soft hyphen, word joiner,
# bidi controls, Mongolian vowel separator, and the variation selectors.
_INVISIBLE = dict.fromkeys(
    [
        *range(0x200B, 0x2010),
        *range(0x202A, 0x202F),
        *range(0x2060, 0x2070),
        0xFEFF,
        0x00AD,
        0x0000,  # NUL: also the URL placeholder delimiter below, so it must not survive from the input
        0x180E,
        0x034F,
        *range(0xFE00, 0xFE10),
    ]
)

_LEET = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "3": "e",
        "4": "a",
        "5": "s",
        "7": "t",
        "@": "a",
        "$": "s",
        "!": "i",
        "|": "l",
        "8": "b",
        "9": "g",
        "€": "e",
        "£": "l",
    }
)
_LEET_CHARS = "013457@$!|89€£"
# A number followed by an ordinal, time or unit suffix ("1st", "5pm", "3gb"): not leetspeak.
_NUMBER_WITH_UNIT = re.compile(
    r"\d+(?:st|nd|rd|th|am|pm|k|m|b|s|h|d|x|p|gb|mb|kb|tb|min|mins|hr|hrs|sec|secs|ms|fps|hz|ghz|mhz"
    r"|km|kg|cm|mm|lb|lbs|yo|yr|yrs)"
)
_TRAILING_BANGS = re.compile(r"!+$")  # "idiot!!!" is punctuation, not "idiotii"
# A word with at least one letter and at least one leet character (words without any are left as
# they are by _deleet, so the second lookahead only spares the Python callback for plain words).
_WORD_WITH_LEET = re.compile(
    rf"(?<![\w@#/])(?=[\w{re.escape(_LEET_CHARS)}]*[a-z])(?=[\w{re.escape(_LEET_CHARS)}]*[{re.escape(_LEET_CHARS)}])"
    rf"[\w{re.escape(_LEET_CHARS)}]+"
)
# Spelled-out letters: single letters joined by one kind of gap: separators without spaces
# ("f.u-c_k"), separators with a space each side ("f . u . c . k") or spaces alone ("f u c k"). A
# space between two such runs ends the word, so "f.u.c.k f-u-c-k" is two words, not one, and a
# sentence's full stop ("u.s. a year") does not pull the next word in.
_SEP = r"[.\-_*·|~+^=/]"
_SPACED_LETTERS = re.compile(
    rf"(?<![\w])(?:(?:[a-z]{_SEP}){{2,}}[a-z]|(?:[a-z] {_SEP} ){{2,}}[a-z]|(?:[a-z] ){{2,}}[a-z])(?![\w])"
)
# Chat abbreviations written with digits: real words, not leetspeak, so they are spelled out
# (the model's pretrained vocabulary knows "before", not "b4") instead of de-leeted ("b4" -> "ba").
CHAT_ABBREVIATIONS: dict[str, str] = {
    "b4": "before", "gr8": "great", "gr8t": "great", "l8": "late", "l8r": "later", "l8er": "later",
    "2day": "today", "2nite": "tonight", "2night": "tonight", "2moro": "tomorrow", "2morrow": "tomorrow",
    "2mrw": "tomorrow", "2gether": "together", "m8": "mate", "m8s": "mates", "h8": "hate", "h8s": "hates",
    "h8r": "hater", "h8rs": "haters", "h8ers": "haters", "h8ed": "hated", "h8ing": "hating", "w8": "wait",
    "w8ing": "waiting", "sk8": "skate", "sk8r": "skater", "sk8ing": "skating", "str8": "straight",
    "d8": "date", "any1": "anyone", "some1": "someone", "sum1": "someone", "every1": "everyone",
    "no1": "no one", "4ever": "forever", "4eva": "forever", "b4n": "bye for now", "gr8ful": "grateful",
}  # fmt: skip
_CHAT_ABBREVIATION = re.compile(
    r"(?<![\w@#/])(" + "|".join(sorted(map(re.escape, CHAT_ABBREVIATIONS), key=len, reverse=True)) + r")(?![\w])"
)
_LEADING_BANGS = re.compile(r"^!+(?=[a-z])")  # "!ban", "!!wow": a bot command or an exclamation
# Bare host names and e-mail addresses (checked against the public-suffix list before they count,
# as the link extractor does: "e.g" and "file.py" are words, "google.com" is a link).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = rf"(?:{_LABEL}\.)+[a-z]{{2,63}}"
EMAIL = re.compile(rf"(?<![\w.+-])[a-z0-9._%+-]+@({_HOST})(?![\w-])")
BARE_DOMAIN = re.compile(rf"(?<![\w@.:/#-])({_HOST})\.?(?::\d{{1,5}})?(?![\w-])([/?#][^\s<>\"'`]*)?")
_INNER_PUNCT = re.compile(r"(?<=[a-z])[.*_·•](?=[a-z])")
_REPEATS = re.compile(r"(\D)\1{2,}")  # digits are exempt: "2000" must stay "2000"
_SPACES = re.compile(r"\s+")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)


@lru_cache(maxsize=1)
def _confusables_map() -> dict[int, str]:
    """Map each non-ASCII character that Unicode lists as confusable with an ASCII letter or digit."""
    data = json.loads(files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8"))
    table: dict[int, str] = {}
    for char, glyphs in data.items():
        if len(char) != 1 or char.isascii():
            continue
        for g in glyphs:
            c = g.get("c", "")
            if len(c) == 1 and c.isascii() and c.isalnum():
                table[ord(char)] = c.lower()
                break
    # The table lists 'l', 'I' and '1' as mutual confusables, so capital look-alikes of I (Greek 'Ι',
    # Cyrillic 'І') come out as 'l'. Text is case-folded anyway: read them as their lower case does.
    for code, c in list(table.items()):
        lower = chr(code).lower()
        if c == "l" and len(lower) == 1 and lower != chr(code) and table.get(ord(lower)) == "i":
            table[code] = "i"
    return table


_NAMED_LETTER = re.compile(
    r"^(?:(?:NEGATIVE )?(?:SQUARED|CIRCLED|PARENTHESIZED) )?LATIN (?:CAPITAL |SMALL )?LETTER (?:SMALL CAPITAL )?"
    r"([A-Z])(?: WITH .*)?$"
)


@lru_cache(maxsize=1)
def _named_letters() -> dict[int, str]:
    """Non-ASCII characters whose Unicode name says they are a Latin letter, mapped to that letter.

    Why: NFKC and the confusables table leave some favourites of filter dodgers alone: negative
    squared letters ("🅰", an emoji), small capitals ("ꜰᴜᴄᴋ"), letters with strokes ("ł", "ø").
    Their names ("NEGATIVE SQUARED LATIN CAPITAL LETTER A") say which letter they are. Regional
    indicator symbols are not read as letters: runs of them are flags ("🇺🇸🇺🇸" is not "usus").
    """
    table: dict[int, str] = {}
    for code in (*range(0x00C0, 0x0250), *range(0x1D00, 0x1D80), *range(0xA720, 0xA800), *range(0x1F100, 0x1F200)):
        m = _NAMED_LETTER.match(unicodedata.name(chr(code), ""))
        if m:
            table[code] = m.group(1).lower()
    return table


def _fold_named_letters(text: str) -> str:
    """Map letter-named characters (`_named_letters`) to their ASCII letter."""
    return text.translate(_named_letters())


# Top-level domains a bare name must end in to count as a link. Why a short list and not the whole
# public-suffix list (which the check below also asks): tweets often lose the space after a full
# stop ("a shithole.you should", "right.it is", "spending.now its"), and ".you", ".it", ".now",
# ".so", ".no" are all real suffixes; a sentence boundary read as a link hides the words around it.
# ".eu", ".pl", ".uk" and ".id" are left out for the same reason ("crisis.eu running", "migrants.pl
# take"); "bbc.co.uk" still counts, by the first label of its suffix ("co.uk" -> "co").
# With a path ("docs.rs/serde") any real suffix will do; known shorteners ("youtu.be") always count.
LINK_TLDS: frozenset[str] = frozenset(
    {
        "com", "net", "org", "io", "co", "gg", "ly", "gl", "tv", "info", "biz", "xyz", "edu", "gov", "app",
        "dev", "de", "fr", "ru", "cn", "jp", "au", "ca", "br", "nl", "nz", "za", "mx", "tk", "ml", "ga", "cf",
        "gq", "top", "site", "online", "shop", "store", "club", "icu", "buzz", "cc", "ws", "gd", "su", "ua",
        "kr", "vn", "pk", "ng", "ke", "ir",
    }
)  # fmt: skip


def plausible_host(host: str, has_path: bool = False) -> bool:
    """Whether a dotted name written without a scheme is a link host (or an e-mail's domain).

    The link extractor's rule (a real public suffix, `pipeline.features.domains`), and without a
    path also a top-level domain from `LINK_TLDS` or a known shortener.
    """
    # Imported here: pipeline.features imports this module.
    from pipeline.features.domains import is_shortener, plausible_bare_host, public_suffix

    if not plausible_bare_host(host, has_path=has_path):
        return False
    return has_path or (public_suffix(host) or "").split(".")[0] in LINK_TLDS or is_shortener(host)


def _strip_marks(text: str) -> str:
    """Drop combining marks (diacritics, 'zalgo' stacks) after canonical decomposition."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _deleet(match: re.Match[str]) -> str:
    word = match.group(0)
    prefix = ""
    if word[0] == "@" and len(word) > 1 and word[1] not in _LEET_CHARS:
        return word  # a mention ("@user123"): a name, not a disguise
    if word[0] == "@":
        prefix, word = "@", word[1:]
    lead = _LEADING_BANGS.match(word)
    if lead and not any(ch in _LEET_CHARS for ch in word[lead.end() :].rstrip("!")):
        # "!ban", "!help": a bot command or an exclamation, not "iban"; but "!d!0t" is a disguise
        prefix, word = prefix + lead.group(0), word[lead.end() :]
    bangs = _TRAILING_BANGS.search(word)
    suffix = ""
    if bangs and bangs.start() > 0:
        word, suffix = word[: bangs.start()], bangs.group(0)
    letters = sum(ch.isalpha() for ch in word)
    others = len(word) - letters
    if letters < 1 or others == 0:
        return prefix + word + suffix
    if word[0].isdigit():
        # "10am", "4u", "1st", "5pm", "1v1": numbers, not disguise; but digits between letters
        # after the number ("1d10t") are leetspeak.
        interleaved = letters >= 2 and any(ch in _LEET_CHARS for ch in word.lstrip("0123456789"))
        if not interleaved and (letters <= others or _NUMBER_WITH_UNIT.fullmatch(word)):
            return prefix + word + suffix
    return prefix + word.translate(_LEET) + suffix


def _join_spaced(match: re.Match[str]) -> str:
    return re.sub(rf"[ ]|{_SEP}", "", match.group(0))


def normalize(text: str) -> str:
    """Return the evasion-normalised, case-folded form of `text`.

    URLs, bare domains and e-mail addresses are left as they are (the link scorer reads the raw
    text anyway), repeated letters are capped at two so "soooo" and "sooooooo" look alike without
    merging real double letters.
    """
    if not text:
        return ""
    if text.isascii():
        # Fast path, same result: ASCII is its own NFKC/NFKD form, has no combining marks and no
        # confusables (the table maps non-ASCII characters only); NUL is its only invisible.
        text = text.replace("\x00", "").lower()
    else:
        text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE)
        text = _fold_named_letters(text.translate(_confusables_map()))
        text = _strip_marks(text).casefold()
    urls: list[str] = []

    def _keep(m: re.Match[str]) -> str:
        urls.append(m.group(0))
        return f"\x00{len(urls) - 1}\x00"

    text = _URL.sub(_keep, text)
    if "@" in text:
        text = EMAIL.sub(lambda m: _keep(m) if plausible_host(m.group(1)) else m.group(0), text)
    if "." in text:
        text = BARE_DOMAIN.sub(lambda m: _keep(m) if plausible_host(m.group(1), bool(m.group(2))) else m.group(0), text)
    # Collapse whitespace before joining spaced letters, so "f  u  c  k" and tab-separated letters join too.
    text = _SPACES.sub(" ", text)
    text = _CHAT_ABBREVIATION.sub(lambda m: CHAT_ABBREVIATIONS[m.group(1)], text)
    text = _WORD_WITH_LEET.sub(_deleet, text)
    text = _SPACED_LETTERS.sub(_join_spaced, text)
    text = _INNER_PUNCT.sub("", text)
    text = _REPEATS.sub(r"\1\1", text)
    text = _SPACES.sub(" ", text).strip()
    if urls:
        text = re.sub(r"\x00(\d+)\x00", lambda m: urls[int(m.group(1))], text)
    return text


def squeeze(text: str) -> str:
    """Collapse every run of a repeated character to one: the form list matching compares."""
    return re.sub(r"(.)\1+", r"\1", text)
