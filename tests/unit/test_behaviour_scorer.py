"""The behaviour scorer and model artifact: reasons people can read, scam only for fresh links,
the "certain" level only for repeats, and an artifact that refuses to load when tampered with."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import MappingProxyType

import pytest

from models.behaviour.model import DEFAULT_ARTIFACT_DIR, MODEL_FILE, ArtifactError, load_model
from pipeline.ensemble import combine
from pipeline.features.behaviour import FEATURE_NAMES
from pipeline.features.context import BehaviourSnapshot, ItemContext, ScoringItem
from pipeline.policy import PLATFORM_DEFAULT, decide
from pipeline.scorers.behaviour import BehaviourScorer, describe
from pipeline.types import Action, Message, Signal

OLD = 400 * 86400.0


def _counters(**kw: float) -> dict[str, float]:
    c = dict.fromkeys(FEATURE_NAMES, 0.0)
    c.update(
        {
            "account.age_s": OLD,
            "account.tenure_s": OLD,
            "author.msgs.10s": 1,
            "author.msgs.60s": 1,
            "author.msgs.600s": 1,
            "author.channels.10s": 1,
            "author.channels.60s": 1,
            "author.channels.600s": 1,
        }
    )
    c.update({k.replace("__", "."): v for k, v in kw.items()})
    return c


def _item(counters: dict[str, float], cluster: str | None = None, text: str = "hi") -> ScoringItem:
    snap = BehaviourSnapshot(counters=MappingProxyType(counters), near_duplicates=0, cluster_id=cluster)
    return ScoringItem(Message(text=text), context=ItemContext(behaviour=snap))


@pytest.fixture(scope="module")
def scorer() -> BehaviourScorer:
    return BehaviourScorer().load()


def test_describe_reads_like_a_moderator_note() -> None:
    c = _counters(
        **{
            "author.msgs.10s": 12,
            "author.channels.10s": 5,
            "account.age_s": 180,
            "account.tenure_s": 60,
            "near.authors.600s": 8,
        }
    )
    text = "; ".join(describe(c, "cl_0123456789abcdef"))
    assert "12 messages in 10 s across 5 channels" in text
    assert "account 3 minutes old" in text and "joined 1 minute ago" in text
    assert "same text from 9 accounts in 10 min (spam wave cl_0123456789abcdef)" in text


def test_an_ordinary_message_is_not_spam(scorer: BehaviourScorer) -> None:
    sig = scorer.score([_item(_counters(**{"msg.chars": 30, "author.prior_msgs": 40}))])[0]
    assert sig.ok and sig.scores["spam"] < 0.1 and "scam" not in sig.scores and not sig.evidence


def test_a_cross_channel_burst_from_a_fresh_account_is_spam_and_scam(scorer: BehaviourScorer) -> None:
    c = _counters(
        **{
            "author.msgs.10s": 5,
            "author.msgs.60s": 5,
            "author.msgs.600s": 5,
            "author.channels.10s": 5,
            "author.channels.60s": 5,
            "author.channels.600s": 5,
            "author.dups.600s": 4,
            "author.links.60s": 5,
            "author.prior_msgs": 4,
            "msg.links": 1,
            "msg.invites": 1,
            "msg.chars": 40,
            "account.age_s": 600,
            "account.tenure_s": 300,
            "account.new": 1,
            "account.new_member": 1,
        }
    )
    sig = scorer.score([_item(c)])[0]
    assert sig.scores["spam"] == 1.0 and sig.scores["scam"] == 1.0  # repeated and confident: "certain"
    assert any("5 messages in 10 s across 5 channels" in e.detail for e in sig.evidence)
    # the ensemble takes it as a floor beside a text model that finds the words harmless
    text = Signal(scorer="text", version="t", scores={"spam": 0.05, "scam": 0.02})
    result = combine([text, sig])
    action, reasons = decide(result, Message(text="x"), PLATFORM_DEFAULT)
    assert result.scores["spam"] == 1.0 and action is Action.TIMEOUT_AUTHOR
    assert any("behaviour:" in r.text for r in reasons)


def test_one_message_alone_is_never_certain(scorer: BehaviourScorer) -> None:
    c = _counters(
        **{
            "msg.mentions": 20,
            "msg.mass_mention": 1,
            "author.mentions.60s": 20,
            "account.age_s": 300,
            "account.tenure_s": 60,
            "account.new": 1,
            "account.new_member": 1,
            "msg.chars": 300,
        }
    )
    sig = scorer.score([_item(c)])[0]
    assert 0.9 <= sig.scores["spam"] <= 0.999


def test_missing_features_are_an_error_signal_not_a_zero(scorer: BehaviourScorer) -> None:
    sig = scorer.score([ScoringItem(Message(text="hi"))])[0]
    assert not sig.ok and "behaviour" in (sig.error or "")


def test_a_tampered_artifact_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "artifact"
    shutil.copytree(DEFAULT_ARTIFACT_DIR, d)
    assert load_model(d).version.startswith("behaviour-")
    with (d / MODEL_FILE).open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match="checksum"):
        load_model(d)
