"""End to end: a real Matrix Synapse homeserver (PyPI matrix-synapse, its own virtualenv, SQLite,
127.0.0.1) moderated through `heron serve` by the heron-synapse module. Users register, create a
room and send over the client-server API; nothing is mocked.

The decisions are made by a guild word/link list and policy set through Heron's API, so they do
not depend on the text model's scores.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from heron_client import HeronAPIError, HeronClient

from tests.integration.conftest import free_port
from tests.integration.synapse_harness import HeronServer, MatrixUser, SynapseServer, ensure_synapse_venv

# The first run on a fresh machine builds the Synapse virtualenv (about 5 minutes here).
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

LISTS = {
    "keywords": {"violence": ["zzthreatword"], "harassment": ["zzholdword"]},
    "blocked_links": ["phish.example"],
}
POLICY = {
    "thresholds": {
        "violence": [{"threshold": 0.9, "action": "block"}],
        "harassment": [{"threshold": 0.5, "action": "hold_for_review"}],
        "scam": [{"threshold": 0.9, "action": "timeout_author"}],
    }
}


def wait_for(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


class World:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.python = ensure_synapse_venv()
        # The scorers these checks are about (text, lists, hash banks): the NSFW, QR and OCR models
        # would only add their first-use export and OCR time to every image's async decision.
        self.heron = HeronServer(tmp / "heron", scorers='["rules", "links", "text", "image_hash"]')
        self.heron.start()
        self.client = HeronClient(self.heron.url, self.heron.key)
        self.synapse_port = free_port()
        hook = self.client.put_webhook(f"http://127.0.0.1:{self.synapse_port}/_heron/webhook")
        assert hook.secret
        self.secret = hook.secret
        self.synapse: SynapseServer | None = None

    def start_synapse(self, name: str, fail_open: bool, budget_ms: int = 2000) -> SynapseServer:
        if self.synapse is not None:
            self.synapse.stop()
        s = SynapseServer(self.tmp / "synapse", self.python, None)
        s.port = self.synapse_port
        s.url = f"http://127.0.0.1:{s.port}"
        s.module_config = {
            "api_url": self.heron.url,
            "api_key": self.heron.key,
            # Generous on a shared 2-core CI machine: the test is about behaviour, not speed
            # (bench/bench_synapse.py measures the added latency).
            "budget_ms": budget_ms,
            "fail_open": fail_open,
            "webhook_secret": self.secret,
            "homeserver_url": s.url,
            "mute_seconds": 4,
            "mute_check_interval_s": 0.5,
            "state_path": str(self.tmp / "heron_synapse_state.db"),
        }
        if self.synapse is not None:  # restarting: keep the same homeserver (db, key, secret)
            s.shared_secret = self.synapse.shared_secret
        s.start()
        self.synapse = s
        return s

    def close(self) -> None:
        if self.synapse is not None:
            self.synapse.stop()
        self.heron.stop()
        self.client.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("synapse_e2e"))
    try:
        w.start_synapse("open", fail_open=True)
        yield w
    finally:
        w.close()


@pytest.fixture(scope="module")
def room(world: World) -> tuple[MatrixUser, MatrixUser, str]:
    assert world.synapse is not None
    alice = MatrixUser(world.synapse, "alice")
    bob = MatrixUser(world.synapse, "bob")
    room_id = alice.create_room()
    bob.join(room_id)
    guild = room_id[1:]  # heron_synapse.ids.guild_id_for_room: the room id without its sigil
    world.client.put_guild(guild, policy=POLICY, lists=LISTS)
    return alice, bob, room_id


def bodies(user: MatrixUser, room_id: str) -> list[str]:
    return [e["content"].get("body", "") for e in user.messages(room_id) if e["type"] == "m.room.message"]


def test_threat_rejected_at_send_benign_delivered(world: World, room: tuple[MatrixUser, MatrixUser, str]) -> None:
    alice, bob, room_id = room
    threat = bob.send_text(room_id, "I know where you live zzthreatword")
    assert threat.status_code == 403, threat.text
    assert threat.json()["errcode"] == "M_FORBIDDEN"
    assert threat.json()["org.heron.action"] == "block"

    benign = bob.send_text(room_id, "good morning everyone")
    assert benign.status_code == 200, benign.text
    seen = bodies(alice, room_id)
    assert "good morning everyone" in seen
    assert not any("zzthreatword" in b for b in seen)
    # Heron has the author mapped from Synapse: account age, join time and power-level role.
    d = world.client.get_decision(benign.json()["event_id"][1:])
    assert d.action == "allow" and d.guild_id == room_id[1:]


def redacted(user: MatrixUser, room_id: str, event_id: str) -> bool:
    ev = user.event(room_id, event_id)
    return "redacted_because" in ev.get("unsigned", {}) and not ev["content"]


def test_held_after_the_fact_is_redacted_once(world: World, room: tuple[MatrixUser, MatrixUser, str]) -> None:
    alice, bob, room_id = room
    sent = bob.send_text(room_id, "you are such a zzholdword")
    assert sent.status_code == 200, sent.text  # hold_for_review is delivered, then redacted
    event_id = sent.json()["event_id"]
    wait_for(lambda: redacted(alice, room_id, event_id), what="the held message to be redacted")
    decision = world.client.get_decision(event_id[1:])
    assert decision.action == "hold_for_review"

    # Each revision applies once: a redelivery of the same revision changes nothing.
    def last(decision_id: str) -> dict[str, Any]:
        return dict(world.client.deliveries(decision_id)[-1])

    wait_for(lambda: last(decision.id)["status"] == "delivered", what="the first delivery")
    before = last(decision.id)["attempts"]
    world.client.redeliver(decision.id)
    wait_for(
        lambda: (d := last(decision.id))["status"] == "delivered" and d["attempts"] > before,
        what="the redelivery",
    )
    assert last(decision.id)["last_status_code"] == 200
    redactions = [e for e in alice.messages(room_id, 100) if e["type"] == "m.room.redaction"]
    assert [e.get("redacts") or e["content"].get("redacts") for e in redactions].count(event_id) == 1


def test_reviewer_revision_redacts(world: World, room: tuple[MatrixUser, MatrixUser, str]) -> None:
    alice, bob, room_id = room
    sent = bob.send_text(room_id, "totally normal message with a hidden insult")
    assert sent.status_code == 200
    event_id = sent.json()["event_id"]
    decision_id = world.client.get_decision(event_id[1:]).id
    deadline = time.monotonic() + 30
    while True:  # answered before it is written: the override needs the stored decision
        try:
            world.client.revise(decision_id, "hold_for_review", "a moderator read it in context", actor="mod-1")
            break
        except HeronAPIError as exc:
            assert exc.code == "decision_not_found" and time.monotonic() < deadline
            time.sleep(0.1)
    wait_for(lambda: redacted(alice, room_id, event_id), what="the revised message to be redacted")


def test_timeout_author_mutes_then_expires(world: World, room: tuple[MatrixUser, MatrixUser, str]) -> None:
    alice, _bob, room_id = room
    assert world.synapse is not None
    carol = MatrixUser(world.synapse, "carol")
    carol.join(room_id)
    r = carol.send_text(room_id, "claim your prize at https://phish.example/win")
    assert r.status_code == 403 and r.json()["org.heron.action"] == "timeout_author"
    wait_for(lambda: alice.power_levels(room_id).get("users", {}).get(carol.user_id) == -1, what="the mute")
    muted = carol.send_text(room_id, "am I muted?")
    assert muted.status_code == 403  # by Matrix's own power-level rules now
    wait_for(lambda: carol.user_id not in alice.power_levels(room_id).get("users", {}), what="the mute to expire")
    assert carol.send_text(room_id, "back again").status_code == 200


def test_image_added_to_a_hash_bank_is_redacted(world: World, room: tuple[MatrixUser, MatrixUser, str]) -> None:
    """An m.image goes to Heron inline (downloaded from Synapse's media repository by the module);
    once its PDQ hash is added to a bank, Heron revises the decision and the module redacts it.
    """
    import cv2
    import numpy as np

    from pipeline.images.decode import DecodeLimits, decode_bytes
    from pipeline.images.pdq import hash_frame

    alice, bob, room_id = room
    blocks = np.random.default_rng(21).integers(0, 256, (12, 12, 3)).astype(np.uint8)
    ok, png = cv2.imencode(".png", cv2.resize(blocks, (240, 240), interpolation=cv2.INTER_NEAREST))
    assert ok
    data = png.tobytes()
    up = bob.http.post(
        "/_matrix/media/v3/upload", content=data, headers={"Content-Type": "image/png"}, params={"filename": "a.png"}
    )
    up.raise_for_status()
    sent = bob.send(
        room_id,
        {
            "msgtype": "m.image",
            "body": "a.png",
            "url": up.json()["content_uri"],
            "info": {"mimetype": "image/png", "size": len(data)},
        },
    )
    assert sent.status_code == 200, sent.text
    event_id = sent.json()["event_id"]
    first = wait_for(lambda: _decision(world, event_id[1:]), what="the image's decision")
    assert first.action not in ("hold_for_review", "block", "timeout_author")
    assert not redacted(alice, room_id, event_id)

    pdq, _quality = hash_frame(decode_bytes(data, DecodeLimits()).frames[0])
    world.client.request("POST", "/v1/banks", json={"name": "known-bad", "category": "sexual", "action": "block"})
    world.client.request("POST", "/v1/banks/known-bad/content", json={"entries": [{"hash": pdq, "label": "test"}]})
    wait_for(lambda: redacted(alice, room_id, event_id), what="the banked image to be redacted")
    assert world.client.get_decision(event_id[1:]).revision >= 2


def _decision(world: World, message_id: str) -> Any:
    try:
        return world.client.get_decision(message_id)
    except HeronAPIError:
        return None


def test_heron_down_fail_open_then_fail_closed(world: World, room: tuple[MatrixUser, MatrixUser, str]) -> None:
    alice, bob, room_id = room
    world.heron.stop()
    try:
        r = bob.send_text(room_id, "sent while Heron is down")
        assert r.status_code == 200, r.text
        assert "sent while Heron is down" in bodies(alice, room_id)
        world.start_synapse("closed", fail_open=False)
        r = bob.send_text(room_id, "rejected while Heron is down")
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
        assert "rejected while Heron is down" not in bodies(alice, room_id)
        log = (world.tmp / "synapse" / "synapse.log").read_text()
        assert "failed_open" in log and "failed_closed" in log
    finally:
        world.heron.start()
