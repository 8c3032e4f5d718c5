"""Ensemble and policy: what a guild admin would notice in decisions."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.ensemble import EnsembleConfig, combine
from pipeline.policy import PLATFORM_DEFAULT, GuildPolicy, ThresholdRule, decide
from pipeline.taxonomy import CATEGORY_NAMES
from pipeline.types import Action, Author, Evidence, Message, Signal


def sig(name: str, scores: dict[str, float], **kw: object) -> Signal:
    return Signal(scorer=name, version="1", scores=scores, **kw)  # type: ignore[arg-type]


def test_weighted_mean_renormalises_over_present_signals() -> None:
    cfg = EnsembleConfig(weights={"a": {"toxicity": 3.0}, "b": {"toxicity": 1.0}})
    r = combine([sig("a", {"toxicity": 0.8}), sig("b", {"toxicity": 0.4})], cfg)
    assert r.scores["toxicity"] == pytest.approx(0.7)
    # b failed: a's score stands alone instead of being averaged with a fake zero
    r = combine([sig("a", {"toxicity": 0.8}), Signal(scorer="b", version="1", error="timeout")], cfg)
    assert r.scores["toxicity"] == pytest.approx(0.8)
    assert r.missing == ["b"]


def test_every_category_is_reported_and_uncovered_ones_are_named() -> None:
    r = combine([sig("a", {"spam": 0.2})])
    assert set(r.scores) == set(CATEGORY_NAMES)
    assert "toxicity" in r.uncovered and "spam" not in r.uncovered
    # Not checked is null with a reason, never a 0.0 that reads as "checked and clean".
    assert r.scores["toxicity"] is None and r.scores["spam"] == 0.2
    assert set(r.unscored) == set(r.uncovered) and "no configured scorer" in r.unscored["toxicity"]


def test_definitive_list_hit_is_a_floor_and_a_miss_pulls_nothing_down() -> None:
    hit = sig(
        "rules",
        {"toxicity": 1.0},
        definitive=True,
        evidence=[Evidence(category="toxicity", detail='matched blocked term "idiot"')],
    )
    r = combine([sig("text", {"toxicity": 0.2}), hit])
    assert r.scores["toxicity"] == 1.0
    miss = sig("rules", {"toxicity": 0.0}, definitive=True)
    r = combine([sig("text", {"toxicity": 0.6}), miss])
    assert r.scores["toxicity"] == pytest.approx(0.6)


def test_zero_weight_excludes_a_scorer_from_a_category() -> None:
    cfg = EnsembleConfig(weights={"b": {"toxicity": 0.0}})
    r = combine([sig("a", {"toxicity": 0.9}), sig("b", {"toxicity": 0.1})], cfg)
    assert r.scores["toxicity"] == pytest.approx(0.9)


def test_most_severe_action_wins_with_readable_reasons(golden) -> None:  # type: ignore[no-untyped-def]
    hit = sig(
        "rules",
        {"toxicity": 1.0},
        definitive=True,
        evidence=[Evidence(category="toxicity", detail='matched blocked term "idiot" (as "1d10t")')],
    )
    r = combine(
        [
            sig("text", {"toxicity": 0.85, "hate": 0.75, "spam": 0.1}),
            hit,
            sig(
                "links",
                {"scam": 1.0},
                definitive=True,
                evidence=[Evidence(category="scam", detail='known phishing domain "free-nitro.example"')],
            ),
        ]
    )
    action, reasons = decide(r, Message(text="x"), PLATFORM_DEFAULT)
    assert action is Action.TIMEOUT_AUTHOR
    golden("reasons_platform_default", [x.model_dump(mode="json") for x in reasons])


def test_fail_closed_holds_for_review_and_fail_open_says_what_was_missing(golden) -> None:  # type: ignore[no-untyped-def]
    r = combine([sig("rules", {"toxicity": 0.0}, definitive=True), Signal(scorer="text", version="1", error="boom")])
    action, reasons = decide(r, Message(text="x"), PLATFORM_DEFAULT)
    assert action is Action.HOLD_FOR_REVIEW
    open_policy = PLATFORM_DEFAULT.model_copy(update={"on_scorer_failure": "fail_open"})
    action2, reasons2 = decide(r, Message(text="x"), open_policy)
    assert action2 is Action.ALLOW
    assert "text" in reasons2[0].text
    golden(
        "reasons_scorer_missing", {"fail_closed": [x.text for x in reasons], "fail_open": [x.text for x in reasons2]}
    )


def test_exempt_roles_and_channels_allow_but_keep_the_reason() -> None:
    r = combine([sig("text", {"toxicity": 0.99})])
    policy = GuildPolicy(
        thresholds={"toxicity": [ThresholdRule(threshold=0.5, action=Action.BLOCK)]},
        exempt_roles=["mod"],
        exempt_channels=["staff"],
    )
    mod = Message(text="x", author=Author(id="u", roles=["mod"]))
    action, reasons = decide(r, mod, policy)
    assert action is Action.ALLOW and "exempt role 'mod'" in reasons[-1].text and "block" in reasons[-1].text
    action, _ = decide(r, Message(text="x", channel_id="staff"), policy)
    assert action is Action.ALLOW
    action, _ = decide(r, Message(text="x", channel_id="general"), policy)
    assert action is Action.BLOCK


def test_policy_rejects_unknown_categories_and_inverted_thresholds() -> None:
    with pytest.raises(ValidationError, match="unknown category"):
        GuildPolicy(thresholds={"nsfw": [ThresholdRule(threshold=0.5, action=Action.FLAG)]})
    with pytest.raises(ValidationError, match="milder action"):
        GuildPolicy(
            thresholds={
                "toxicity": [
                    ThresholdRule(threshold=0.5, action=Action.BLOCK),
                    ThresholdRule(threshold=0.9, action=Action.FLAG),
                ]
            }
        )
