"""Evasion-aware text normalisation, shared by the word lists and the text model.

Why: people dodge filters with look-alike letters (Cyrillic 'а' for Latin 'a'), zero-width
characters, spaced-out letters ("f u c k"), punctuation inside words ("f.u.c.k"), leetspeak
("sh1t") and stretched letters ("fuuuuck"). Every scorer must see through the same tricks, so
the same function runs at training time and at serving time; changing it changes the inputs
the text model was trained on, so bump NORMALIZER_VERSION when you do.

Confusable characters come from Unicode's confusables table as packaged by
`confusable_homoglyphs`, rather than a hand-kept map.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from importlib.resources import files

NORMALIZER_VERSION = "2"  # 2: numbers, mentions, trailing "!", capital-I look-alikes, NUL, "1d10t"

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

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i",
                       "|": "l", "8": "b", "9": "g", "€": "e", "£": "l"})
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
_SPACED_LETTERS = re.compile(r"(?<![\w])(?:[a-z][ .\-_*·|]){2,}[a-z](?![\w])")
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
    return re.sub(r"[ .\-_*·|]", "", match.group(0))


def normalize(text: str) -> str:
    """Return the evasion-normalised, case-folded form of `text`.

    URLs are left as they are (the link scorer reads the raw text anyway), repeated letters are
    capped at two so "soooo" and "sooooooo" look alike without merging real double letters.
    """
    if not text:
        return ""
    if text.isascii():
        # Fast path, same result: ASCII is its own NFKC/NFKD form, has no combining marks and no
        # confusables (the table maps non-ASCII characters only); NUL is its only invisible.
        text = text.replace("\x00", "").lower()
    else:
        text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE)
        text = text.translate(_confusables_map())
        text = _strip_marks(text).casefold()
    urls: list[str] = []

    def _keep(m: re.Match[str]) -> str:
        urls.append(m.group(0))
        return f"\x00{len(urls) - 1}\x00"

    text = _URL.sub(_keep, text)
    # Collapse whitespace before joining spaced letters, so "f  u  c  k" and tab-separated letters join too.
    text = _SPACES.sub(" ", text)
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
