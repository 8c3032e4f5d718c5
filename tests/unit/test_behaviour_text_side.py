"""The behaviour model's text side: it reads the text model's spam score for the same message,
handed over by the service (no second forward pass), on every path a message takes: the batch
path (workers), the one-message async path (the API) and `heron moderate` with model workers.

Uses the committed text and behaviour models; behaviour state is in-process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pytest

from models.text.model import CONFIG_FILE, DEFAULT_ARTIFACT_DIR
from pipeline.batch import BatchModerator
from pipeline.ensemble import combine
from pipeline.features.behaviour import FEATURE_NAMES, UNKNOWN_AGE_S
from pipeline.features.context import BehaviourSnapshot, ItemContext, ScoringItem
from pipeline.guilds import PLATFORM_GUILD
from pipeline.policy import PLATFORM_DEFAULT, decide
from pipeline.scorers.behaviour import BehaviourScorer
from pipeline.service import ModerationService
from pipeline.settings import Settings
from pipeline.types import Action, Message, Signal

pytestmark = pytest.mark.skipif(not (DEFAULT_ARTIFACT_DIR / CONFIG_FILE).is_file(), reason="no committed text artifact")

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = 400 * 86400.0
SPAM = "FREE entry to win an iPhone, text WIN to 80086 now! T&C apply"


def _counters(**kw: float) -> dict[str, float]:
    c = dict.fromkeys(FEATURE_NAMES, 0.0)
    for name in ("author.msgs", "author.channels"):
        for w in ("10s", "60s", "600s"):
            c[f"{name}.{w}"] = 1.0
    c.update({"account.age_s": OLD, "account.tenure_s": OLD, "msg.chars": 60.0})
    c.update({k.replace("__", "."): v for k, v in kw.items()})
    return c


def _item(counters: dict[str, float], text_spam: float | None) -> ScoringItem:
    snap = BehaviourSnapshot(counters=MappingProxyType(counters))
    ctx = ItemContext(behaviour=snap)
    if text_spam is not None:
        ctx.signals["text"] = Signal(scorer="text", version="t", scores={"spam": text_spam})
    return ScoringItem(Message(text="x"), context=ctx)


# A brand-new account's first message in the guild, carrying a link: behaviour alone cannot tell a
# drive-by spammer from a newcomer sharing a link; the text can.
FRESH_LINK = {"account.age_s": 600.0, "account.tenure_s": 120.0, "account.new": 1.0, "account.new_member": 1.0,
              "msg.links": 1.0, "msg.first_with_link": 1.0, "author.links.60s": 1.0}  # fmt: skip


@pytest.fixture(scope="module")
def scorer() -> BehaviourScorer:
    return BehaviourScorer().load()


def test_the_text_score_decides_a_fresh_accounts_first_link(scorer: BehaviourScorer) -> None:
    spam, ham, none = scorer.score([_item(_counters(**FRESH_LINK), t) for t in (0.98, 0.02, None)])
    assert spam.scores["spam"] >= 0.9, spam  # held: a fresh account's first message reads as spam
    assert ham.scores["spam"] < 0.6, ham  # not even flagged: a newcomer sharing a link
    assert ham.scores["spam"] < none.scores["spam"] < spam.scores["spam"]
    assert any("text reads as spam (0.98)" in e.detail for e in spam.evidence)


def test_a_spam_looking_text_from_an_established_member_is_the_behaviour_models_call(scorer: BehaviourScorer) -> None:
    """One spam-looking text from an old member at a normal pace ("check this out <link>" reads as
    YouTube spam to the text model): the behaviour model, which read that score, supersedes the text
    vote for spam, so the member is not blocked for sharing a link. Without the author's dates the
    model knows nothing of the author, and the text model's vote stands."""
    member = _counters(**{"author.prior_msgs": 40.0, "author.msgs.600s": 3.0})
    sig = scorer.score([_item(member, 0.995)])[0]
    assert sig.scores["spam"] < 0.6 and sig.supersedes == ["spam"], sig
    text = Signal(scorer="text", version="t", scores={"spam": 0.995, "scam": 0.7})
    result = combine([text, sig])
    action, _ = decide(result, Message(text="x"), PLATFORM_DEFAULT)
    assert result.scores["spam"] == sig.scores["spam"] and action is not Action.BLOCK
    assert result.scores["scam"] == 0.7 and action is Action.HOLD_FOR_REVIEW  # a lure is still a scam
    unknown = _counters(**{"account.age_s": UNKNOWN_AGE_S, "account.tenure_s": UNKNOWN_AGE_S})
    blind = scorer.score([_item(unknown, 0.995)])[0]
    assert blind.supersedes == []
    action, _ = decide(
        combine([Signal(scorer="text", version="t", scores={"spam": 0.995}), blind]),
        Message(text="x"),
        PLATFORM_DEFAULT,
    )
    assert action is Action.BLOCK
    listed = Signal(scorer="rules", version="r", scores={"spam": 1.0}, definitive=True)
    assert combine([text, sig, listed]).scores["spam"] == 1.0  # a word-list match keeps its floor


def test_a_harmless_text_does_not_excuse_a_raid(scorer: BehaviourScorer) -> None:
    """ "hi all" from a raider reads as ham to the text model; the behaviour still stops it."""
    raid = _counters(**{**FRESH_LINK, "msg.links": 0.0, "msg.first_with_link": 0.0, "author.links.60s": 0.0,
                        "author.msgs.60s": 3.0, "author.msgs.600s": 3.0, "author.dups.600s": 2.0,
                        "author.prior_msgs": 2.0, "near.msgs.600s": 20.0, "near.authors.600s": 9.0,
                        "cluster.msgs": 21.0, "cluster.authors": 10.0, "cluster.new_authors": 10.0,
                        "guild.new_authors.60s": 10.0, "msg.chars": 8.0})  # fmt: skip
    sig = scorer.score([_item(raid, 0.004)])[0]
    assert sig.scores["spam"] >= 0.9, sig


def _message(i: int, text: str, *, age: timedelta, tenure: timedelta, dt: float = 0.0) -> Message:
    ts = T0 + timedelta(seconds=dt)
    return Message(
        id=f"m{i}", guild_id="g1", channel_id="general", text=text, timestamp=ts,
        author={"id": f"u{i}", "created_at": (ts - age).isoformat(), "joined_at": (ts - tenure).isoformat()},
    )  # fmt: skip


def _drive_by() -> Message:
    return _message(1, SPAM, age=timedelta(minutes=10), tenure=timedelta(minutes=2))


@pytest.fixture(scope="module")
def service() -> Iterator[ModerationService]:
    svc = ModerationService.from_names(["text", "behaviour"], settings=Settings(redis_url=None))
    yield svc
    svc.close()


def _behaviour_reason(d: object) -> str:
    return " ".join(r.text for r in d.reasons if "behaviour" in r.text)  # type: ignore[attr-defined]


def test_the_service_hands_the_text_signal_to_the_behaviour_scorer(service: ModerationService) -> None:
    batch = service.decide_batch("t-batch", [(_drive_by(), None)])[0]
    assert "text reads as spam" in _behaviour_reason(batch), batch.reasons
    assert batch.action in (Action.HOLD_FOR_REVIEW, Action.BLOCK), batch
    # the API's one-message path: the text model is awaited, then the behaviour scorer reads it
    one = asyncio.run(service.decide_one_async("t-async", _drive_by()))
    assert "text reads as spam" in _behaviour_reason(one), one.reasons
    assert one.scores["spam"] == batch.scores["spam"]
    # without the text scorer the behaviour model scores behaviour alone, and says less
    alone = ModerationService(
        [s for s in service.scorers if s.name == "behaviour"], features=service.features
    ).decide_batch("t-alone", [(_drive_by(), None)])[0]
    assert "text reads as spam" not in _behaviour_reason(alone)
    assert (alone.scores["spam"] or 0.0) < batch.scores["spam"]  # type: ignore[operator]


def test_moderate_with_model_workers_hands_the_text_signal_over(tmp_path: Path) -> None:
    """`heron moderate` scores text on worker processes; the behaviour scorer still reads it."""
    lines = [_drive_by().model_dump_json(exclude={"attachments", "context"})]
    sink = tmp_path / "out.jsonl"
    with (
        sink.open("w") as out,
        BatchModerator(["text", "behaviour"], PLATFORM_GUILD, workers=1, settings=Settings(redis_url=None)) as mod,
    ):
        result = mod.run(lines, out)
    assert result.decided == 1 and not result.warnings, result
    decision = json.loads(sink.read_text())
    reasons = " ".join(r["text"] for r in decision["reasons"])
    assert "text reads as spam" in reasons, decision


def test_fifty_members_saying_gg_after_a_match_is_not_a_raid(service: ModerationService) -> None:
    """The same two letters from fifty accounts in twenty seconds, a few of them new to the guild:
    a near-duplicate wave by the counters, and every message allowed."""
    msgs = []
    for i in range(50):
        tenure = timedelta(hours=5) if i % 8 == 0 else timedelta(days=90 + i)
        msgs.append(_message(100 + i, ("gg", "GG", "gg wp", "ggs")[i % 4], age=timedelta(days=300 + i),
                             tenure=tenure, dt=i * 0.4))  # fmt: skip
    decisions = service.decide_batch("t-gg", [(m, None) for m in msgs])
    assert [d.action for d in decisions] == [Action.ALLOW] * 50, [(d.action, d.scores["spam"]) for d in decisions]


def test_members_sharing_links_are_not_blocked_as_youtube_spam(service: ModerationService) -> None:
    """The text model learned from YouTube comments that "check this out <link>" is spam (0.99+).
    From long-standing members chatting at a normal pace, no such message is flagged as spam; the
    same words as a 10-minute-old account's first message in the guild are still stopped. (The
    scam head's own reading of link-sharing is its business, not the spam vote's.)"""
    shares = (
        "check this out https://www.youtube.com/watch?v=dQw4w9WgXcQ",
        "here's the clip https://clips.twitch.tv/Abc",
        "watch this, the ending is wild https://youtu.be/abc123",
        "check it out, i finally beat the boss",
    )
    msgs = [_message(200 + i, text, age=timedelta(days=700), tenure=timedelta(days=300), dt=i * 20.0)
            for i, text in enumerate(shares)]  # fmt: skip
    decisions = service.decide_batch("t-shares", [(m, None) for m in msgs])
    assert all(d.scores["spam"] < 0.6 for d in decisions), [d.scores["spam"] for d in decisions]
    assert not [r for d in decisions for r in d.reasons if r.category == "spam"]
    fresh = _message(300, shares[0], age=timedelta(minutes=10), tenure=timedelta(minutes=1))
    stopped = service.decide_batch("t-fresh", [(fresh, None)])[0]
    assert stopped.action in (Action.HOLD_FOR_REVIEW, Action.BLOCK, Action.TIMEOUT_AUTHOR), stopped


def test_a_text_model_alone_never_times_an_author_out() -> None:
    """Timeout (the platform default's spam and scam 1.0 rules) needs certainty: a list match or the
    behaviour scorer's certain level. A text model's 0.99996 used to round to 1.0 and time out the
    author of "check out my channel ... please subscribe"."""
    text = Signal(scorer="text", version="t", scores={"spam": 0.99996, "scam": 0.99997})
    result = combine([text])
    action, _ = decide(result, Message(text="x"), PLATFORM_DEFAULT)
    assert result.scores["spam"] < 1.0 and action is Action.BLOCK
    listed = Signal(scorer="rules", version="r", scores={"spam": 1.0}, definitive=True)
    assert decide(combine([text, listed]), Message(text="x"), PLATFORM_DEFAULT)[0] is Action.TIMEOUT_AUTHOR
