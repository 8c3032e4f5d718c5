"""Unscored categories are null with a reason; self_harm leads to `support`, never to punishment."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from pipeline.ensemble import combine
from pipeline.policy import PLATFORM_DEFAULT, GuildPolicy, ThresholdRule, decide
from pipeline.service import ModerationService
from pipeline.settings import Settings
from pipeline.sinks.webhook import webhook_body
from pipeline.types import Action, Author, Decision, Message, Signal


def sig(name: str, scores: dict[str, float], **kw: object) -> Signal:
    return Signal(scorer=name, version="1", scores=scores, **kw)  # type: ignore[arg-type]


def test_a_failed_scorer_is_named_as_the_reason_its_categories_have_no_score() -> None:
    coverage = {"text": ("toxicity", "self_harm"), "links": ("scam",)}
    r = combine([sig("links", {"scam": 0.0}), Signal(scorer="text", version="1", error="boom")], coverage=coverage)
    assert r.scores["self_harm"] is None and r.scores["scam"] == 0.0
    assert r.unscored["self_harm"] == "not scored: text unavailable"
    assert r.unscored["violence"] == "not scored: no configured scorer covers this category"


def test_a_null_score_fires_no_rule_and_survives_the_decision_model() -> None:
    r = combine([sig("text", {"toxicity": 0.1})])
    action, reasons = decide(r, Message(text="x"), PLATFORM_DEFAULT)
    assert action is Action.ALLOW and reasons == []
    d = Decision(id="d", message_id="m", action=action, scores=r.scores, unscored=r.unscored)
    wire = json.loads(d.model_dump_json())
    assert wire["scores"]["violence"] is None and "violence" in wire["unscored"]


def test_the_service_reports_categories_no_scorer_covers() -> None:
    svc = ModerationService.from_names(["rules"])
    d = svc.decide_batch("t", [(Message(text="hello there"), None)])[0]
    assert d.scores["self_harm"] is None and d.unscored["self_harm"].startswith("not scored")
    # the word lists checked toxicity without a match: still no model score, and the reason says so
    assert d.scores["toxicity"] is None and "rules" in d.unscored["toxicity"]


def test_self_harm_alone_leads_to_support_and_support_sits_between_flag_and_hold() -> None:
    assert Action.FLAG.severity < Action.SUPPORT.severity < Action.HOLD_FOR_REVIEW.severity
    r = combine([sig("text", {"self_harm": 0.97, "toxicity": 0.6})])
    action, reasons = decide(r, Message(text="x"), PLATFORM_DEFAULT)
    assert action is Action.SUPPORT
    assert any(x.category == "self_harm" and x.action is Action.SUPPORT for x in reasons)
    # a threat in the same message still wins, and the support reason stays
    r = combine([sig("text", {"self_harm": 0.97, "violence": 0.99})])
    action, reasons = decide(r, Message(text="x"), PLATFORM_DEFAULT)
    assert action is Action.BLOCK and any(x.action is Action.SUPPORT for x in reasons)


def test_no_policy_may_punish_self_harm_and_an_exempt_author_still_gets_support() -> None:
    for harsh in (Action.BLOCK, Action.TIMEOUT_AUTHOR):
        with pytest.raises(ValidationError, match="author's safety"):
            GuildPolicy(thresholds={"self_harm": [ThresholdRule(threshold=0.5, action=harsh)]})
    # a policy stored before the rule (built without validation) is capped at decision time
    old = GuildPolicy.model_construct(thresholds={"self_harm": [ThresholdRule(threshold=0.5, action=Action.BLOCK)]},
                                      exempt_roles=[], exempt_channels=[], on_scorer_failure="fail_open")
    action, _ = decide(combine([sig("text", {"self_harm": 0.9})]), Message(text="x"), old)
    assert action is Action.HOLD_FOR_REVIEW
    policy = PLATFORM_DEFAULT.model_copy(update={"exempt_roles": ["mod"]})
    mod = Message(text="x", author=Author(id="u", roles=["mod"]))
    action, reasons = decide(combine([sig("text", {"self_harm": 0.9})]), mod, policy)
    assert action is Action.SUPPORT and "exempt role" in reasons[-1].text


def test_the_webhook_of_a_support_decision_carries_the_resources_template() -> None:
    resources = Settings().support_resources
    assert "findahelpline.com" in resources
    support = {"id": "d", "revision": 1, "action": "support", "reasons": []}
    body = json.loads(webhook_body(support, None, resources))
    assert body["support"] == {"category": "self_harm", "resources": resources}
    held = {"id": "d", "revision": 1, "action": "hold_for_review", "reasons": [{"action": "support"}]}
    assert json.loads(webhook_body(held, None, resources))["support"]["resources"] == resources
    plain = {"id": "d", "revision": 1, "action": "block", "reasons": [{"action": "block"}]}
    assert "support" not in json.loads(webhook_body(plain, None, resources))
    custom = Settings(support_resources="Call 116 123 (Samaritans, UK)").support_resources
    assert json.loads(webhook_body(support, None, custom))["support"]["resources"] == "Call 116 123 (Samaritans, UK)"
