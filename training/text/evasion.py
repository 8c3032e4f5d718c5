"""Seeded evasion rewriter: the tricks people use to slip abuse past filters.

Used twice: at training time on a fraction of examples (so the model sees what normalisation
leaves behind), and at evaluation time to build the evasion suite (the OLID test set rewritten)
that is scored beside the clean test set. Everything draws from a `random.Random(seed)`, so
the suite is identical run to run.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

LEET = {"a": "4@", "e": "3", "i": "1!", "o": "0", "s": "5$", "t": "7", "l": "1", "g": "9", "b": "8"}
# Cyrillic / Greek / fullwidth look-alikes of Latin letters.
HOMOGLYPHS = {
    "a": "аɑａ",
    "c": "сϲｃ",
    "e": "еｅ",
    "i": "іｉ",
    "o": "оοｏ",
    "p": "рｐ",
    "s": "ѕｓ",
    "x": "хｘ",
    "y": "уｙ",
    "k": "кｋ",
    "h": "һｈ",
    "n": "ｎ",
    "u": "ｕ",
    "t": "ｔ",
    "d": "ԁｄ",
}
ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")
SEPARATORS = (" ", ".", "-", "*", "_")
TECHNIQUES = ("leet", "homoglyph", "zero_width", "spaced", "punctuation", "repeat")
_WORD = re.compile(r"[A-Za-z]{3,}")


def _leet(w: str, rng: random.Random) -> str:
    out = [rng.choice(LEET[c.lower()]) if c.lower() in LEET and rng.random() < 0.6 else c for c in w]
    if out == list(w):  # make sure something changed when a substitutable letter exists
        for i, c in enumerate(w):
            if c.lower() in LEET:
                out[i] = LEET[c.lower()][0]
                break
    return "".join(out)


def _homoglyph(w: str, rng: random.Random) -> str:
    return "".join(
        rng.choice(HOMOGLYPHS[c.lower()]) if c.lower() in HOMOGLYPHS and rng.random() < 0.6 else c for c in w
    )


def _zero_width(w: str, rng: random.Random) -> str:
    return "".join(
        c + (rng.choice(ZERO_WIDTH) if i < len(w) - 1 and rng.random() < 0.5 else "") for i, c in enumerate(w)
    )


def _spaced(w: str, rng: random.Random) -> str:
    return " ".join(w)


def _punctuation(w: str, rng: random.Random) -> str:
    sep = rng.choice(SEPARATORS[1:])
    return sep.join(w)


def _repeat(w: str, rng: random.Random) -> str:
    vowels = [i for i, c in enumerate(w) if c.lower() in "aeiouy"] or [len(w) - 1]
    i = rng.choice(vowels)
    return w[:i] + w[i] * rng.randint(3, 7) + w[i + 1 :]


_FUNCS: dict[str, Callable[[str, random.Random], str]] = {
    "leet": _leet,
    "homoglyph": _homoglyph,
    "zero_width": _zero_width,
    "spaced": _spaced,
    "punctuation": _punctuation,
    "repeat": _repeat,
}


def evade(text: str, rng: random.Random, word_prob: float = 0.5, techniques: tuple[str, ...] = TECHNIQUES) -> str:
    """Rewrite a random subset of the words (3+ letters) of `text` with random techniques."""

    def sub(m: re.Match[str]) -> str:
        if rng.random() >= word_prob:
            return m.group(0)
        return _FUNCS[rng.choice(techniques)](m.group(0), rng)

    return _WORD.sub(sub, text)


def evasion_suite(texts: list[str], seed: int = 13, word_prob: float = 0.5) -> list[str]:
    """The evaluation rewrite of a whole test set, deterministic for a given seed."""
    rng = random.Random(seed)
    return [evade(t, rng, word_prob) for t in texts]


# ---------------------------------------------------------------------------------------------
# The training augmentation: broader than the suite above on purpose.
#
# The suite (`evade` with `TECHNIQUES`, seed 13) is frozen so its figures stay comparable across
# retrains; training on exactly its tricks taught the model those tricks and little else (a rewrite
# we did not write cost 3.1 points against the suite's 1.9). `augment` draws from more tables and
# mixes tricks inside one word, so the model sees the families, not one spelling of each.
# ---------------------------------------------------------------------------------------------


def _math_alphabets() -> list[dict[str, str]]:
    """Latin letters in Unicode's mathematical alphabets (bold, italic, script, fraktur, ...)."""
    import unicodedata

    styles = (
        "BOLD",
        "ITALIC",
        "BOLD ITALIC",
        "SCRIPT",
        "BOLD SCRIPT",
        "FRAKTUR",
        "DOUBLE-STRUCK",
        "SANS-SERIF",
        "SANS-SERIF BOLD",
        "SANS-SERIF ITALIC",
        "MONOSPACE",
    )
    out = []
    for style in styles:
        table = {}
        for c in "abcdefghijklmnopqrstuvwxyz":
            for case in ("SMALL", "CAPITAL"):
                try:
                    table.setdefault(c, "")
                    table[c] += unicodedata.lookup(f"MATHEMATICAL {style} {case} {c.upper()}")
                except KeyError:
                    pass  # a few letters live in the Letterlike Symbols block instead (ℎ, ℬ)
        out.append({k: v for k, v in table.items() if v})
    return out


_FULLWIDTH = {c: chr(0xFF41 + i) + chr(0xFF21 + i) for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}
_CIRCLED = {c: chr(0x24D0 + i) + chr(0x24B6 + i) for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}
_NEG_SQUARED = {c: chr(0x1F170 + i) for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}  # 🅰 🅱 ...
_SQUARED = {c: chr(0x1F130 + i) for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}
_SMALL_CAPS = {
    "a": "ᴀ",
    "b": "ʙ",
    "c": "ᴄ",
    "d": "ᴅ",
    "e": "ᴇ",
    "f": "ꜰ",
    "g": "ɢ",
    "h": "ʜ",
    "i": "ɪ",
    "j": "ᴊ",
    "k": "ᴋ",
    "l": "ʟ",
    "m": "ᴍ",
    "n": "ɴ",
    "o": "ᴏ",
    "p": "ᴘ",
    "r": "ʀ",
    "s": "ꜱ",
    "t": "ᴛ",
    "u": "ᴜ",
    "v": "ᴠ",
    "w": "ᴡ",
    "y": "ʏ",
    "z": "ᴢ",
}
_CYRILLIC_GREEK = {
    "a": "аα",
    "b": "ЬβВ",
    "c": "сϲС",
    "e": "еεЕ",
    "h": "һНΗ",
    "i": "іιΙ",
    "j": "ј",
    "k": "кκК",
    "m": "мМΜ",
    "n": "пηΝ",
    "o": "оοОΟσ",
    "p": "рρР",
    "s": "ѕЅ",
    "t": "тτТΤ",
    "u": "υ",
    "v": "ν",
    "x": "хχХ",
    "y": "уγУ",
    "w": "ω",
    "z": "Ζ",
}
_DIACRITIC = {
    "a": "àáâäãåā",
    "c": "çć",
    "e": "èéêëē",
    "i": "ìíîïī",
    "n": "ñń",
    "o": "òóôöõøō",
    "u": "ùúûüū",
    "s": "śšş",
    "y": "ýÿ",
    "z": "žźż",
    "l": "ł",
    "d": "đ",
}
_SYMBOLS = {
    "a": "@4∆Λ🅰",
    "b": "8ß🅱",
    "c": "(¢©",
    "e": "3€£",
    "g": "96",
    "i": "1!|",
    "l": "1|£",
    "o": "0°()⭕🅾",
    "s": "$5§",
    "t": "7+",
    "x": "×❌",
    "z": "2",
}
_HOMOGLYPH_TABLES: list[dict[str, str]] = [
    HOMOGLYPHS,
    _FULLWIDTH,
    _CIRCLED,
    _NEG_SQUARED,
    _SQUARED,
    _SMALL_CAPS,
    _CYRILLIC_GREEK,
    _DIACRITIC,
    *_math_alphabets(),
]
AUG_SEPARATORS = (".", "-", "_", "*", "~", "+", "/", "|", " ", "·", " . ", "\u200b")
_COMBINING = [chr(c) for c in range(0x0300, 0x0370)]


def _sub_letters(w: str, rng: random.Random, table: dict[str, str], p: float) -> str:
    out = [rng.choice(table[c.lower()]) if c.lower() in table and rng.random() < p else c for c in w]
    return "".join(out)


def _aug_homoglyph(w: str, rng: random.Random) -> str:
    """One table for the whole word (as a font trick would) or a mix of tables letter by letter."""
    if rng.random() < 0.5:
        return _sub_letters(w, rng, rng.choice(_HOMOGLYPH_TABLES), rng.choice((0.5, 1.0)))
    return "".join(_sub_letters(c, rng, rng.choice(_HOMOGLYPH_TABLES), 0.6) for c in w)


def _aug_symbol(w: str, rng: random.Random) -> str:
    return _sub_letters(w, rng, _SYMBOLS if rng.random() < 0.7 else LEET, rng.choice((0.4, 0.7, 1.0)))


def _aug_separator(w: str, rng: random.Random) -> str:
    sep = rng.choice(AUG_SEPARATORS)
    if rng.random() < 0.6 or len(w) < 2:
        return sep.join(w)
    cut = rng.randint(1, len(w) - 1)  # split once, inside the word: "stu.pid"
    return w[:cut] + sep + w[cut:]


def _aug_mask(w: str, rng: random.Random) -> str:
    """Vowels (or all inner letters) masked, as people self-censor: "f*ck", "b***h", "sh#t"."""
    if len(w) < 3:
        return w
    mark = rng.choice("**#%@-_")
    if rng.random() < 0.7:
        return w[0] + "".join(mark if c.lower() in "aeiou" else c for c in w[1:-1]) + w[-1]
    return w[0] + mark * (len(w) - 2) + w[-1]


def _aug_marks(w: str, rng: random.Random) -> str:
    return "".join(c + "".join(rng.choice(_COMBINING) for _ in range(rng.randint(0, 2))) for c in w)


def _aug_case(w: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in w)


def _aug_typo(w: str, rng: random.Random) -> str:
    """A dropped, doubled or swapped inner letter ("idoit", "stupdi"), which no normaliser undoes."""
    if len(w) < 4:
        return w
    i = rng.randint(1, len(w) - 2)
    kind = rng.randrange(3)
    if kind == 0:
        return w[:i] + w[i + 1 :]
    if kind == 1:
        return w[:i] + w[i] * 2 + w[i:]
    return w[:i] + w[i + 1] + w[i] + w[i + 2 :]


_CHAR_TRICKS: dict[str, Callable[[str, random.Random], str]] = {
    "homoglyph": _aug_homoglyph,
    "symbol": _aug_symbol,
    "case": _aug_case,
    "repeat": _repeat,
    "typo": _aug_typo,
    "mask": _aug_mask,
}
_GAP_TRICKS: dict[str, Callable[[str, random.Random], str]] = {
    "separator": _aug_separator,
    "zero_width": _zero_width,
    "marks": _aug_marks,
}
AUG_TECHNIQUES = (*_CHAR_TRICKS, *_GAP_TRICKS, *TECHNIQUES)


def _augment_word(w: str, rng: random.Random) -> str:
    """One word rewritten by one trick, or by a mixture: letter tricks first, then gaps between letters."""
    n = rng.choices((1, 2, 3), weights=(0.5, 0.35, 0.15))[0]
    if n == 1:
        name = rng.choice(AUG_TECHNIQUES)
        fn = _CHAR_TRICKS.get(name) or _GAP_TRICKS.get(name) or _FUNCS[name]
        return fn(w, rng)
    chars = rng.sample(list(_CHAR_TRICKS), k=min(n - 1, 2))
    for name in chars:
        w = _CHAR_TRICKS[name](w, rng)
    if rng.random() < 0.6:
        w = _GAP_TRICKS[rng.choice(list(_GAP_TRICKS))](w, rng)
    return w


def _partial(w: str, rng: random.Random) -> str:
    """Rewrite only a stretch of the word (the rest stays plain): "idi0т"."""
    a = rng.randint(0, len(w) - 3)
    b = rng.randint(a + 3, len(w))
    return w[:a] + _augment_word(w[a:b], rng) + w[b:]


def augment(text: str, rng: random.Random, word_prob: float = 0.4) -> str:
    """Training-time rewrite: each 3+ letter word, with a per-text rate drawn around `word_prob`,
    becomes a whole-word or partial rewrite by one trick or a mixture of them."""
    rate = min(1.0, max(0.1, rng.uniform(0.5, 1.5) * word_prob))

    def sub(m: re.Match[str]) -> str:
        w = m.group(0)
        if rng.random() >= rate:
            return w
        return _partial(w, rng) if len(w) >= 5 and rng.random() < 0.3 else _augment_word(w, rng)

    return _WORD.sub(sub, text)
