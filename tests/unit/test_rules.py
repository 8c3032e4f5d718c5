"""RulesScorer: AutoMod-style word lists after evasion-aware normalisation."""

from __future__ import annotations

import time

import pytest

from pipeline.guilds import EMPTY_LISTS, GuildLists
from pipeline.scorers.base import ItemContext, ScoringItem
from pipeline.scorers.rules import RulesScorer, validate_keyword, validate_lists, validate_regex
from pipeline.types import Attachment, Message, Signal

LISTS = GuildLists(
    keywords={
        "toxicity": ("idiot", "fuck", "ass", "moron*", "*tard", "*shit*"),
        "harassment": ("kill yourself",),
        "hate": ("nigger",),
    },
    regexes={"spam": (r"discord\.gg/\w+", r"free\s+nitro")},
    version=1,
)


def run(text: str, lists: GuildLists = LISTS, scorer: RulesScorer | None = None) -> Signal:
    item = ScoringItem(Message(text=text), lists=lists)
    return (scorer or RulesScorer()).score([item])[0]


def hit(text: str, lists: GuildLists = LISTS) -> set[str]:
    return {c for c, s in run(text, lists).scores.items() if s == 1.0}


# --- wildcard semantics -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("you idiot", {"toxicity"}),
        ("idiots", set()),  # whole word only
        ("morons everywhere", {"toxicity"}),  # moron* : prefix
        ("oxymoron", set()),
        ("what a retard", {"toxicity"}),  # *tard : suffix
        ("tardy", set()),
        ("bullshitter", {"toxicity"}),  # *shit* : anywhere
        ("kill yourself", {"harassment"}),  # phrase
        ("kill, yourself", {"harassment"}),
        ("killyourself", {"harassment"}),
        ("kill time yourself", set()),
    ],
)
def test_wildcards(text: str, expected: set[str]) -> None:
    assert hit(text) == expected


@pytest.mark.parametrize(
    "text",
    ["the class assistant", "as far as I know", "passion", "Scunthorpe", "Niger is a country", "bass guitar"],
)
def test_no_scunthorpe_false_positives(text: str) -> None:
    assert hit(text) == set()


def test_allowlist_suppresses_matches_inside_allowed_words() -> None:
    lists = GuildLists(keywords={"toxicity": ("*ass*",)}, allowlist=("class*", "assistant", "*pass*"))
    assert hit("the classes need an assistant to pass", lists) == set()
    assert hit("badass", lists) == {"toxicity"}
    assert hit("class act, you ass", lists) == {"toxicity"}
    sig = run("class act, you ass", lists)
    assert sig.evidence[0].span == (15, 18)


def test_allowlist_phrase_covers_a_blocked_word_inside_it() -> None:
    lists = GuildLists(keywords={"violence": ("kill",)}, allowlist=("kill time",))
    assert hit("let's kill time", lists) == set()
    assert hit("i will kill you", lists) == {"violence"}


def test_allowlist_applies_to_regexes() -> None:
    lists = GuildLists(regexes={"spam": (r"nitro",)}, allowlist=("nitrogen",))
    assert hit("liquid nitrogen", lists) == set()
    assert hit("free nitro", lists) == {"spam"}


# --- regexes ----------------------------------------------------------------------------------


def test_regexes_are_per_category_and_case_insensitive() -> None:
    assert hit("FREE   NITRO here") == {"spam"}
    # normalisation drops the dot in "discord.gg", so the raw text is tried as well
    sig = run("join discord.gg/abc123 now")
    assert sig.scores["spam"] == 1.0
    assert sig.evidence[0].span == (5, 22)


def test_regexes_see_through_evasion_too() -> None:
    assert hit("fr3e n1tro") == {"spam"}


# --- evasion ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "ＩＤＩＯＴ",  # NFKC
        "іdіot",  # Cyrillic
        "Ιdiot",  # Greek capital iota
        "id\u200biot",  # zero-width space
        "i d i o t",  # spaced out
        "i.d.i.o.t",  # punctuation inside
        "1d10t",  # leetspeak
        "idiooooot",  # repeated letters
        "you idiot!!!",  # punctuation after
        "𝐢𝐝𝐢𝐨𝐭",
        "ídiòt",
    ],
)
def test_every_evasion_trick_is_caught(text: str) -> None:
    assert hit(text) == {"toxicity"}


def test_repeated_letters_in_term_need_at_least_as_many_in_text() -> None:
    assert hit("fuuuuuuck") == {"toxicity"}
    assert hit("a$$") == {"toxicity"}
    assert hit("asss") == {"toxicity"}
    assert hit("as") == set()  # squeezing both sides would call this "ass"


# --- scores, evidence, no lists ---------------------------------------------------------------


def test_scores_only_for_categories_with_lists() -> None:
    sig = run("hello there")
    assert sig.scores == {"toxicity": 0.0, "harassment": 0.0, "hate": 0.0, "spam": 0.0}
    assert not sig.definitive and sig.evidence == []
    sig = run("you idiot")
    assert sig.scores["toxicity"] == 1.0 and sig.definitive


def test_no_lists_means_empty_scores_not_an_error() -> None:
    sig = run("you idiot", EMPTY_LISTS)
    assert sig.ok and sig.scores == {} and not sig.definitive


def test_attachment_only_message_has_no_scores() -> None:
    msg = Message(attachments=[Attachment(url="https://cdn.example/x.png")])
    sig = RulesScorer().score([ScoringItem(msg, lists=LISTS, context=ItemContext(normalized_text=""))])[0]
    assert sig.ok and sig.scores == {}


def test_missing_normalized_text_is_computed() -> None:
    empty = ItemContext(normalized_text="")  # as if normalisation had produced nothing
    sig = RulesScorer().score([ScoringItem(Message(text="you 1d10t"), lists=LISTS, context=empty)])[0]
    assert sig.scores["toxicity"] == 1.0


def test_evidence_span_points_into_the_original_text() -> None:
    text = "well, you іd1ot!!!"
    sig = run(text)
    (ev,) = sig.evidence
    assert ev.span is not None and text[ev.span[0] : ev.span[1]] == "іd1ot"
    assert ev.detail == 'matched blocked term "idiot" (as "іd1ot")'


def test_evidence_is_readable(golden) -> None:  # type: ignore[no-untyped-def]
    cases = [
        "you іd1ot",
        "ＩＤＩＯＴ",
        "f u c k off",
        "fuuuuuck",
        "id\u200biot",
        "you idiot",
        "MORONS",
        "bullshitter",
        "kill, yourself",
        "join discord.gg/abc",
        "FREE   nitro",
        "𝐢𝐝𝐢𝐨𝐭 and a moron",
    ]
    out = {}
    for text in cases:
        sig = run(text)
        out[text] = [
            {"category": e.category, "detail": e.detail, "span": list(e.span) if e.span else None} for e in sig.evidence
        ]
        for e in sig.evidence:
            assert e.span is not None
    golden("rules_evidence", out)


# --- caching and speed ------------------------------------------------------------------------


def test_matchers_are_compiled_once_per_lists() -> None:
    scorer = RulesScorer()
    m1 = scorer.matcher_for(LISTS)
    assert scorer.matcher_for(LISTS) is m1
    equal = GuildLists(keywords=dict(LISTS.keywords), regexes=dict(LISTS.regexes), version=1)
    assert scorer.matcher_for(equal) is m1  # same content, new object: no recompile
    changed = GuildLists(keywords={"toxicity": ("other",)}, version=2)
    assert scorer.matcher_for(changed) is not m1


def test_big_list_on_long_text_is_fast() -> None:
    words = [f"badword{i:04d}x" for i in range(1000)]
    lists = GuildLists(keywords={"toxicity": tuple(words)}, regexes={"spam": (r"buy\s+now",)})
    text = ("lorem ipsum dolor sit amet " * 200)[:3990] + " idiot"
    scorer = RulesScorer()
    run(text, lists, scorer)  # compile
    started = time.perf_counter()
    for _ in range(5):
        sig = run(text, lists, scorer)
    per_message_ms = (time.perf_counter() - started) * 1000 / 5
    assert sig.scores == {"toxicity": 0.0, "spam": 0.0}
    assert per_message_ms < 50, per_message_ms


# --- validation at policy-save time -----------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a+)+$", "nested quantifiers"),
        (r"(\w*\s)*x", "nested quantifiers"),
        ("(?:a+|b)*c", "nested quantifiers"),
        ("(a?){5}", "nested quantifiers"),
        ("x" * 300, "limit is 260"),
        ("", "empty"),
        ("a*", "matches empty text"),
        ("(abc", "not valid: missing )"),
        ("(?=x)a", "lookaround and backreferences are not supported"),
        (r"(a)\1", "lookaround and backreferences are not supported"),
        (".{1000}", "too complex"),
    ],
)
def test_bad_regexes_are_refused_with_a_reason(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        validate_regex(pattern)


@pytest.mark.parametrize(
    "pattern",
    [r"free\s+nitro", r"(?:https?://)?discord\.gg/\w+", r"(\d{3}[- ]){2}\d{4}", r"\p{Greek}+", r"(ab)+c"],
)
def test_good_regexes_pass(pattern: str) -> None:
    validate_regex(pattern)


def test_regex_matching_is_linear_even_for_evil_patterns() -> None:
    # Refused at save time, but if one slips into stored lists RE2 still runs it in linear time.
    lists = GuildLists(regexes={"spam": ("(a+)+$",)})
    sig = run("a" * 3999 + "!", lists)
    assert sig.ok and sig.scores == {} and sig.latency_ms < 1000  # skipped with a warning


def test_keyword_validation() -> None:
    validate_keyword("moron*")
    for bad, reason in [("*", "empty"), ("a*b", "wildcard only"), ("x" * 61, "limit is 60"), ("!!", "no letters")]:
        with pytest.raises(ValueError, match=reason):
            validate_keyword(bad)


def test_list_validation_names_the_category() -> None:
    validate_lists(LISTS)
    with pytest.raises(ValueError, match="unknown category 'insults'"):
        validate_lists(GuildLists(keywords={"insults": ("x",)}))
    with pytest.raises(ValueError, match=r"regexes\[spam\].*nested"):
        validate_lists(GuildLists(regexes={"spam": ("(a+)+",)}))
