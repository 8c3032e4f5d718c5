"""The taxonomy heads as served: one encoder pass, every category, refused on a foreign encoder,
and the probe set's error rates (figurative/technical language vs genuine threats)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from models.text.heads import (
    HEADS_CONFIG,
    HEADS_WEIGHTS,
    LEXICAL_WEIGHTS,
    HeadsMismatchError,
    load_heads,
    window_ids,
)
from models.text.model import CONFIG_FILE, DEFAULT_ARTIFACT_DIR, ArtifactConfig
from pipeline.ensemble import combine
from pipeline.policy import PLATFORM_DEFAULT, decide
from pipeline.scorers.base import ScoringItem
from pipeline.scorers.text import HEAD_LABELS, TRAINED_LABELS, TextScorer
from pipeline.types import Action, Message
from training.text.heads import METRICS_FILE, PROBES_CSV

# Measured with `heron eval text-heads` on the committed heads through the served path (the card's
# probe table); the test allows this many more errors than were measured, for int8 batch noise.
MARGIN = 0.10


def item(text: str) -> ScoringItem:
    return ScoringItem(Message(text=text))


@pytest.fixture(scope="module")
def scorer() -> Iterator[TextScorer]:
    s = TextScorer(cache_size=0).load()  # the serving default
    yield s
    s.close()


def test_heads_are_small_separate_files_fitted_on_this_encoder() -> None:
    cfg = ArtifactConfig.from_file(DEFAULT_ARTIFACT_DIR / CONFIG_FILE)
    heads = load_heads(DEFAULT_ARTIFACT_DIR, cfg.version, cfg.weights.get("sha256"))
    assert heads is not None and set(heads.categories) == set(HEAD_LABELS)
    assert (DEFAULT_ARTIFACT_DIR / HEADS_WEIGHTS).stat().st_size < 2e6
    if heads.lexical is not None:  # the hybrid heads' n-gram side stays a small part of the 40 MB budget
        assert (DEFAULT_ARTIFACT_DIR / LEXICAL_WEIGHTS).stat().st_size < 8e6
    assert tuple(cfg.labels) == TRAINED_LABELS  # the encoder's own config is untouched


def _copy_heads(tmp_path: Path) -> None:
    for name in (HEADS_CONFIG, HEADS_WEIGHTS, LEXICAL_WEIGHTS):
        if (DEFAULT_ARTIFACT_DIR / name).is_file():
            shutil.copy(DEFAULT_ARTIFACT_DIR / name, tmp_path / name)


def test_heads_fitted_on_another_encoder_are_refused(tmp_path: Path) -> None:
    _copy_heads(tmp_path)
    sha = ArtifactConfig.from_file(DEFAULT_ARTIFACT_DIR / CONFIG_FILE).weights.get("sha256")
    with pytest.raises(HeadsMismatchError, match="refit"):
        load_heads(tmp_path, "some-other-encoder", sha)
    assert load_heads(tmp_path / "none", "x") is None  # no heads: those categories go unscored


def test_heads_fitted_on_other_weights_under_the_same_version_are_refused(tmp_path: Path) -> None:
    """The encoder's weights were once rewritten under an unchanged version string; heads fitted on the
    old weights then loaded silently and scored differently. The weights' sha256 is checked too."""
    _copy_heads(tmp_path)
    cfg = ArtifactConfig.from_file(DEFAULT_ARTIFACT_DIR / CONFIG_FILE)
    assert load_heads(tmp_path, cfg.version, cfg.weights.get("sha256")) is not None
    with pytest.raises(HeadsMismatchError, match="other weights"):
        load_heads(tmp_path, cfg.version, "0" * 64)
    # and a served engine on such an artifact refuses to start rather than score with foreign heads
    art = tmp_path / "artifact"
    shutil.copytree(DEFAULT_ARTIFACT_DIR, art)
    heads_cfg = json.loads((art / HEADS_CONFIG).read_text("utf-8"))
    heads_cfg["encoder_weights_sha256"] = "f" * 64
    (art / HEADS_CONFIG).write_text(json.dumps(heads_cfg), "utf-8")
    from models.text.engine import TextEngine

    with pytest.raises(HeadsMismatchError, match="other weights"):
        TextEngine(art, quantize="fp32")


def test_a_long_text_is_read_as_windows_and_a_short_one_as_one() -> None:
    """Window 0 is exactly the truncated sequence every head reads; further windows cover the rest,
    each with its own [CLS]/[SEP]; a tail too short to carry evidence is dropped."""
    cls, sep = 101, 102
    short = [cls, *range(1000, 1010), sep]
    assert window_ids(short, 64) == [short]
    long = [cls, *range(1000, 1000 + 62 * 2 + 20), sep]
    wins = window_ids(long, 64)
    assert len(wins) == 3 and all(w[0] == cls and w[-1] == sep and len(w) <= 64 for w in wins)
    assert wins[0] == long[:63] + [sep]
    assert sum(len(w) - 2 for w in wins) == 62 * 2 + 20
    assert len(window_ids([cls, *range(1000, 1000 + 62 + 5), sep], 64)) == 1  # a 5-token tail is dropped
    assert len(window_ids([cls, *range(1000, 1000 + 62 * 20), sep], 64)) == 8  # at most MAX_WINDOWS


def test_one_encoder_pass_serves_every_category(scorer: TextScorer, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = scorer.engine
    assert engine is not None
    calls = []
    real = engine.forward_padded_pooled
    monkeypatch.setattr(engine, "forward_padded_pooled", lambda *a, **k: calls.append(1) or real(*a, **k))
    sigs = scorer.score([item("hello friend"), item("see you at the game"), item("nice work today")])
    assert len(calls) == 1
    for sig in sigs:
        assert set(sig.scores) == set(TRAINED_LABELS + HEAD_LABELS)


def test_served_heads_match_the_fp32_heads(scorer: TextScorer) -> None:
    """The int8 path's pooled vector feeds the heads: their scores stay close to fp32's."""
    fp32 = TextScorer(quantize="fp32", cache_size=0).load()
    try:
        texts = ["i want to end my life tonight", "I'll stab you", "USPS: your parcel is on hold, pay at url",
                 "send nudes", "you are a worthless idiot", "nice weather today"]
        a = np.array([[s.scores[c] for c in HEAD_LABELS] for s in scorer.score([item(t) for t in texts])])
        b = np.array([[s.scores[c] for c in HEAD_LABELS] for s in fp32.score([item(t) for t in texts])])
        assert np.abs(a - b).max() < 0.15, (a - b).round(3)
    finally:
        fp32.close()


def test_probe_set_error_rates_stay_at_what_was_measured(scorer: TextScorer) -> None:
    import csv

    measured = json.loads((DEFAULT_ARTIFACT_DIR / METRICS_FILE).read_text("utf-8"))["served_probes"]
    with PROBES_CSV.open(newline="", encoding="utf-8") as f:
        probes = list(csv.DictReader(f))
    sigs = scorer.score([item(p["text"]) for p in probes])
    assert scorer.engine is not None
    t = dict(zip(scorer.engine.served_labels, scorer.engine.served_thresholds.tolist(), strict=True))["violence"]
    benign = [s.scores["violence"] >= t for p, s in zip(probes, sigs, strict=True) if p["threat"] == "0"]
    missed = [s.scores["violence"] < t for p, s in zip(probes, sigs, strict=True) if p["threat"] == "1"]
    assert len(benign) >= 25 and len(missed) >= 15
    assert np.mean(benign) <= measured["benign_violence_rate"] + MARGIN
    assert np.mean(missed) <= measured["threat_miss_rate"] + MARGIN


def test_the_issue_examples_for_self_harm_and_scam(scorer: TextScorer) -> None:
    """Two of the three messages the issue was filed with: a crisis message reaches `support`, and
    the USPS smishing text scores scam (it read spam 0.02 before the heads)."""
    pills, usps = scorer.score([
        item("i want to kill myself tonight, i have the pills ready"),
        item("USPS: Your package is on hold due to an incomplete address. Update now at "
             "https://usps-redelivery-center.com/track"),
    ])
    assert pills.scores["self_harm"] >= 0.5 and usps.scores["scam"] >= 0.5, (pills.scores, usps.scores)
    assert decide(combine([pills]), Message(text="x"), PLATFORM_DEFAULT)[0] is Action.SUPPORT
    assert decide(combine([usps]), Message(text="x"), PLATFORM_DEFAULT)[0].severity >= Action.HOLD_FOR_REVIEW.severity


def test_the_issue_example_threat_stands_out_on_violence(scorer: TextScorer) -> None:
    """The issue's threat read violence 0.0 before the heads. With the hybrid violence head (adopted on
    validation, 2026-12-04) it scores 0.19-0.21 on the served int8 path, under the head's threshold
    (0.268; fp32 reaches it: 0.29), where the embedding head alone had reached it (0.49-0.61): a known
    regression on this example, in the card's violence notes and the probe table (threats missed 10 of
    20 instead of 9). What still holds whatever its batch-mates: it scores violence far above everyday
    messages in the same batch."""
    threat = "I am going to find where you live and stab you"
    neutral = ["hello there", "see you at the game tonight", "my package is late again"]
    for batch in ([threat], [*neutral, threat]):
        sigs = scorer.score([item(x) for x in batch])
        assert sigs[-1].scores["violence"] >= 0.1, sigs[-1].scores
        for sig in sigs[:-1]:
            assert sigs[-1].scores["violence"] >= 10 * sig.scores["violence"], (sig.scores, sigs[-1].scores)


def test_ensemble_head_is_one_dense_stack_summing_both_standardised_logits() -> None:
    """The wide search's ensemble (LR + MLP) is stored in the same format serving reads: two dense layers,
    the linear part carried through the ReLU as relu(z) - relu(-z)."""
    from training.text.heads import _ensemble_layers, head_logit

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16)).astype(np.float32)
    lr = [(rng.normal(size=(16, 1)).astype(np.float32), np.array([0.3], np.float32))]
    mlp = [(rng.normal(size=(16, 8)).astype(np.float32), rng.normal(size=8).astype(np.float32)),
           (rng.normal(size=(8, 1)).astype(np.float32), np.array([-0.2], np.float32))]
    za, zb = head_logit(lr, x), head_logit(mlp, x)
    want = (za - za.mean()) / za.std() + (zb - zb.mean()) / zb.std()
    ens = _ensemble_layers(lr, mlp, x)
    assert len(ens) == 2 and ens[0][0].shape == (16, 8 + 2)
    np.testing.assert_allclose(head_logit(ens, x), want, atol=1e-4)


def test_window_heads_read_a_long_text_whole_and_cost_nothing_on_a_short_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A head set to read the windows' mean (`inputs`: "windows", tried for self_harm) gets the same score
    as the first-window head on a short message with no further encoder pass, and on a long post runs one
    more pass for the further windows and scores it differently; the other categories are untouched."""
    from models.text.engine import TextEngine

    art = tmp_path / "artifact"
    shutil.copytree(DEFAULT_ARTIFACT_DIR, art)
    cfg = json.loads((art / HEADS_CONFIG).read_text("utf-8"))
    cfg["inputs"]["self_harm"] = "windows"
    (art / HEADS_CONFIG).write_text(json.dumps(cfg), "utf-8")
    windowed, plain = TextEngine(art, quantize="fp32"), TextEngine(DEFAULT_ARTIFACT_DIR, quantize="fp32")
    j = windowed.served_labels.index("self_harm")
    calls: list[int] = []
    real = windowed.forward_padded_pooled
    monkeypatch.setattr(windowed, "forward_padded_pooled", lambda *a, **k: calls.append(1) or real(*a, **k))
    short = ["i can't do this anymore"]
    np.testing.assert_allclose(windowed.served(short), plain.served(short), atol=1e-6)
    assert len(calls) == 1
    post = [" ".join(["i have been feeling empty for months and nothing helps."] * 8 + ["i want to end it all."])]
    calls.clear()
    a, b = windowed.served(post)[0], plain.served(post)[0]
    assert len(calls) == 2  # the first window with everything else, then the further windows
    assert abs(a[j] - b[j]) > 1e-4
    np.testing.assert_allclose(np.delete(a, j), np.delete(b, j), atol=1e-6)
