"""Guild policies: per-category thresholds mapped to actions, turned into a Decision with reasons.

Pure: `decide()` takes the ensemble result, the message and a policy and returns the action and
the reasons; storage and versioning live in the store. A guild without its own policy gets
`PLATFORM_DEFAULT`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.ensemble import EnsembleResult
from pipeline.taxonomy import CATEGORY_NAMES, parse_category
from pipeline.types import Action, Message, Reason

FailureMode = Literal["fail_open", "fail_closed"]
# self_harm is about the author's safety: on its own it never blocks or times the author out.
SELF_HARM = "self_harm"
SELF_HARM_MAX_ACTION = Action.HOLD_FOR_REVIEW


class ThresholdRule(BaseModel):
    """At or above `threshold`, take `action`."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(ge=0.0, le=1.0, strict=True)  # not true/false or "0.5"
    action: Action


class GuildPolicy(BaseModel):
    """One guild's moderation policy (versioned by the store on every change).

    `on_scorer_failure`: with "fail_closed", a message whose scorers did not all answer is at
    least held for review; with "fail_open" it is decided on the signals present and the decision
    says which were missing. Neither lets a lost signal pass silently.
    """

    model_config = ConfigDict(extra="forbid")

    thresholds: dict[str, list[ThresholdRule]] = Field(
        default_factory=dict, json_schema_extra={"propertyNames": {"enum": list(CATEGORY_NAMES)}}
    )
    # Item limits as for Author.roles and channel ids (pipeline/types.py).
    exempt_roles: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=250)
    exempt_channels: list[Annotated[str, Field(max_length=128)]] = Field(default_factory=list, max_length=500)
    on_scorer_failure: FailureMode = "fail_closed"

    @field_validator("thresholds")
    @classmethod
    def _known_categories(cls, v: dict[str, list[ThresholdRule]]) -> dict[str, list[ThresholdRule]]:
        for category, rules in v.items():
            parse_category(category)
            v[category] = sorted(rules, key=lambda r: r.threshold)
        return v

    @model_validator(mode="after")
    def _self_harm_never_punishes(self) -> GuildPolicy:
        for rule in self.thresholds.get(SELF_HARM, []):
            if rule.action.severity > SELF_HARM_MAX_ACTION.severity:
                raise ValueError(
                    f"{SELF_HARM}: {rule.action.value} is not allowed; self_harm is about the author's safety, so its "
                    f"rules may use at most {SELF_HARM_MAX_ACTION.value} (the platform default is support)")
        return self

    @model_validator(mode="after")
    def _monotonic(self) -> GuildPolicy:
        for category, rules in self.thresholds.items():
            for low, high in zip(rules, rules[1:], strict=False):
                if high.action.severity < low.action.severity:
                    raise ValueError(
                        f"{category}: a higher threshold ({high.threshold}) must not map to a milder action "
                        f"({high.action.value}) than a lower one ({low.threshold} -> {low.action.value})"
                    )
        return self


def _rules(*pairs: tuple[float, Action]) -> list[ThresholdRule]:
    return [ThresholdRule(threshold=t, action=a) for t, a in pairs]


A = Action
PLATFORM_DEFAULT = GuildPolicy(
    thresholds={
        "toxicity": _rules((0.5, A.FLAG), (0.8, A.HOLD_FOR_REVIEW), (0.97, A.BLOCK)),
        "harassment": _rules((0.5, A.FLAG), (0.8, A.HOLD_FOR_REVIEW), (0.97, A.BLOCK)),
        "hate": _rules((0.4, A.FLAG), (0.7, A.HOLD_FOR_REVIEW), (0.95, A.BLOCK)),
        "sexual": _rules((0.5, A.FLAG), (0.8, A.HOLD_FOR_REVIEW), (0.97, A.BLOCK)),
        "violence": _rules((0.5, A.FLAG), (0.7, A.HOLD_FOR_REVIEW), (0.95, A.BLOCK)),
        "self_harm": _rules((0.5, A.SUPPORT)),
        # 1.0 is certain spam: a word-list match, or the behaviour scorer seeing a confident model
        # score on an author's third message in a minute (raids, floods): time the author out.
        "spam": _rules((0.6, A.FLAG), (0.9, A.HOLD_FOR_REVIEW), (0.99, A.BLOCK), (1.0, A.TIMEOUT_AUTHOR)),
        "scam": _rules((0.5, A.HOLD_FOR_REVIEW), (0.8, A.BLOCK), (1.0, A.TIMEOUT_AUTHOR)),
    },
    on_scorer_failure="fail_closed",
)

SOURCE_NAMES = {
    "text": "text model",
    "rules": "word list",
    "links": "link list",
    "behaviour": "behaviour",
    "image_hash": "hash bank",
}


def _source_text(result: EnsembleResult, category: str) -> str:
    parts: list[str] = []
    for scorer, ev in result.evidence.get(category, []):
        parts.append(f"{SOURCE_NAMES.get(scorer, scorer)}: {ev.detail}")
    if not parts:
        parts = [SOURCE_NAMES.get(s, s) for s in result.contributors.get(category, [])]
    return "; ".join(dict.fromkeys(parts)) or "ensemble"


def decide(
    result: EnsembleResult,
    message: Message,
    policy: GuildPolicy,
) -> tuple[Action, list[Reason]]:
    """Apply a policy to one message's ensemble scores; the most severe action wins."""
    action = Action.ALLOW
    reasons: list[Reason] = []
    for category in CATEGORY_NAMES:
        score = result.scores[category]
        if score is None:  # not scored (result.unscored says why): no rule can fire on it
            continue
        hit = None
        for rule in policy.thresholds.get(category, []):
            if score >= rule.threshold:
                hit = rule
        if hit is None:
            continue
        if category == SELF_HARM and hit.action.severity > SELF_HARM_MAX_ACTION.severity:
            hit = ThresholdRule(threshold=hit.threshold, action=SELF_HARM_MAX_ACTION)  # a policy stored before the rule
        sources = _source_text(result, category)
        reasons.append(
            Reason(
                category=category,
                score=score,
                threshold=hit.threshold,
                action=hit.action,
                source=",".join(dict.fromkeys(result.contributors.get(category, []))) or "ensemble",
                text=f"{category} {score:.2f} ≥ {hit.threshold:.2f} → {hit.action.value} ({sources})",
            )
        )
        if hit.action.severity > action.severity:
            action = hit.action

    missing = sorted(set(result.missing))
    if missing:
        if policy.on_scorer_failure == "fail_closed" and action.severity < Action.HOLD_FOR_REVIEW.severity:
            action = Action.HOLD_FOR_REVIEW
            text = f"scorer unavailable: {', '.join(missing)}; guild fails closed → hold_for_review"
        else:
            text = f"scorer unavailable: {', '.join(missing)}; guild fails open → decided on the signals present"
        reasons.append(Reason(action=action, source="policy", text=text))

    exempt = _exemption(message, policy)
    if exempt and action is not Action.ALLOW:
        # An exemption waives enforcement, not care: an exempt author at risk still gets support.
        keep = Action.SUPPORT if any(r.action is Action.SUPPORT for r in reasons) else Action.ALLOW
        reasons.append(Reason(action=keep, source="policy", text=f"{exempt}; would have been {action.value}"))
        action = keep
    # Forced actions (a hash bank set to always block) apply after exemptions: known-bad media is
    # known-bad whoever posts it.
    for scorer, forced, why in result.forced:
        if forced.severity > action.severity:
            action = forced
            reasons.append(
                Reason(
                    action=forced,
                    source=scorer,
                    text=f"{SOURCE_NAMES.get(scorer, scorer)} forces {forced.value}: {why}",
                )
            )
    return action, reasons


def _exemption(message: Message, policy: GuildPolicy) -> str | None:
    if message.channel_id and message.channel_id in policy.exempt_channels:
        return f"channel {message.channel_id} is exempt"
    for role in message.author.roles:
        if role in policy.exempt_roles:
            return f"author has exempt role {role!r}"
    return None
