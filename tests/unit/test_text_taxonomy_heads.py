"""The taxonomy heads as served: one encoder pass, every category, refused on a foreign encoder,
and the probe set's error rates (figurative/technical language vs genuine threats)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from models.text.heads import HEADS_CONFIG, HEADS_WEIGHTS, HeadsMismatchError, load_heads
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
    heads = load_heads(DEFAULT_ARTIFACT_DIR, cfg.version)
    assert heads is not None and set(heads.categories) == set(HEAD_LABELS)
    assert (DEFAULT_ARTIFACT_DIR / HEADS_WEIGHTS).stat().st_size < 2e6
    assert tuple(cfg.labels) == TRAINED_LABELS  # the encoder's own config is untouched


def test_heads_fitted_on_another_encoder_are_refused(tmp_path: Path) -> None:
    for name in (HEADS_CONFIG, HEADS_WEIGHTS):
        shutil.copy(DEFAULT_ARTIFACT_DIR / name, tmp_path / name)
    with pytest.raises(HeadsMismatchError, match="refit"):
        load_heads(tmp_path, "some-other-encoder")
    assert load_heads(tmp_path / "none", "x") is None  # no heads: those categories go unscored


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


def test_the_issue_example_threat_reaches_the_violence_threshold(scorer: TextScorer) -> None:
    """The issue's threat read violence 0.0 before the heads and ~0.1 with the first violence head. The
    refitted head (every EDOS and Toxic Spans training negative, the wide search) puts it over the head's
    own threshold on the served path whatever its batch-mates (measured 0.49-0.61; int8 activations are
    quantised per batch). Still open, in the card's violence notes: the platform default flags violence only
    from 0.5, and this text also scores self_harm ~0.5."""
    threat = "I am going to find where you live and stab you"
    assert scorer.engine is not None
    t = dict(zip(scorer.engine.served_labels, scorer.engine.served_thresholds.tolist(), strict=True))["violence"]
    for batch in ([threat], ["hello there", "see you at the game tonight", "my package is late again", threat]):
        sig = scorer.score([item(x) for x in batch])[-1]
        assert sig.scores["violence"] >= t, (sig.scores, t)


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
