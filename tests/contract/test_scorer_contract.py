"""The Scorer contract, run against every registered scorer.

A new scorer inherits these tests by being in pipeline.scorers.registry.REGISTRY; no entry is
skipped, so a registered scorer whose module does not import yet fails here, loudly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.guilds import GuildLists
from pipeline.normalize import normalize
from pipeline.scorers import registry
from pipeline.scorers.base import Scorer, ScoringItem
from pipeline.taxonomy import CATEGORY_NAMES
from pipeline.types import MAX_TEXT_CHARS, Attachment, Message, Signal

LISTS = GuildLists(
    keywords={"toxicity": ("idiot", "moron*")},
    regexes={"spam": (r"free\s+nitro",)},
    allowlist=("class",),
    blocked_links=("bad.example",),
    version=1,
)

TEXTS = [
    "you are an idiot",
    "have a lovely day",
    "free nitro at https://bad.example/gift and discord-nitro.gift",
    "check https://github.com/heron",
    "ｙｏｕ ａｒｅ ａ ｍｏｒｏｎ",
]


def item(text: str = "", lists: GuildLists = LISTS, **kw: Any) -> ScoringItem:
    msg = Message(text=text, **kw)
    return ScoringItem(msg, normalize(text), lists)


@pytest.fixture(scope="module", params=[e.name for e in registry.REGISTRY])
def scorer(request: pytest.FixtureRequest) -> Iterator[Scorer]:
    s = registry.build(request.param)
    yield s
    s.close()


def check_signal(s: Scorer, sig: Signal) -> None:
    assert isinstance(sig, Signal)
    assert sig.scorer == s.name
    assert sig.version == s.version
    assert set(sig.scores) <= set(s.labels), f"{s.name} scored outside its labels: {set(sig.scores)}"
    for category, value in sig.scores.items():
        assert 0.0 <= value <= 1.0 and not math.isnan(value), (category, value)
    for ev in sig.evidence:
        assert ev.category in CATEGORY_NAMES and ev.detail.strip()
    if sig.error is not None:
        assert sig.scores == {}, "a failed signal must not carry scores"


def strip(sig: Signal) -> dict[str, Any]:
    return sig.model_dump(exclude={"latency_ms"})


def test_class_attributes(scorer: Scorer) -> None:
    assert scorer.name == registry.get_entry(scorer.name).name
    assert isinstance(scorer.version, str) and scorer.version
    assert scorer.labels and set(scorer.labels) <= set(CATEGORY_NAMES)
    assert scorer.load() is scorer


def test_one_signal_per_item_in_order(scorer: Scorer) -> None:
    items = [item(t) for t in TEXTS]
    batch = scorer.score(items)
    assert len(batch) == len(items)
    for sig in batch:
        check_signal(scorer, sig)
        assert sig.ok, sig.error
    singles = [scorer.score([i])[0] for i in items]
    assert [strip(s) for s in batch] == [strip(s) for s in singles], "batch order or batching changes results"


def test_empty_batch(scorer: Scorer) -> None:
    assert scorer.score([]) == []


def test_attachment_only_message(scorer: Scorer) -> None:
    it = item(attachments=[Attachment(url="https://cdn.example/cat.png", content_type="image/png")])
    (sig,) = scorer.score([it])
    check_signal(scorer, sig)


def test_longest_text(scorer: Scorer) -> None:
    text = ("you are such an idiot, visit https://bad.example now. " * 100)[:MAX_TEXT_CHARS]
    (sig,) = scorer.score([item(text)])
    check_signal(scorer, sig)
    assert sig.ok, sig.error


def test_error_signal_is_a_missing_signal_not_a_zero(scorer: Scorer) -> None:
    sig = scorer.error_signal("boom", started=None)
    check_signal(scorer, sig)
    assert sig.error == "boom" and sig.scores == {} and not sig.ok and not sig.definitive


class _Exploding:
    """Raises on any attribute access: stands in for an item the scorer cannot handle."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"cannot read {name}")


def test_failing_item_yields_an_error_not_a_fake_zero(scorer: Scorer) -> None:
    bad = ScoringItem(_Exploding(), _Exploding(), _Exploding())  # type: ignore[arg-type]
    good = item(TEXTS[0])
    try:
        signals = scorer.score([good, bad, good])
    except Exception:  # noqa: BLE001 - allowed: the service turns a raising batch into error signals
        return
    assert len(signals) == 3
    for sig in signals:
        check_signal(scorer, sig)
    assert signals[1].error, "an item that could not be scored must carry `error`"
    assert signals[1].scores == {}
    assert strip(signals[0]) == strip(signals[2])
