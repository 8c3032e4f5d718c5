"""The spam-text scorer: registered, loads its checked artifact, scores spam above chat."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from models.spam.model import DEFAULT_ARTIFACT_DIR, SpamArtifactError, SpamTextModel
from pipeline.features import prepare
from pipeline.scorers.registry import build
from pipeline.scorers.spam_text import SpamTextScorer
from pipeline.types import Message


@pytest.fixture(scope="module")
def scorer() -> SpamTextScorer:
    s = build("spam_text")
    assert isinstance(s, SpamTextScorer)
    return s


def test_spam_scores_above_chat(scorer: SpamTextScorer) -> None:
    texts = [
        "FREE entry! Text WIN to 80082 to claim your £1000 prize now",
        "check out my channel and subscribe please!! http://youtube.com/mychannel",
        "gg that was a close match",
        "are we still meeting at 6?",
    ]
    sigs = scorer.score([prepare(Message(text=t)) for t in texts])
    spam, chat = [s.scores["spam"] for s in sigs[:2]], [s.scores["spam"] for s in sigs[2:]]
    assert min(spam) > max(chat)
    assert all(s.scorer == "spam_text" and s.version.startswith("spam-text-") for s in sigs)
    assert sigs[0].evidence and not sigs[2].evidence


def test_altered_weights_are_refused(tmp_path: Path) -> None:
    art = tmp_path / "art"
    shutil.copytree(DEFAULT_ARTIFACT_DIR, art)
    data = bytearray((art / "spam_text.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (art / "spam_text.npz").write_bytes(bytes(data))
    with pytest.raises(SpamArtifactError, match="sha256"):
        SpamTextModel.load(art)


def test_metrics_cover_both_sets() -> None:
    m = json.loads((DEFAULT_ARTIFACT_DIR / "metrics.json").read_text())
    for key in ("sms_test", "youtube_lovo_all_rows", "youtube_lovo_test_rows"):
        assert {"tfidf_lr_baseline", "spam_text_model"} <= set(m[key])
        assert 0.0 <= m[key]["spam_text_model"]["f1"] <= 1.0
