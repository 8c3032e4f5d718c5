"""`heron shadow report` on a small set built so every figure is known: agreement, transitions,
disagreements by category, and precision from verdicts given through the real review queue, on
SQLite and PostgreSQL; plus the CLI's refusals."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.migrate import upgrade
from pipeline.review import Principal
from pipeline.settings import override_settings, reset_settings
from pipeline.shadow import category_actions
from pipeline.shadow_report import build, parse_since, wilson
from pipeline.store import Store
from pipeline.store.engine import now
from pipeline.store.shadow import ShadowDecisions
from pipeline.types import Action, Decision, Reason, decision_id_for

A = Action
# message: (live action, live category or None, shadow action, shadow category or None, review)
# review: "U"/"O" = a person upheld/overturned it (held/flagged: its own item; otherwise a report), "-" none
SET: dict[str, tuple[Action, str | None, Action, str | None, str]] = {
    "m1": (A.HOLD_FOR_REVIEW, "toxicity", A.HOLD_FOR_REVIEW, "toxicity", "U"),
    "m2": (A.HOLD_FOR_REVIEW, "toxicity", A.ALLOW, None, "O"),
    "m3": (A.FLAG, "toxicity", A.ALLOW, None, "O"),
    "m4": (A.FLAG, "spam", A.BLOCK, "spam", "U"),
    "m5": (A.ALLOW, None, A.HOLD_FOR_REVIEW, "harassment", "U"),
    "m6": (A.ALLOW, None, A.FLAG, "harassment", "-"),
    "m7": (A.ALLOW, None, A.ALLOW, None, "O"),
    "m8": (A.HOLD_FOR_REVIEW, "toxicity", A.HOLD_FOR_REVIEW, "toxicity", "-"),
    "m9": (A.BLOCK, "scam", A.BLOCK, "scam", "U"),
    "m10": (A.ALLOW, None, A.ALLOW, None, "-"),
    # held because a scorer was unavailable (fail closed: no category); the shadow had the signal
    "m11": (A.HOLD_FOR_REVIEW, None, A.ALLOW, None, "-"),
}
VERSION = "text=candidate-1"


def reasons(action: Action, category: str | None) -> list[Reason]:
    if action is A.ALLOW:
        return []
    if category is None:
        return [Reason(action=action, source="policy", text="scorer unavailable: text; guild fails closed")]
    return [Reason(category=category, score=0.9, threshold=0.5, action=action, source="text", text=f"{category} 0.90")]


def populate(store: Store) -> str:
    t = store.tenants.ensure("acme")
    decisions = {m: Decision(id=decision_id_for(t, m), message_id=m, action=live, scores={"toxicity": 0.5},
                             reasons=reasons(live, cat)) for m, (live, cat, _, _, _) in SET.items()}
    store.decisions.save_many([(t, d) for d in decisions.values()])
    rows = []
    for m, (_, _, shadow, scat, _) in SET.items():
        d = decisions[m]
        rows.append({"tenant_id": t, "message_id": m, "decision_id": d.id, "guild_id": None, "shadow_version": VERSION,
                     "live_action": d.action.value, "shadow_action": shadow.value,
                     "live_categories": category_actions(d.reasons),
                     "shadow_categories": category_actions(reasons(shadow, scat)), "live_scores": d.scores,
                     "shadow_scores": {"toxicity": 0.4}, "shadow_reasons": [], "shadow_model_versions": {},
                     "live_policy_version": 0, "shadow_policy": None, "created_at": now()})
    # a second candidate, and another tenant: reported apart / left out by --tenant
    rows.append({**rows[0], "shadow_version": "policy=strict.json@abc", "shadow_action": "block"})
    other = store.tenants.ensure("globex")
    rows.append({**rows[0], "tenant_id": other})
    shadows = ShadowDecisions.for_engine(store.engine)
    assert shadows.save_many(rows) == len(rows)
    admin = Principal(tenant_id=t, actor="tenant:acme:api_key", role="admin", guilds=None, via="api_key")
    for m, (_, _, _, _, review) in SET.items():
        item = store.review.enqueue_decision(t, decisions[m])
        if review == "-":
            continue
        if item is None:  # allowed or blocked: nobody looks unless a user reports it
            item = store.review.report(t, m, "user-1", "reported")
        verdict = "uphold" if review == "U" else "overturn"
        store.review.resolve(admin, item.id, verdict=verdict,
                             reason_code="violates_policy" if review == "U" else "false_positive", categories={})
    return t


@pytest.fixture
def store(database_url: str) -> Any:
    upgrade(database_url)
    s = Store.from_url(database_url)
    override_settings(database_url=database_url)
    yield s
    s.dispose()
    reset_settings()


def test_report_figures_on_a_known_set(store: Store) -> None:
    t = populate(store)
    shadows = ShadowDecisions.for_engine(store.engine)
    report = build(shadows.rows(t), shadows.final_verdicts(t), tenant="acme")
    assert [s["version"] for s in report["shadows"]] == [VERSION, "policy=strict.json@abc"]
    s = report["shadows"][0]
    assert s["messages"] == 11
    assert s["agreement"] == {"same_action": 5, "different_action": 6, "rate": round(5 / 11, 4)}
    assert s["transitions"] == [
        {"live": "hold_for_review", "shadow": "allow", "count": 2},
        {"live": "allow", "shadow": "flag", "count": 1},
        {"live": "allow", "shadow": "hold_for_review", "count": 1},
        {"live": "flag", "shadow": "allow", "count": 1},
        {"live": "flag", "shadow": "block", "count": 1},
    ]
    assert s["disagreements_by_category"] == {
        "harassment": {"disagreements": 2, "shadow_stricter": 2, "shadow_milder": 0},
        "toxicity": {"disagreements": 2, "shadow_stricter": 0, "shadow_milder": 2},
        "spam": {"disagreements": 1, "shadow_stricter": 1, "shadow_milder": 0},
    }
    assert s["disagreements_outside_categories"] == 1  # m11
    r = s["reviewed"]
    assert (r["messages"], r["upheld"], r["overturned"]) == (7, 4, 3)
    # live acted on m1 m2 m3 m4 m8 m9 m11; reviewed m1 m2 m3 m4 m9; upheld m1 m4 m9
    assert r["live"] == {"acted": 7, "acted_reviewed": 5, "coverage": round(5 / 7, 4), "upheld": 3, "overturned": 2,
                         "precision": 0.6, "precision_ci95": wilson(3, 5)}
    # the shadow acted on m1 m4 m5 m6 m8 m9; reviewed m1 m4 m5 m9, all upheld
    assert r["shadow"] == {"acted": 6, "acted_reviewed": 4, "coverage": round(4 / 6, 4), "upheld": 4,
                           "overturned": 0, "precision": 1.0, "precision_ci95": wilson(4, 4)}
    assert (r["upheld_but_shadow_allows"], r["upheld_but_live_allowed"]) == (0, 1)  # m5
    assert (r["overturned_and_shadow_allows"], r["overturned_and_live_allowed"]) == (3, 1)  # m2 m3 m7 / m7
    second = report["shadows"][1]
    assert second["messages"] == 1 and second["agreement"]["same_action"] == 0
    assert wilson(3, 5) == [0.2307, 0.8824]


def test_the_cli_writes_json_and_markdown_and_refuses_bad_input(store: Store, tmp_path: Path) -> None:
    populate(store)
    runner = CliRunner()
    out = tmp_path / "report.json"
    res = runner.invoke(app, ["shadow", "report", "--tenant", "acme", "--version", VERSION, "--output", str(out)])
    assert res.exit_code == 0, res.output
    body = json.loads(out.read_text())
    assert [s["version"] for s in body["shadows"]] == [VERSION] and body["shadows"][0]["messages"] == 11
    md = out.with_suffix(".md").read_text()
    assert "same action as live: 5 (45.5%); different: 6" in md
    assert "live precision (non-allow decisions upheld): 60.0% (3/5 upheld" in md
    assert "| hold_for_review | allow | 2 |" in md
    # every tenant: the globex row joins the first candidate
    res = runner.invoke(app, ["shadow", "report", "--since", "1h"])
    assert res.exit_code == 0 and "messages shadowed: 12" in res.output
    res = runner.invoke(app, ["shadow", "report", "--since", "2099-01-01"])
    assert res.exit_code == 0 and "No shadow decisions recorded" in res.output
    res = runner.invoke(app, ["shadow", "report", "--since", "yesterday"])
    assert res.exit_code == 2 and "use a duration like 24h" in res.output
    res = runner.invoke(app, ["shadow", "report", "--tenant", "nobody"])
    assert res.exit_code == 2 and "no tenant 'nobody'" in res.output


def test_the_cli_says_to_migrate_an_old_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    upgrade(url, "0006")
    override_settings(database_url=url)
    try:
        res = CliRunner().invoke(app, ["shadow", "report"])
    finally:
        reset_settings()
    assert res.exit_code == 2 and "run `heron migrate` first" in res.output


def test_since_accepts_durations_and_dates() -> None:
    at = now()
    assert parse_since("24h", at) == at - timedelta(hours=24)
    assert parse_since("7d", at) == at - timedelta(days=7)
    assert parse_since("2026-11-20").isoformat() == "2026-11-20T00:00:00+00:00"
