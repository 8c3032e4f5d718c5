"""Behaviour features: windows in message time, idempotency, clusters, and Redis == in-process.

Redis tests run against the real server on 127.0.0.1:6379 (a key prefix per test, deleted after).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.features import FeatureStage, ScoringItem
from pipeline.features.behaviour import (
    FEATURE_NAMES,
    TRIM_EVERY,
    BehaviourExtractor,
    InProcessBackend,
    RedisBackend,
    cluster_id_for,
)
from pipeline.features.links import LinkExtractor
from pipeline.features.text import TextExtractor
from pipeline.types import Message
from training.behaviour.simulate import simulate

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REDIS_URL = "redis://127.0.0.1:6379/0"


def _stage(backend: InProcessBackend | RedisBackend) -> FeatureStage:
    return FeatureStage([TextExtractor(), LinkExtractor(), BehaviourExtractor(backend)])


def _msg(i: int, *, author: str = "u1", channel: str = "c1", text: str = "hello there", dt: float = 0.0,
         age_s: float = 400 * 86400, guild: str = "g1") -> Message:  # fmt: skip
    ts = T0 + timedelta(seconds=dt)
    return Message(
        id=f"m{i}",
        guild_id=guild,
        channel_id=channel,
        author={
            "id": author,
            "created_at": (ts - timedelta(seconds=age_s)).isoformat(),
            "joined_at": (ts - timedelta(days=30)).isoformat(),
        },  # fmt: skip
        text=text,
        timestamp=ts,
    )


def _run(stage: FeatureStage, messages: list[Message], tenant: str = "t1", batch: int = 16) -> list[dict]:
    out = []
    for i in range(0, len(messages), batch):
        items = [ScoringItem(m, tenant_id=tenant) for m in messages[i : i + batch]]
        stage.run(items)
        for it in items:
            assert not it.context.failed, it.context.failed
            snap = it.context.behaviour
            assert snap is not None
            out.append({**snap.counters, "cluster": snap.cluster_id})
    return out


@pytest.fixture
def redis_backend() -> Iterator[RedisBackend]:
    prefix = f"heron:test:{uuid.uuid4().hex[:8]}:"
    backend = RedisBackend(REDIS_URL, prefix=prefix)
    try:
        backend.client.ping()
    except redis.exceptions.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379; the behaviour tests need the real server")
    yield backend
    keys = list(backend.client.scan_iter(prefix + "*"))
    if keys:
        backend.client.delete(*keys)
    backend.close()


def test_windows_are_message_time() -> None:
    """Counts come from the messages' timestamps, not the wall clock: 12 messages in 11 s across
    5 channels, then one 10 minutes later that sees none of them."""
    msgs = [_msg(i, channel=f"c{i % 5}", dt=i) for i in range(12)] + [_msg(99, dt=12 + 700)]
    rows = _run(_stage(InProcessBackend()), msgs)
    last_burst = rows[11]
    assert last_burst["author.msgs.10s"] == 11  # t=1..11 (inclusive window [ts-10, ts])
    assert last_burst["author.msgs.60s"] == 12
    assert last_burst["author.channels.10s"] == 5
    assert last_burst["guild.msgs.10s"] == 11
    assert rows[-1]["author.msgs.600s"] == 1 and rows[-1]["guild.msgs.600s"] == 1
    assert rows[-1]["author.prior_msgs"] == 12
    assert set(FEATURE_NAMES) <= set(rows[0])


def test_redelivery_counts_once_and_returns_the_same_features() -> None:
    stage = _stage(InProcessBackend())
    msgs = [_msg(i, dt=i) for i in range(5)]
    first = _run(stage, msgs)
    again = _run(stage, msgs[:3] + msgs[:3])  # retries and a duplicate inside one batch
    assert again == first[:3] + first[:3]
    after = _run(stage, [_msg(5, dt=5)])[0]
    assert after["author.msgs.10s"] == 6 and after["author.prior_msgs"] == 5


def test_warm_up_traffic_is_not_recorded() -> None:
    stage = _stage(InProcessBackend())
    _run(stage, [_msg(i, dt=i) for i in range(3)], tenant="warm-up")
    assert _run(stage, [_msg(0, dt=0)], tenant="warm-up")[0]["author.prior_msgs"] == 0


def test_mentions_links_account_and_first_link() -> None:
    text = "<@123456> <@!222> <@&333> <@444> <@555> join discord.gg/abcd now"
    row = _run(_stage(InProcessBackend()), [_msg(1, text=text, age_s=180)])[0]
    assert row["msg.mentions"] == 5 and row["msg.mass_mention"] == 1
    assert row["msg.links"] == 1 and row["msg.invites"] == 1
    assert row["msg.first_with_link"] == 1
    assert row["account.age_s"] == 180 and row["account.new"] == 1


def test_near_duplicates_form_one_cluster_across_authors() -> None:
    backend = InProcessBackend()
    stage = _stage(backend)
    raid = [_msg(i, author=f"r{i}", channel=f"c{i % 3}", text="hi all join discord.gg/xyz" + "!" * (i % 3), dt=i)
            for i in range(8)]  # fmt: skip
    other = [_msg(100, author="normal", text="anyone up for a match tonight?", dt=9)]
    rows = _run(stage, raid + other)
    assert rows[0]["cluster"] is None  # nothing to be near yet
    ids = {r["cluster"] for r in rows[1:8]}
    assert ids == {cluster_id_for("t1|g1", "m0")}
    assert rows[7]["near.authors.600s"] == 7 and rows[7]["cluster.authors"] == 8
    assert rows[8]["cluster"] is None and rows[8]["near.msgs.600s"] == 0
    cluster = backend.cluster("t1", ids.pop())
    assert cluster is not None
    assert cluster["message_count"] == 8 and cluster["author_count"] == 8
    assert cluster["sample_text"].startswith("hi all")
    assert cluster["first_seen"] == T0.isoformat() and [m["message_id"] for m in cluster["members"]][:2] == ["m0", "m1"]


def test_tenants_and_guilds_do_not_share_state() -> None:
    stage = _stage(InProcessBackend())
    _run(stage, [_msg(i, dt=i) for i in range(4)], tenant="a")
    assert _run(stage, [_msg(10, dt=5)], tenant="b")[0]["author.msgs.10s"] == 1
    assert _run(stage, [_msg(11, dt=5, guild="g2")], tenant="a")[0]["author.msgs.10s"] == 1


def test_redis_and_in_process_give_the_same_features(redis_backend: RedisBackend) -> None:
    """A simulated guild (bursts, raids, cross-channel spam), batched differently on each side."""
    stream = [s.message for s in simulate(7)][:600]
    memory = _run(_stage(InProcessBackend()), stream, batch=64)
    rb = _run(_stage(redis_backend), stream, batch=50)
    assert len(memory) == len(rb) == len(stream)
    for i, (a, b) in enumerate(zip(memory, rb, strict=True)):
        assert a == b, (i, {k: (a[k], b[k]) for k in a if a[k] != b[k]})
    assert any(r["cluster"] for r in memory) and max(r["author.msgs.10s"] for r in memory) >= 3
    # every key carries an expiry, also one a later message of the same script call created
    # (the script expires a key once per call)
    keys = list(redis_backend.client.scan_iter(redis_backend.prefix + "*"))
    assert keys and all(redis_backend.client.ttl(k) > 0 for k in keys)


def test_redis_one_round_trip_per_batch_and_idempotent(redis_backend: RedisBackend) -> None:
    stage = _stage(redis_backend)
    msgs = [_msg(i, channel=f"c{i % 4}", dt=i * 0.5) for i in range(40)]
    _run(stage, msgs[:20], batch=20)  # first call also loads the script
    before = redis_backend.round_trips()
    first = _run(stage, msgs[20:], batch=20)
    assert redis_backend.round_trips() - before == 1
    assert _run(stage, msgs[20:], batch=20) == first  # redelivered: stored snapshots, nothing recounted
    cid = _run(stage, [_msg(50, author="x", dt=30)])[0]["cluster"]
    assert cid is not None
    cluster = redis_backend.cluster("t1", cid)
    assert cluster is not None and cluster["author_count"] == 2
    # expiry is set on every key the script writes
    assert all(redis_backend.client.ttl(k) > 0 for k in redis_backend.client.scan_iter(redis_backend.prefix + "*"))


def test_a_key_first_written_late_in_a_script_call_still_expires(redis_backend: RedisBackend) -> None:
    """The guild's new-account set does not exist until a new account posts: in one call, an old
    member's message comes first (nothing to expire yet), a 5-minute-old account's second."""
    _run(_stage(redis_backend), [_msg(1), _msg(2, author="fresh", age_s=300, dt=1)], batch=16)
    keys = list(redis_backend.client.scan_iter(redis_backend.prefix + "*gn|*"))
    assert keys and all(redis_backend.client.ttl(k) > 0 for k in keys)


def test_windowed_sets_stay_bounded_though_not_every_message_trims(redis_backend: RedisBackend) -> None:
    """Trimming is one message in TRIM_EVERY: an author chatting for an hour keeps about ten
    minutes of entries in Redis, not an hour's, and the counts are the in-process backend's."""
    msgs = [_msg(i, text=f"message number {i}", dt=i * 15.0) for i in range(240)]  # one every 15 s, 1 h
    memory = _run(_stage(InProcessBackend()), msgs, batch=32)
    rb = _run(_stage(redis_backend), msgs, batch=32)
    assert memory == rb
    assert rb[-1]["author.msgs.600s"] == 41  # [t - 600 s, t] at one message per 15 s
    key = f"{redis_backend.prefix}a|t1|g1|u1"
    held = redis_backend.client.zcard(key)
    assert 41 <= held <= 41 + 3 * TRIM_EVERY, held  # not 240


def test_text_with_separators_reaches_the_cluster_intact(redis_backend: RedisBackend) -> None:
    """The script gets each message as one \\x1f-separated record with the text last: a text holding
    that character (or '|', the members' separator) is kept whole, on both backends."""
    odd = "free | nitro \x1f here | now"
    msgs = [_msg(i, author=f"u{i}", text=odd, dt=i) for i in range(3)]
    memory, rb = _run(_stage(InProcessBackend()), msgs), _run(_stage(redis_backend), msgs)
    assert memory == rb and rb[-1]["near.authors.600s"] == 2
    cluster = redis_backend.cluster("t1", rb[-1]["cluster"])
    assert cluster is not None and cluster["sample_text"] == odd


def test_minhash_signatures_are_datasketchs() -> None:
    """The extractor computes MinHash in one NumPy expression; the signatures are datasketch's."""
    import zlib

    import numpy as np
    from datasketch import MinHash

    from pipeline.features.behaviour import NUM_PERM, _MinHasher

    hasher = _MinHasher()
    for text in ("hi all", "FREE NITRO 🎁 claim now at discord-gift.xyz/abc", "gg", "x" * 300, "Ünïcödé  text\n"):
        norm = " ".join(text.lower().split())
        padded = f" {norm} "
        ref = MinHash(num_perm=NUM_PERM, seed=1, hashfunc=zlib.crc32)
        ref.update_batch([padded[i : i + 3].encode() for i in range(len(padded) - 2)])
        assert np.array_equal(hasher.signature(text), ref.hashvalues), text
    assert hasher.signature("   ") is None and hasher.bands("") == ()


def test_moderate_replays_a_log_with_behaviour(tmp_path: Path) -> None:
    """`heron moderate --input` carries state from line to line: a cross-channel spammer is
    stopped by its third message, with behaviour reasons, under the platform default policy."""
    lines = []
    for i in range(6):
        lines.append(_msg(i, author="spammer", channel=f"c{i}", text="free nitro here discord.gg/fr33", dt=i,
                          age_s=300).model_dump_json())  # fmt: skip
    for i in range(6, 12):
        lines.append(_msg(i, author=f"m{i}", channel="c0", text="good game everyone", dt=20 + i).model_dump_json())
    src = tmp_path / "log.jsonl"
    src.write_text("\n".join(lines) + "\n")  # a recorded log: in time order, streamed line by line
    out = tmp_path / "decisions.jsonl"
    res = CliRunner().invoke(
        app, ["moderate", "--input", str(src), "--output", str(out), "--scorers", "rules,behaviour", "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    assert "earlier than a line before them" not in res.output
    decisions = {d["id"]: d for d in map(json.loads, out.read_text().splitlines())}
    third = decisions["m2"]
    assert third["action"] in ("hold_for_review", "block", "timeout_author"), third
    text = " ".join(r["text"] for r in third["reasons"])
    assert "behaviour" in text and "minutes old" in text
    legit = [decisions[f"m{i}"]["action"] for i in range(6, 12)]
    assert legit.count("allow") == 6, legit
    # A log out of order is still decided, and the CLI says so (behaviour windows need time order).
    src.write_text("\n".join(reversed(lines)) + "\n")
    res = CliRunner().invoke(
        app, ["moderate", "--input", str(src), "--output", str(out), "--scorers", "rules,behaviour", "--no-progress"]
    )
    assert res.exit_code == 0 and "11 lines have a timestamp earlier" in res.output, res.output
    assert len(out.read_text().splitlines()) == 12
