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
    "a": "аɑａ", "c": "сϲｃ", "e": "еｅ", "i": "іｉ", "o": "оοｏ", "p": "рｐ", "s": "ѕｓ",
    "x": "хｘ", "y": "уｙ", "k": "кｋ", "h": "һｈ", "n": "ｎ", "u": "ｕ", "t": "ｔ", "d": "ԁｄ",
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
    return "".join(rng.choice(HOMOGLYPHS[c.lower()]) if c.lower() in HOMOGLYPHS and rng.random() < 0.6 else c
                   for c in w)


def _zero_width(w: str, rng: random.Random) -> str:
    return "".join(c + (rng.choice(ZERO_WIDTH) if i < len(w) - 1 and rng.random() < 0.5 else "")
                   for i, c in enumerate(w))


def _spaced(w: str, rng: random.Random) -> str:
    return " ".join(w)


def _punctuation(w: str, rng: random.Random) -> str:
    sep = rng.choice(SEPARATORS[1:])
    return sep.join(w)


def _repeat(w: str, rng: random.Random) -> str:
    vowels = [i for i, c in enumerate(w) if c.lower() in "aeiouy"] or [len(w) - 1]
    i = rng.choice(vowels)
    return w[:i] + w[i] * rng.randint(3, 7) + w[i + 1:]


_FUNCS: dict[str, Callable[[str, random.Random], str]] = {
    "leet": _leet, "homoglyph": _homoglyph, "zero_width": _zero_width,
    "spaced": _spaced, "punctuation": _punctuation, "repeat": _repeat,
}


def evade(text: str, rng: random.Random, word_prob: float = 0.5,
          techniques: tuple[str, ...] = TECHNIQUES) -> str:
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
