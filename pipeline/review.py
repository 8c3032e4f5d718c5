"""The review desk's rules, as pure functions: who may see and act on what, which decisions a
person reviews, in what order, how soon, and what a verdict turns the decision into.

Storage lives in `pipeline/store/review.py`; HTTP in `api/routes/review.py` and the browser UI in
`api/routes/review_ui.py`. Keeping the rules here means the API, the UI and the CLI cannot
disagree about them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pipeline.types import Action, Decision, Reason

Role = Literal["admin", "moderator", "viewer"]
ROLES: tuple[str, ...] = ("admin", "moderator", "viewer")
Verdict = Literal["uphold", "overturn"]
Kind = Literal["decision", "report", "appeal"]
AuthorAction = Literal["timeout", "ban"]

# Decisions a person looks at: the policy held or flagged them. `support` (offering help resources
# for self-harm, added beside the self_harm heads) is compared by value so this module works with
# or without that action in `Action`.
REVIEW_ACTIONS: frozenset[str] = frozenset({"flag", "hold_for_review", "support"})
# Reason sources written by people: a revision they caused never re-enters the queue.
HUMAN_SOURCES: frozenset[str] = frozenset({"review", "appeal", "override"})

# The reasons a reviewer picks from, by verdict (stable codes; labels for people). One list for
# every tenant for now: a guild policy has no reason list of its own yet.
REASONS: dict[str, tuple[str, str]] = {
    "violates_policy": ("uphold", "Violates the community policy"),
    "targeted_harassment": ("uphold", "Targets a person"),
    "scam_or_phishing": ("uphold", "Scam, phishing or malicious link"),
    "spam_wave": ("uphold", "Part of a spam wave"),
    "self_harm_risk": ("uphold", "Self-harm risk: needs support"),
    "false_positive": ("overturn", "Model or list false positive"),
    "acceptable_in_context": ("overturn", "Acceptable in its context"),
    "quoting_or_reporting": ("overturn", "Quoting, reporting or counter-speech"),
    "in_group_use": ("overturn", "Reclaimed or in-group use"),
    "needs_senior_review": ("escalate", "Needs a senior reviewer"),
    "legal_or_safety_risk": ("escalate", "Legal or real-world safety risk"),
    "policy_unclear": ("escalate", "Policy does not cover it"),
}

# How long an item may wait before it is overdue, by what it is (seconds).
SLA_S: dict[str, float] = {"self_harm": 3600.0, "decision": 4 * 3600.0, "report": 12 * 3600.0,
                           "appeal": 24 * 3600.0}


def reasons_for(verdict: str) -> list[tuple[str, str]]:
    return [(code, label) for code, (v, label) in REASONS.items() if v == verdict]


def check_reason(verdict: str, code: str) -> None:
    """A verdict's reason must come from the list, and fit the verdict."""
    if code not in REASONS:
        raise ValueError(f"unknown reason {code!r}; expected one of {', '.join(REASONS)}")
    if REASONS[code][0] != verdict:
        fits = ", ".join(c for c, _ in reasons_for(verdict))
        raise ValueError(f"reason {code!r} is for {REASONS[code][0]}, not {verdict}; use one of {fits}")


def wants_review(decision: Decision) -> bool:
    """A decision a person should look at: held or flagged by the policy, not already a person's."""
    if decision.action.value not in REVIEW_ACTIONS and not self_harm(decision):
        return False
    return not (decision.reasons and decision.reasons[-1].source in HUMAN_SOURCES)


def self_harm(decision: Decision) -> bool:
    """Any reason or at-or-over-flag score about self_harm: these go to the top of every queue."""
    return any(r.category == "self_harm" and r.action != Action.ALLOW for r in decision.reasons) or (
        decision.action.value == "support"
    )


def severity(decision: Decision) -> tuple[float, str | None]:
    """(0..1, the category behind it): the highest score among the reasons that chose an action."""
    best, top = 0.0, None
    for r in decision.reasons:
        if r.category is not None and r.score is not None and r.score >= best:
            best, top = float(r.score), r.category
    scored = {c: v for c, v in decision.scores.items() if v is not None}  # None: not scored
    if top is None and scored:
        top, best = max(scored.items(), key=lambda kv: kv[1])
    return max(0.1, min(1.0, best)), top


def priority(severity_: float, reach: int, age_s: float) -> float:
    """severity × reach × age: age counts as 1 + hours waited, so an old item climbs past a newer,
    slightly more severe one instead of waiting forever."""
    return severity_ * max(1, reach) * (1.0 + max(0.0, age_s) / 3600.0)


def sla_s(kind: str, is_self_harm: bool) -> float:
    return SLA_S["self_harm"] if is_self_harm else SLA_S.get(kind, SLA_S["decision"])


@dataclass(frozen=True)
class Principal:
    """Who is asking: a reviewer account (session) or a tenant API key (its tenant's admin)."""

    tenant_id: str
    actor: str  # what the audit log and the revisions name: "reviewer:alice" or "tenant:<id>:api_key"
    role: Role
    guilds: frozenset[str] | None  # None: every guild of the tenant
    reviewer_id: str | None = None
    via: Literal["api_key", "session"] = "session"

    def sees(self, tenant_id: str, guild_id: str | None, queue: str) -> bool:
        """Tenants never see each other; a guild-scoped account sees only its guilds' guild queue
        (messages without a guild and escalated items are the platform queue: admins only)."""
        if tenant_id != self.tenant_id:
            return False
        if self.role == "admin":
            return True
        if self.guilds is None:  # a tenant-wide viewer
            return True
        return queue == "guild" and guild_id is not None and guild_id in self.guilds

    @property
    def can_act(self) -> bool:
        return self.role in ("admin", "moderator")


def revised_decision(
    current: Decision,
    *,
    kind: str,
    verdict: str,
    reason_code: str,
    actor: str,
    note: str | None,
    author_action: str | None = None,
    action: Action | None = None,
) -> Decision:
    """The decision a verdict turns `current` into (the next revision; the caller stores it).

    - a held or flagged decision: uphold removes the message (block, or the harsher action it already
      had); overturn allows it;
    - a report: uphold removes it; overturn leaves the decision's action as it was;
    - an appeal: uphold keeps the decision's action; overturn allows the message.
    A recommended author action (timeout, ban) makes the action `timeout_author`; the reason says
    which, so the chat service can apply a ban it reserves for people to approve.
    """
    if action is None:
        keeps = current.action
        removes = current.action if current.action.severity >= Action.BLOCK.severity else Action.BLOCK
        if current.action.value == "support" and verdict == "uphold":
            removes = current.action  # support is already the right outcome for self-harm
        table = {
            ("decision", "uphold"): removes, ("decision", "overturn"): Action.ALLOW,
            ("report", "uphold"): removes, ("report", "overturn"): keeps,
            ("appeal", "uphold"): keeps, ("appeal", "overturn"): Action.ALLOW,
        }
        action = table[(kind, verdict)]
    if author_action is not None and verdict == "uphold":
        action = Action.TIMEOUT_AUTHOR
    label = REASONS[reason_code][1]
    what = {"decision": "review", "report": "report review", "appeal": "appeal"}[kind]
    text = f"{what}: {verdict} ({label}) by {actor}"
    if author_action is not None and verdict == "uphold":
        text += f"; recommends {author_action} of the author"
    if note:
        text += f": {note}"
    reason = Reason(action=action, source="appeal" if kind == "appeal" else "review", text=text[:2000])
    return current.model_copy(update={"action": action, "reasons": [*current.reasons, reason]})


def age_text(seconds: float) -> str:
    """'3 m', '2 h 5 m', '1 d 4 h': what the queue shows."""
    s = int(max(0, seconds))
    if s < 3600:
        return f"{s // 60} m"
    if s < 86400:
        return f"{s // 3600} h {(s % 3600) // 60} m"
    return f"{s // 86400} d {(s % 86400) // 3600} h"


def iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


def public_categories(categories: dict[str, Any]) -> dict[str, bool]:
    """The reviewer's labels, validated against the taxonomy: category -> violates."""
    from pipeline.taxonomy import parse_category

    out: dict[str, bool] = {}
    for k, v in categories.items():
        parse_category(k)
        if not isinstance(v, bool):
            raise ValueError(f"categories.{k} must be true or false")
        out[k] = v
    return out
