"""The feature stage: each feature computed once per message, failures as missing signals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pipeline.features import (
    BehaviourSnapshot,
    Feature,
    FeatureExtractor,
    FeatureStage,
    ItemContext,
    LinkExtractor,
    MediaExtractor,
    ScoringItem,
    TextExtractor,
    build_stage,
    prepare,
)
from pipeline.features import links as link_features
from pipeline.guilds import PLATFORM_GUILD, GuildConfig
from pipeline.scorers.base import Modality, Scorer
from pipeline.scorers.links import LinkScorer
from pipeline.scorers.rules import RulesScorer
from pipeline.service import ModerationService
from pipeline.types import Action, Attachment, Message, Signal

PHISHING = "steamcommunity-gift.ru"


@pytest.fixture
def link_scorer(tmp_path: Path) -> LinkScorer:
    path = tmp_path / "domain-list.json"
    path.write_text(json.dumps({"domains": [PHISHING]}), "utf-8")
    return LinkScorer(blocklist_path=path).load()


@pytest.fixture
def extraction_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts every link extraction, whoever asks for it."""
    calls: list[str] = []
    real = link_features.extract_links

    def counting(text: str) -> Any:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(link_features, "extract_links", counting)
    return calls


def fail_closed() -> GuildConfig:
    assert PLATFORM_GUILD.policy.on_scorer_failure == "fail_closed"
    return PLATFORM_GUILD


TEXTS = [f"claim at https://{PHISHING} now", "hello there", "see https://github.com/heron"]


def test_links_are_extracted_once_per_message_in_a_batch(link_scorer: LinkScorer, extraction_calls: list[str]) -> None:
    service = ModerationService([RulesScorer(), link_scorer])
    decisions = service.decide_batch("t", [(Message(text=t), None) for t in TEXTS])
    assert sorted(extraction_calls) == sorted(TEXTS)
    assert decisions[0].scores["scam"] == 1.0 and decisions[0].action != Action.ALLOW
    assert decisions[2].scores.get("scam") == 0.0


def test_links_are_extracted_once_on_the_async_path(link_scorer: LinkScorer, extraction_calls: list[str]) -> None:
    service = ModerationService([RulesScorer(), link_scorer])
    decision = asyncio.run(service.decide_one_async("t", Message(text=TEXTS[0])))
    assert extraction_calls == [TEXTS[0]]
    assert decision.scores["scam"] == 1.0


def test_only_needed_extractors_run(extraction_calls: list[str]) -> None:
    service = ModerationService([RulesScorer()])
    assert [e.name for e in service.features.extractors] == ["text"]
    service.decide_batch("t", [(Message(text=TEXTS[0]), None)])
    assert extraction_calls == []


class _FailsOn(LinkExtractor):
    """The real link extractor, except that it raises for messages containing `marker`."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def extract(self, items: Sequence[ScoringItem]) -> None:
        if any(self.marker in it.message.text for it in items):
            raise ValueError("cannot parse this one")
        super().extract(items)


def failing_service(link_scorer: LinkScorer, marker: str) -> ModerationService:
    stage = FeatureStage([TextExtractor(), _FailsOn(marker), MediaExtractor()])
    return ModerationService([RulesScorer(), link_scorer], features=stage)


def test_a_failing_extractor_is_a_missing_signal_for_its_scorer(link_scorer: LinkScorer) -> None:
    service = failing_service(link_scorer, marker="BROKEN")
    batch = [(Message(text=f"BROKEN {PHISHING}"), fail_closed()), (Message(text=TEXTS[0]), fail_closed())]
    broken, fine = service.decide_batch("t", batch)
    assert broken.missing_signals == ["links"], "the scorer that needed the failed feature is named"
    assert broken.action == Action.HOLD_FOR_REVIEW  # the guild fails closed; never a silent allow
    assert any("scorer unavailable: links" in r.text for r in broken.reasons)
    # The other message in the batch keeps its links: the stage retried it alone.
    assert fine.missing_signals == [] and fine.scores["scam"] == 1.0


def test_a_failing_extractor_on_the_async_path(link_scorer: LinkScorer) -> None:
    service = failing_service(link_scorer, marker="BROKEN")
    decision = asyncio.run(service.decide_one_async("t", Message(text="BROKEN hello"), fail_closed()))
    assert decision.missing_signals == ["links"] and decision.action == Action.HOLD_FOR_REVIEW


def test_the_failure_reason_reaches_the_scorer(link_scorer: LinkScorer) -> None:
    item = ScoringItem(Message(text="BROKEN x.example"))
    FeatureStage([_FailsOn("BROKEN")]).run([item])
    assert item.context.failed == {Feature.LINKS: "links extractor failed: ValueError: cannot parse this one"}
    assert item.context.missing(link_scorer.needs) == (
        "feature 'links' unavailable: links extractor failed: ValueError: cannot parse this one"
    )
    assert item.context.missing(RulesScorer.needs) is None


def test_media_refs_for_attachments() -> None:
    message = Message(
        text="look",
        attachments=[
            Attachment(url="https://cdn.example/a/cat.PNG?size=2"),
            Attachment(content_base64="aGVsbG8=", content_type="video/mp4", filename="clip.bin"),
            Attachment(url="https://cdn.example/notes", filename="notes.pdf"),
            Attachment(url="https://cdn.example/blob"),
        ],
    )
    media = prepare(message).context.media
    assert [(m.index, m.url, m.inline, m.content_type, m.filename, m.kind) for m in media] == [
        (0, "https://cdn.example/a/cat.PNG?size=2", False, None, None, "image"),  # kind from the URL path
        (1, None, True, "video/mp4", "clip.bin", "video"),  # a declared type wins over the name
        (2, "https://cdn.example/notes", False, None, "notes.pdf", "other"),
        (3, "https://cdn.example/blob", False, None, None, "other"),
    ]
    assert all(m.decoded is None for m in media), "nothing is decoded yet"
    assert prepare(Message(text="no files")).context.media == ()


def test_an_item_built_without_the_stage_still_has_its_normalised_text() -> None:
    item = ScoringItem(Message(text="Ｈｅｌｌｏ"))
    assert item.normalized_text == "hello"
    assert item.context.links == () and item.context.behaviour is None


def test_positional_normalised_text_is_refused() -> None:
    """The old ScoringItem(message, normalized_text, lists) must not silently become a tenant id."""
    with pytest.raises(TypeError):
        ScoringItem(Message(text="x"), "x")  # type: ignore[misc]


# --- plugging in a feature without touching the service --------------------------------------


class _Counters(FeatureExtractor):
    """An async extractor (as a Redis-backed behaviour extractor would be)."""

    name: ClassVar[str] = "counters"
    provides: ClassVar[frozenset[Feature]] = frozenset({Feature.BEHAVIOUR})
    inline: ClassVar[bool] = False

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def extract(self, items: Sequence[ScoringItem]) -> None:
        for it in items:
            self.seen[it.message.author.id] = self.seen.get(it.message.author.id, 0) + 1
            it.context.behaviour = BehaviourSnapshot(counters={"author.messages": self.seen[it.message.author.id]})

    async def extract_async(self, items: Sequence[ScoringItem]) -> None:
        await asyncio.sleep(0)
        self.extract(items)


class _Flood(Scorer):
    name: ClassVar[str] = "flood"
    modality: ClassVar[Modality] = Modality.BEHAVIOR
    labels: ClassVar[tuple[str, ...]] = ("spam",)
    needs: ClassVar[frozenset[Feature]] = frozenset({Feature.BEHAVIOUR})
    inline: ClassVar[bool] = True

    def score(self, items: Sequence[ScoringItem]) -> list[Signal]:
        out = []
        for it in items:
            assert it.context.behaviour is not None
            n = it.context.behaviour.counters["author.messages"]
            out.append(Signal(scorer=self.name, version=self.version, scores={"spam": 1.0 if n > 2 else 0.0}))
        return out


class _Images(Scorer):
    name: ClassVar[str] = "images"
    modality: ClassVar[Modality] = Modality.IMAGE
    labels: ClassVar[tuple[str, ...]] = ("sexual",)
    needs: ClassVar[frozenset[Feature]] = frozenset({Feature.MEDIA})
    inline: ClassVar[bool] = True

    def score(self, items: Sequence[ScoringItem]) -> list[Signal]:
        return [Signal(scorer=self.name, version=self.version, scores={"sexual": 0.0}) for _ in items]


def test_a_new_feature_and_its_scorer_plug_in() -> None:
    counters = _Counters()
    stage = FeatureStage([TextExtractor(), MediaExtractor(), counters])
    assert not stage.sync_only
    service = ModerationService([RulesScorer(), _Flood(), _Images()], features=stage)

    async def three() -> list[Any]:
        return [await service.decide_one_async("t", Message(text=f"buy now {i}")) for i in range(3)]

    decisions = asyncio.run(three())
    assert [d.scores.get("spam") for d in decisions] == [0.0, 0.0, 0.9999]  # a model vote stops short of certain
    # A media scorer skips a text-only message (no signal, and not a missing one either) ...
    assert all("images" not in d.model_versions and not d.missing_signals for d in decisions)
    # ... and applies to an attachment.
    pic = Message(attachments=[Attachment(url="https://cdn.example/x.png")])
    assert "images" in service.decide_batch("t", [(pic, None)])[0].model_versions


def test_build_stage_orders_and_selects_extractors() -> None:
    assert [e.name for e in build_stage().extractors] == ["text", "links", "media", "decode", "behaviour"]
    assert [e.name for e in build_stage({Feature.MEDIA, Feature.TEXT}).extractors] == ["text", "media", "decode"]
    # behaviour reads the text and links, so asking for it brings their extractors along
    assert [e.name for e in build_stage({Feature.BEHAVIOUR}).extractors] == ["text", "links", "behaviour"]
    assert build_stage({Feature.TEXT, Feature.LINKS}).sync_only
    assert not build_stage().sync_only  # the image decoder fetches and decodes: off the event loop
    with pytest.raises(ValueError, match="duplicate"):
        FeatureStage([TextExtractor(), TextExtractor()])


def test_context_defaults() -> None:
    ctx = ItemContext()
    assert ctx.missing({Feature.TEXT, Feature.LINKS}) is None and ctx.failed == {}
