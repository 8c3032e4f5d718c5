"""A held-out evasion rewriter: tricks and tables that training never draws from.

Why a second rewriter: the evasion suite (`training.text.evasion.evasion_suite`) uses the same
tricks as the training augmentation once did, so its drop measures how well the model learnt those
tricks, not how it copes with a rewrite someone else wrote (the issue's own rewrite cost 3.1 points
against the suite's 1.9). This module is never imported by training (`tests/unit` checks that
`training.text.train` does not reach it), and its tables were written to differ from both the suite
and `training.text.evasion.augment`:

- look-alike letters from scripts and styles the augmentation does not use (Cherokee, Armenian,
  Lisu, modifier/superscript letters, parenthesised letters, mathematical bold fraktur and sans-serif
  bold italic);
- multi-character leetspeak ("|-|" for h, "|<" for k, "()" for o, "vv" for w, "ph" for f);
- emoji and symbols between or instead of letters ("f🔥u🔥c🔥k", "ⓘ" is not used: regional
  indicator letters "🇮" instead);
- other separators ("•", ":", "'", "^", "—", "…", a newline), a word split once by a space;
- self-censoring with other marks ("fxck", "b•tch"), dropped vowels ("stpd");
- one or two tricks per word, on part of a word or all of it.

Everything draws from `random.Random(seed)`: the rewrite of a test set is the same run to run.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable

HELDOUT_SEED = 29
HELDOUT_WORD_PROB = 0.5

_ABC = "abcdefghijklmnopqrstuvwxyz"
_CHEROKEE = {"a": "Ꭺ", "b": "Ᏼ", "c": "Ꮯ", "d": "Ꭰ", "e": "Ꭼ", "g": "Ꮐ", "h": "Ꮋ", "i": "Ꭵ", "j": "Ꭻ", "k": "Ꮶ",
             "l": "Ꮮ", "m": "Ꮇ", "p": "Ꮲ", "r": "Ꮢ", "s": "Ꮪ", "t": "Ꮤ", "v": "Ꮩ", "w": "Ꮃ", "z": "Ꮓ"}  # fmt: skip
_ARMENIAN = {"d": "ժ", "g": "ց", "h": "հ", "n": "ո", "o": "օ", "q": "զ", "u": "ս", "w": "ա", "j": "յ"}
_LISU = {"a": "ꓮ", "b": "ꓐ", "c": "ꓚ", "d": "ꓓ", "e": "ꓰ", "f": "ꓝ", "g": "ꓖ", "h": "ꓧ", "i": "ꓲ", "j": "ꓙ",
         "k": "ꓗ", "l": "ꓡ", "m": "ꓟ", "n": "ꓠ", "o": "ꓳ", "p": "ꓑ", "r": "ꓣ", "s": "ꓢ", "t": "ꓔ", "u": "ꓴ",
         "v": "ꓦ", "w": "ꓪ", "x": "ꓫ", "y": "ꓬ", "z": "ꓜ"}  # fmt: skip
_SUPERSCRIPT = {"a": "ᵃ", "b": "ᵇ", "c": "ᶜ", "d": "ᵈ", "e": "ᵉ", "f": "ᶠ", "g": "ᵍ", "h": "ʰ", "i": "ⁱ", "j": "ʲ",
                "k": "ᵏ", "l": "ˡ", "m": "ᵐ", "n": "ⁿ", "o": "ᵒ", "p": "ᵖ", "r": "ʳ", "s": "ˢ", "t": "ᵗ", "u": "ᵘ",
                "v": "ᵛ", "w": "ʷ", "x": "ˣ", "y": "ʸ", "z": "ᶻ"}  # fmt: skip
_PARENTHESIZED = {c: chr(0x249C + i) for i, c in enumerate(_ABC)}  # ⒜ ⒝ ...
_REGIONAL = {c: chr(0x1F1E6 + i) for i, c in enumerate(_ABC)}  # 🇦 🇧 ... (a pair of them reads as a flag)


def _math(style: str) -> dict[str, str]:
    out = {}
    for c in _ABC:
        try:
            out[c] = unicodedata.lookup(f"MATHEMATICAL {style} SMALL {c.upper()}")
        except KeyError:
            continue
    return out


_TABLES: list[dict[str, str]] = [
    _CHEROKEE,
    _ARMENIAN,
    _LISU,
    _SUPERSCRIPT,
    _PARENTHESIZED,
    _math("BOLD FRAKTUR"),
    _math("SANS-SERIF BOLD ITALIC"),
]
_MULTI_LEET = {"a": ["/\\", "/-\\", "^"], "b": ["|3", "13"], "c": ["<", "["], "d": ["|)", "cl"], "e": ["[-", "&"],
               "f": ["ph", "|="], "g": ["(_+", "&"], "h": ["|-|", "#", "}{"], "i": ["][", "¡"], "k": ["|<", "|{"],
               "l": ["|_", "£"], "m": ["|\\/|", "/\\/\\"], "n": ["|\\|", "/\\/"], "o": ["()", "<>", "Ø"],
               "r": ["|2", "®"], "s": ["§", "z"], "t": ["+", "†"], "u": ["|_|", "µ"], "v": ["\\/"],
               "w": ["vv", "\\/\\/"], "x": ["><", "}{"], "y": ["`/", "¥"]}  # fmt: skip
_EMOJI = ("🔥", "💀", "😂", "👉", "✨", "💩", "🤬", "⭐", "➖", "🙃")
_SEPARATORS = ("•", ":", "'", "^", "—", "…", "\n", "  ", "\\", ",")
_MASKS = ("x", "•", "$", "#", "?", "…")


def _look_alike(w: str, rng: random.Random) -> str:
    table = rng.choice(_TABLES)
    p = rng.choice((0.5, 1.0))
    return "".join(table[c.lower()] if c.lower() in table and rng.random() < p else c for c in w)


def _multi_leet(w: str, rng: random.Random) -> str:
    out = [rng.choice(_MULTI_LEET[c.lower()]) if c.lower() in _MULTI_LEET and rng.random() < 0.5 else c for c in w]
    if out == list(w):
        i = rng.randrange(len(w))
        out[i] = rng.choice(_MULTI_LEET.get(w[i].lower(), [w[i]]))
    return "".join(out)


def _regional(w: str, rng: random.Random) -> str:
    return "".join(_REGIONAL.get(c.lower(), c) for c in w)


def _emoji_between(w: str, rng: random.Random) -> str:
    return rng.choice(_EMOJI).join(w)


def _emoji_for_vowel(w: str, rng: random.Random) -> str:
    e = rng.choice(_EMOJI)
    return w[0] + "".join(e if c.lower() in "aeiou" else c for c in w[1:])


def _separator(w: str, rng: random.Random) -> str:
    return rng.choice(_SEPARATORS).join(w)


def _split_once(w: str, rng: random.Random) -> str:
    i = rng.randint(1, len(w) - 1)
    return w[:i] + " " + w[i:]


def _mask(w: str, rng: random.Random) -> str:
    m = rng.choice(_MASKS)
    inner = [i for i in range(1, len(w) - 1) if w[i].lower() in "aeiou"] or list(range(1, len(w) - 1))
    if not inner:
        return w
    i = rng.choice(inner)
    return w[:i] + m + w[i + 1 :]


def _drop_vowels(w: str, rng: random.Random) -> str:
    kept = w[0] + "".join(c for c in w[1:] if c.lower() not in "aeiou")
    return kept if len(kept) >= 2 else w


def _alternate_case(w: str, rng: random.Random) -> str:
    start = rng.randrange(2)
    return "".join(c.upper() if (i + start) % 2 else c.lower() for i, c in enumerate(w))


TRICKS: dict[str, Callable[[str, random.Random], str]] = {
    "look_alike": _look_alike,
    "multi_leet": _multi_leet,
    "regional_indicator": _regional,
    "emoji_between": _emoji_between,
    "emoji_for_vowel": _emoji_for_vowel,
    "separator": _separator,
    "split_once": _split_once,
    "mask": _mask,
    "drop_vowels": _drop_vowels,
    "alternate_case": _alternate_case,
}
# Letter-for-letter tricks can be followed by one that works between letters; the others stand alone.
_FIRST = ("look_alike", "multi_leet", "mask", "drop_vowels", "alternate_case")
_SECOND = ("separator", "emoji_between", "split_once")
_WORD = re.compile(r"[A-Za-z]{3,}")


def rewrite_word(w: str, rng: random.Random) -> str:
    """One trick, or a letter trick then a gap trick; on the whole word or (a third of the time) a stretch."""
    if len(w) >= 5 and rng.random() < 0.33:
        a = rng.randint(0, len(w) - 3)
        b = rng.randint(a + 3, len(w))
        return w[:a] + rewrite_word(w[a:b], rng) + w[b:]
    if rng.random() < 0.3:
        return TRICKS[rng.choice(_SECOND)](TRICKS[rng.choice(_FIRST)](w, rng), rng)
    return TRICKS[rng.choice(list(TRICKS))](w, rng)


def rewrite(text: str, rng: random.Random, word_prob: float = HELDOUT_WORD_PROB) -> str:
    """Rewrite each word of 3+ letters with probability `word_prob`."""
    return _WORD.sub(lambda m: rewrite_word(m.group(0), rng) if rng.random() < word_prob else m.group(0), text)


def heldout_suite(texts: list[str], seed: int = HELDOUT_SEED, word_prob: float = HELDOUT_WORD_PROB) -> list[str]:
    """The held-out rewrite of a whole test set, deterministic for a given seed."""
    rng = random.Random(seed)
    return [rewrite(t, rng, word_prob) for t in texts]
