"""`heron shadow report`: how a shadowed candidate compares with the live decisions.

Per candidate (shadow version):
- agreement: the share of shadowed messages where the candidate chose the same action;
- disagreements by (live action -> shadow action), and by category: a category counts for a
  disagreement when its rules chose different actions in the two (stricter or milder in the shadow);
- precision estimated from reviewed items: among messages a person closed a review of (a held or
  flagged decision, a report, an appeal; the last verdict counts), "uphold" means the message
  does violate. Precision of a side = upheld / reviewed, over the messages where that side's action
  was not `allow`.

Read the precision with its selection in mind: people review what the live policy held or flagged
and what users reported, so the live side's non-allow decisions are reviewed far more often than
the shadow's. The report shows how many of each side's non-allow decisions were reviewed (coverage)
and a Wilson 95% interval; a precision over a handful of reviews says little.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.store.shadow import FinalVerdict
from pipeline.types import Action

SCHEMA = "heron.shadow-report/1"
_RELATIVE = re.compile(r"^(\d+)\s*([mhd])$")


def parse_since(value: str, at: datetime | None = None) -> datetime:
    """'24h', '7d', '30m' (before now) or an ISO 8601 date/time (UTC if no zone given)."""
    at = at or datetime.now(UTC)
    m = _RELATIVE.match(value.strip())
    if m:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return at - timedelta(**{unit: int(m.group(1))})
    try:
        ts = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"--since {value!r}: use a duration like 24h, 7d or 30m, or an ISO date such as "
                         "2026-11-20 or 2026-11-20T09:00:00Z") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def wilson(successes: int, n: int, z: float = 1.96) -> list[float] | None:
    """The Wilson score interval of a proportion; None without observations."""
    if n == 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def _severity(action: str | None) -> int:
    return Action(action or "allow").severity


def _precision(rows: list[Mapping[str, Any]], side: str, verdicts: Mapping[tuple[str, str], FinalVerdict]) \
        -> dict[str, Any]:
    acted = [r for r in rows if r[f"{side}_action"] != "allow"]
    reviewed = [r for r in acted if (r["tenant_id"], r["message_id"]) in verdicts]
    upheld = sum(1 for r in reviewed if verdicts[(r["tenant_id"], r["message_id"])].verdict == "uphold")
    return {
        "acted": len(acted),
        "acted_reviewed": len(reviewed),
        "coverage": round(len(reviewed) / len(acted), 4) if acted else None,
        "upheld": upheld,
        "overturned": len(reviewed) - upheld,
        "precision": round(upheld / len(reviewed), 4) if reviewed else None,
        "precision_ci95": wilson(upheld, len(reviewed)),
    }


def shadow_section(version: str, rows: list[Mapping[str, Any]],
                   verdicts: Mapping[tuple[str, str], FinalVerdict]) -> dict[str, Any]:
    """The report for one candidate over its rows."""
    n = len(rows)
    same = sum(1 for r in rows if r["live_action"] == r["shadow_action"])
    transitions: Counter[tuple[str, str]] = Counter()
    by_category: dict[str, Counter[str]] = {}
    no_category = 0
    for r in rows:
        if r["live_action"] == r["shadow_action"]:
            continue
        transitions[(r["live_action"], r["shadow_action"])] += 1
        live_c, shadow_c = r["live_categories"] or {}, r["shadow_categories"] or {}
        differing = [c for c in sorted(set(live_c) | set(shadow_c)) if live_c.get(c) != shadow_c.get(c)]
        if not differing:
            no_category += 1  # the difference came from outside the category rules (missing signals, exemptions)
        for c in differing:
            counts = by_category.setdefault(c, Counter())
            counts["disagreements"] += 1
            stricter = _severity(shadow_c.get(c)) > _severity(live_c.get(c))
            counts["shadow_stricter" if stricter else "shadow_milder"] += 1
    reviewed = [r for r in rows if (r["tenant_id"], r["message_id"]) in verdicts]
    upheld = [r for r in reviewed if verdicts[(r["tenant_id"], r["message_id"])].verdict == "uphold"]
    overturned = [r for r in reviewed if verdicts[(r["tenant_id"], r["message_id"])].verdict == "overturn"]
    return {
        "version": version,
        "messages": n,
        "first_at": min(r["created_at"] for r in rows).isoformat() if rows else None,
        "last_at": max(r["created_at"] for r in rows).isoformat() if rows else None,
        "agreement": {"same_action": same, "different_action": n - same,
                      "rate": round(same / n, 4) if n else None},
        "transitions": [{"live": a, "shadow": b, "count": c}
                        for (a, b), c in sorted(transitions.items(), key=lambda kv: (-kv[1], kv[0]))],
        "disagreements_by_category": {c: {"disagreements": v["disagreements"], "shadow_stricter": v["shadow_stricter"],
                                          "shadow_milder": v["shadow_milder"]}
                                      for c, v in sorted(by_category.items(), key=lambda kv: (-kv[1]["disagreements"],
                                                                                               kv[0]))},
        "disagreements_outside_categories": no_category,
        "reviewed": {
            "messages": len(reviewed),
            "upheld": len(upheld),
            "overturned": len(overturned),
            "live": _precision(rows, "live", verdicts),
            "shadow": _precision(rows, "shadow", verdicts),
            # Where the two would part on reviewed messages: what a switch would gain or lose.
            "upheld_but_shadow_allows": sum(1 for r in upheld if r["shadow_action"] == "allow"),
            "upheld_but_live_allowed": sum(1 for r in upheld if r["live_action"] == "allow"),
            "overturned_and_shadow_allows": sum(1 for r in overturned if r["shadow_action"] == "allow"),
            "overturned_and_live_allowed": sum(1 for r in overturned if r["live_action"] == "allow"),
        },
    }


def build(rows: Iterable[Mapping[str, Any]], verdicts: Mapping[tuple[str, str], FinalVerdict], *,
          tenant: str | None = None, since: datetime | None = None) -> dict[str, Any]:
    """The whole report: one section per shadow version, most messages first."""
    by_version: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_version.setdefault(r["shadow_version"], []).append(r)
    sections = [shadow_section(v, rs, verdicts) for v, rs in by_version.items()]
    sections.sort(key=lambda s: (-s["messages"], s["version"]))
    return {
        "schema": SCHEMA,
        "generated_at": datetime.now(UTC).isoformat(),
        "tenant": tenant,
        "since": since.isoformat() if since else None,
        "shadows": sections,
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _prec(p: Mapping[str, Any]) -> str:
    if p["precision"] is None:
        return f"n/a (0 of {p['acted']} reviewed)"
    lo, hi = p["precision_ci95"]
    return (f"{_pct(p['precision'])} ({p['upheld']}/{p['acted_reviewed']} upheld; 95% CI {_pct(lo)}-{_pct(hi)}; "
            f"{p['acted_reviewed']} of {p['acted']} reviewed)")


def markdown(report: Mapping[str, Any]) -> str:
    """The report for people."""
    out = ["# Shadow report", ""]
    scope = f"tenant {report['tenant']}" if report["tenant"] else "all tenants"
    out.append(f"Generated {report['generated_at']} for {scope}" + (f", since {report['since']}" if report["since"]
                                                                      else "") + ".")
    out.append("")
    if not report["shadows"]:
        out.append("No shadow decisions recorded (set HERON_SHADOW_TEXT_ARTIFACT, HERON_SHADOW_POLICY or "
                   "HERON_SHADOW_STACKING on the workers).")
        return "\n".join(out) + "\n"
    for s in report["shadows"]:
        a = s["agreement"]
        out += [f"## `{s['version']}`", "",
                f"- messages shadowed: {s['messages']} ({s['first_at']} to {s['last_at']})",
                f"- same action as live: {a['same_action']} ({_pct(a['rate'])}); different: {a['different_action']}",
                ""]
        if s["transitions"]:
            out += ["| live action | shadow action | messages |", "|---|---|---:|"]
            out += [f"| {t['live']} | {t['shadow']} | {t['count']} |" for t in s["transitions"]]
            out.append("")
        if s["disagreements_by_category"]:
            out += ["| category | disagreements | shadow stricter | shadow milder |", "|---|---:|---:|---:|"]
            out += [f"| {c} | {v['disagreements']} | {v['shadow_stricter']} | {v['shadow_milder']} |"
                    for c, v in s["disagreements_by_category"].items()]
            out.append("")
        if s["disagreements_outside_categories"]:
            out += [f"Disagreements not explained by a category rule (missing signals, exemptions): "
                    f"{s['disagreements_outside_categories']}", ""]
        r = s["reviewed"]
        out += [f"Reviewed by a person: {r['messages']} messages ({r['upheld']} upheld, {r['overturned']} overturned).",
                "",
                f"- live precision (non-allow decisions upheld): {_prec(r['live'])}",
                f"- shadow precision: {_prec(r['shadow'])}",
                f"- upheld messages the shadow would allow: {r['upheld_but_shadow_allows']} "
                f"(the live side allowed {r['upheld_but_live_allowed']})",
                f"- overturned messages the shadow would allow: {r['overturned_and_shadow_allows']} "
                f"(the live side allowed {r['overturned_and_live_allowed']})",
                "",
                "People review what the live policy held or flagged and what users reported, so the shadow's "
                "non-allow decisions are less often reviewed than the live ones: compare the coverage before the "
                "precision.", ""]
    return "\n".join(out)
