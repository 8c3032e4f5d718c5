"""The Scorer contract, run against every registered scorer.

A new scorer inherits these tests by being in pipeline.scorers.registry.REGISTRY; no entry is
skipped, so a registered scorer whose module does not import yet fails here, loudly. Items are
built the way the service builds them: through the feature stage.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.features import EXTRACTORS, Feature, prepare
from pipeline.features.context import CONTENT_FEATURES
from pipeline.guilds import GuildLists
from pipeline.scorers import registry
from pipeline.scorers.base import Capabilities, Scorer, ScoringItem
from pipeline.scorers.text import TextScorer
from pipeline.settings import Settings, get_settings
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
    return prepare(Message(text=text, **kw), lists, tenant_id="contract")


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
    bad = ScoringItem(_Exploding(), lists=_Exploding(), context=_Exploding())  # type: ignore[arg-type]
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


# --- declared capabilities ----------------------------------------------------------------------


def test_from_settings_builds_the_scorer(scorer: Scorer) -> None:
    built = type(scorer).from_settings(get_settings())
    try:
        assert type(built) is type(scorer) and built.name == scorer.name
    finally:
        built.close()


def test_capabilities_are_declared(scorer: Scorer) -> None:
    caps = scorer.capabilities()
    assert isinstance(caps, Capabilities)
    assert caps.needs and caps.needs <= set(Feature)
    provided = frozenset().union(*(e.provides for e in EXTRACTORS))
    assert caps.needs <= provided, f"{scorer.name} needs {set(caps.needs - provided)}, which no extractor fills"
    assert isinstance(scorer.status(), dict) and isinstance(scorer.stats(), dict)


def test_score_one_async_agrees_with_score(scorer: Scorer) -> None:
    """Declared `async_single` means its own awaitable path; undeclared, the base default. Both
    must give what `score` gives, so the sync API and the workers decide alike."""
    if scorer.async_single:
        assert type(scorer).score_one_async is not Scorer.score_one_async
    items = [item(t) for t in TEXTS]

    async def all_at_once() -> list[Signal]:
        return list(await asyncio.gather(*(scorer.score_one_async(i) for i in items)))

    got = asyncio.run(all_at_once())
    assert [strip(s) for s in got] == [strip(s) for s in scorer.score(items)]


def test_submit_agrees_with_score(scorer: Scorer) -> None:
    if scorer.micro_batching:
        assert type(scorer).submit is not Scorer.submit
    items = [item(t) for t in TEXTS]
    futures = [scorer.submit(i) for i in items]
    got = [f.result(timeout=60) for f in futures]
    assert [strip(s) for s in got] == [strip(s) for s in scorer.score(items)]


def test_applies_to_follows_needs(scorer: Scorer) -> None:
    """A content scorer skips a message without the content it reads."""
    needs = scorer.needs & CONTENT_FEATURES
    image_only = item(attachments=[Attachment(url="https://cdn.example/cat.png", content_type="image/png")])
    text_only = item("have a lovely day")
    if needs and not needs & {Feature.MEDIA}:
        assert not scorer.applies_to(image_only)
    if needs and not needs & {Feature.TEXT, Feature.LINKS}:
        assert not scorer.applies_to(text_only)
    if needs == {Feature.LINKS}:
        assert not scorer.applies_to(text_only) and scorer.applies_to(item(TEXTS[3]))


def test_a_capability_without_its_method_is_refused() -> None:
    with pytest.raises(TypeError, match="async_single"):

        class _Claims(Scorer):  # noqa: F841 - defining it is the test
            name = "claims"
            labels = ("spam",)
            async_single = True

            def score(self, items: Any) -> list[Signal]:
                return []

    with pytest.raises(TypeError, match="micro_batching"):

        class _Hides(Scorer):  # noqa: F841
            name = "hides"
            labels = ("spam",)

            def score(self, items: Any) -> list[Signal]:
                return []

            def submit(self, item: Any) -> Any:  # overridden but not declared: callers would never use it
                return None


def test_text_knobs_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every HERON_TEXT_* variable reaches the text scorer through Settings (same names as before)."""
    env = {"QUANTIZE": "fp32", "MAX_BATCH": "3", "GROUP": "2", "MAX_WAIT_MS": "1.5", "WORKERS": "1",
           "THREADS": "1", "CACHE_SIZE": "7"}
    for k, v in env.items():
        monkeypatch.setenv(f"HERON_TEXT_{k}", v)
    s = TextScorer.from_settings(Settings())
    assert (s.quantize, s.max_batch, s.group, s.max_wait_ms, s.workers, s.num_threads, s.cache_size) == (
        "fp32", 3, 2, 1.5, 1, 1, 7)
    assert TextScorer(max_batch=5, settings=Settings()).max_batch == 5  # kwargs still win (tests, bench)


def test_bad_text_knob_is_a_clear_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERON_TEXT_MAX_BATCH", "0")
    with pytest.raises(ValueError, match="text_max_batch"):
        Settings()
