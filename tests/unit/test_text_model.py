"""The committed text model, as a user of TextScorer sees it.

These load the committed artifact (seed 0) over the pinned backbone package, so they check what
ships: abuse outranks friendliness, evasion does not hide an insult, repeats come from the cache,
and the micro-batcher hands each concurrent caller its own answer.
"""

from __future__ import annotations

import json
import random
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from models.text.model import (
    CONFIG_FILE,
    DEFAULT_ARTIFACT_DIR,
    WEIGHTS_FILE,
    ArtifactConfig,
    BackboneMismatchError,
    load_artifact,
    verify_backbone,
)
from pipeline.normalize import NORMALIZER_VERSION
from pipeline.scorers.base import ItemContext, ScoringItem
from pipeline.scorers.text import HEAD_LABELS, TRAINED_LABELS, TextScorer
from pipeline.types import Message
from training.text.data import CANONICAL_VERSION
from training.text.evasion import evade

pytestmark = pytest.mark.skipif(not (DEFAULT_ARTIFACT_DIR / CONFIG_FILE).is_file(),
                                reason="no committed text artifact (run `heron train text`)")

INSULT = "You are a pathetic stupid idiot and everyone hates you"
FRIENDLY = "Thanks so much for helping me with my homework, have a lovely evening"


def item(text: str) -> ScoringItem:
    return ScoringItem(Message(text=text))


@pytest.fixture(scope="module")
def scorer() -> Iterator[TextScorer]:
    s = TextScorer().load()  # the serving default chosen by `heron eval text`
    yield s
    s.close()


@pytest.fixture(scope="module")
def fp32_scorer() -> Iterator[TextScorer]:
    s = TextScorer(quantize="fp32", cache_size=0).load()
    yield s
    s.close()


def test_artifact_is_small_and_pins_its_backbone() -> None:
    cfg = ArtifactConfig.from_file(DEFAULT_ARTIFACT_DIR / CONFIG_FILE)
    assert (DEFAULT_ARTIFACT_DIR / WEIGHTS_FILE).stat().st_size <= 15e6  # the per-file cap (int8 at rest)
    assert set(cfg.backbone["files"]) >= {"model.safetensors", "tokenizer.json", "vocab.txt"}
    for name in ("metrics.json", "MODEL_CARD.md"):
        assert (DEFAULT_ARTIFACT_DIR / name).is_file(), name
    assert tuple(cfg.labels) == TRAINED_LABELS


def test_a_changed_backbone_is_refused_with_a_clear_error() -> None:
    cfg = ArtifactConfig.from_file(DEFAULT_ARTIFACT_DIR / CONFIG_FILE)
    tampered = {**cfg.backbone, "files": {**cfg.backbone["files"], "vocab.txt": "0" * 64}}
    with pytest.raises(BackboneMismatchError, match="vocab.txt"):
        verify_backbone(tampered)


@pytest.mark.parametrize(("field", "what"), [("canonical_version", "canonicalised"),
                                             ("normalizer_version", "normalised")])
def test_an_artifact_trained_on_another_text_form_is_refused(tmp_path: Path, field: str, what: str) -> None:
    data = json.loads((DEFAULT_ARTIFACT_DIR / CONFIG_FILE).read_text("utf-8"))
    data.update(canonical_version=CANONICAL_VERSION, normalizer_version=NORMALIZER_VERSION)
    data[field] = CANONICAL_VERSION + 1 if field == "canonical_version" else NORMALIZER_VERSION + "0"
    (tmp_path / CONFIG_FILE).write_text(json.dumps(data), "utf-8")
    with pytest.raises(ValueError, match=f"{what} as version {data[field]}, .*retrain it with `heron train text`"):
        load_artifact(tmp_path)


def test_every_int8_path_agrees_with_fp32(fp32_scorer: TextScorer) -> None:
    """Each quantised path scores like the fp32 model: same side of the serving threshold on clear
    texts, and probabilities close on ordinary ones (the macro-F1 cost is in metrics.json)."""
    from models.text.engine import TextEngine

    texts = [INSULT, FRIENDLY, "shut up you dumb idiot", "see you at the match tonight",
             "go back to where you came from, nobody wants your kind here", "lol that was so funny"]
    keys = [TextScorer.model_text(item(t)) for t in texts]
    ref = fp32_scorer.engine.served(keys)
    for mode in ("onnx-int8", "onnx-int8-sq"):
        got = TextEngine(quantize=mode, num_threads=1).served(keys)
        assert np.abs(got - ref).max() < 0.15, (mode, np.abs(got - ref).max())
        thr = fp32_scorer.engine.thresholds[0]
        assert (got[:2, 0] >= thr).tolist() == (ref[:2, 0] >= thr).tolist() == [True, False], mode


def test_the_smoothquant_path_needs_its_activation_maxima(tmp_path: Path) -> None:
    from models.text.engine import TextEngine
    from models.text.model import ACT_MAX_FILE, WEIGHTS_FILE

    for name in (CONFIG_FILE, WEIGHTS_FILE, "metrics.json"):
        shutil.copy(DEFAULT_ARTIFACT_DIR / name, tmp_path / name)
    assert not (tmp_path / ACT_MAX_FILE).exists()
    with pytest.raises(FileNotFoundError, match=f"{ACT_MAX_FILE} is missing.*heron train text"):
        TextEngine(tmp_path, quantize="onnx-int8-sq")
    config = json.loads((tmp_path / CONFIG_FILE).read_text("utf-8"))
    config["serving"] = {**config.get("serving", {}), "quantize": "onnx-int8-sq"}  # where serving reads the choice
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config), "utf-8")
    s = TextScorer(artifact_dir=tmp_path, workers=1).load()  # auto falls back instead of failing to load
    try:
        assert s.quantize == "onnx-int8" and s.score([item(INSULT)])[0].ok
    finally:
        s.close()


def test_abuse_scores_higher_than_friendliness(scorer: TextScorer) -> None:
    bad, good = scorer.score([item(INSULT), item(FRIENDLY)])
    assert bad.ok and good.ok
    # the encoder's categories plus the taxonomy heads' (heads.json): every category, none faked
    assert set(bad.scores) == set(TRAINED_LABELS + HEAD_LABELS)
    assert bad.scores["toxicity"] > good.scores["toxicity"] + 0.4
    assert bad.scores["toxicity"] >= scorer.engine.config.thresholds["toxicity"]
    assert good.scores["toxicity"] < scorer.engine.config.thresholds["toxicity"]
    assert "toxicity" in {e.category for e in bad.evidence}  # (harassment may score as high: listed by score)


def test_spam_is_scored_as_spam(scorer: TextScorer) -> None:
    spam, chat = scorer.score([item("WINNER!! You have won a £1000 prize. Call 09061701461 now to claim, "
                                    "txt STOP to end"), item("are we still meeting for lunch tomorrow?")])
    assert spam.scores["spam"] > 0.5 > chat.scores["spam"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_evasion_rewritten_insult_is_still_caught(scorer: TextScorer, seed: int) -> None:
    disguised = evade(INSULT, random.Random(seed), word_prob=0.6)
    assert disguised != INSULT
    (sig,) = scorer.score([item(disguised)])
    assert sig.scores["toxicity"] >= scorer.engine.config.thresholds["toxicity"], disguised


def test_repeats_are_answered_from_the_cache_without_a_forward_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    s = TextScorer(quantize="fp32", cache_size=100).load()
    try:
        first = s.score([item("buy cheap followers now, limited offer")])[0]
        calls = []
        monkeypatch.setattr(s.engine, "forward_padded_pooled", lambda *a, **k: calls.append(1) or 1 / 0)
        # The same text after normalisation: a look-alike spam wave variant.
        again = s.score([item("BUY CHEAP FOLLOWERS NOW, LIMITED OFFER")])[0]
        via_batcher = s.submit(item("buy cheap followers now, limited offer")).result(timeout=10)
        assert calls == []
        assert again.scores == first.scores == via_batcher.scores
        assert s.stats()["cache_hits"] >= 2
    finally:
        s.close()


def test_micro_batcher_gives_each_concurrent_caller_its_own_answer(fp32_scorer: TextScorer) -> None:
    texts = [f"message {i}: " + ("you idiot " * (i % 7) if i % 2 else "nice to meet you " * (i % 5)) for i in range(96)]
    expected = {t: fp32_scorer.engine.served([fp32_scorer.model_text(item(t))])[0] for t in texts}
    before = fp32_scorer.stats()["batches"]
    barrier = threading.Barrier(16)

    def caller(k: int) -> list[tuple[str, dict[str, float]]]:
        barrier.wait()
        futs = [(t, fp32_scorer.submit(item(t))) for t in texts[k::16]]
        return [(t, f.result(timeout=30).scores) for t, f in futs]

    with ThreadPoolExecutor(16) as ex:
        results = [r for chunk in ex.map(caller, range(16)) for r in chunk]
    assert len(results) == len(texts)
    for t, scores in results:
        served = fp32_scorer.engine.served_labels
        np.testing.assert_allclose([scores[c] for c in served], expected[t], atol=2e-4, err_msg=t)
    assert fp32_scorer.stats()["batches"] - before < len(texts), "requests were not batched together"


def test_async_entry_point(fp32_scorer: TextScorer) -> None:
    import asyncio

    async def main() -> list[float]:
        sigs = await asyncio.gather(*(fp32_scorer.score_one_async(item(t)) for t in (INSULT, FRIENDLY)))
        return [s.scores["toxicity"] for s in sigs]

    bad, good = asyncio.run(main())
    assert bad > good


def test_unreadable_and_empty_items_are_errors_not_zeros(fp32_scorer: TextScorer) -> None:
    class Broken:
        def __getattr__(self, name: str) -> object:
            raise RuntimeError("unreadable")

    empty = ScoringItem(Message(text=" ", attachments=[{"url": "https://cdn.example/a.png"}]),
                        context=ItemContext(normalized_text=""))
    sigs = fp32_scorer.score([item(INSULT), ScoringItem(Broken(), context=Broken()), empty])  # type: ignore[arg-type]
    assert sigs[0].ok
    assert sigs[1].error and sigs[1].scores == {}
    assert sigs[2].error and sigs[2].scores == {}


def test_default_artifact_dir_is_inside_the_package() -> None:
    assert DEFAULT_ARTIFACT_DIR == Path(__file__).resolve().parents[2] / "models" / "text" / "artifact"


IDENTITY_NEUTRAL = [
    "As a Muslim woman I love this server",
    "my two dads are coming to the game tonight",
    "happy pride month to all my gay and lesbian friends",
    "I am Black and I am proud of my heritage",
    "shoutout to the Jewish community for organizing the charity stream",
    "my girlfriend is trans and she is amazing at this game",
    "the mexican restaurant near my place is the best",
    "we have a deaf player on our team, she uses the text chat",
]


@pytest.mark.parametrize("text", IDENTITY_NEUTRAL)
def test_naming_an_identity_group_is_not_flagged(scorer: TextScorer, text: str) -> None:
    sig = scorer.score([item(text)])[0]
    for cat in ("toxicity", "hate"):
        assert sig.scores[cat] < scorer.engine.config.thresholds[cat], (cat, sig.scores)
