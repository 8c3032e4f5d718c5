"""End to end: a real Matrix Synapse homeserver (PyPI matrix-synapse, its own virtualenv, SQLite,
127.0.0.1) moderated through `heron serve` by the heron-synapse module. Users register, create a
room and send over the client-server API; nothing is mocked.

The decisions are made by a guild word/link list and policy set through Heron's API, so they do
not depend on the text model's scores.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
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
SPACE_ALIAS = "heron-space"
SPACE_GUILD = "community"
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
        self.mode: tuple[bool, str] | None = None

    def start_synapse(
        self, name: str, fail_open: bool, budget_ms: int = 2000, encrypted: str = "allow"
    ) -> SynapseServer:
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
            # An alias key, written down before the space exists (test_rooms_in_a_space_share_its_guild),
            # and every other space mapped to a guild of its own (test_map_spaces_...).
            "spaces": {f"#{SPACE_ALIAS}:{s.server_name}": SPACE_GUILD},
            "map_spaces": True,
            "encrypted": encrypted,
        }
        if self.synapse is not None:  # restarting: keep the same homeserver (db, key, secret)
            s.shared_secret = self.synapse.shared_secret
        s.start()
        self.synapse = s
        self.mode = (fail_open, encrypted)
        return s

    def counts(self) -> dict[str, int]:
        """The module's own tallies (pre-send outcomes and webhook results), as an admin reads them."""
        assert self.synapse is not None
        return dict(httpx.get(self.synapse.url + "/_heron/webhook", timeout=10).json()["counts"])

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


def guild_of(world: World, sent: httpx.Response) -> str | None:
    """The guild Heron decided a sent message under."""
    assert sent.status_code == 200, sent.text
    return world.client.get_decision(sent.json()["event_id"][1:]).guild_id


def test_rooms_in_a_space_share_its_guild(world: World, room: tuple[MatrixUser, MatrixUser, str]) -> None:
    """`spaces` keyed by the space's alias, which the admin wrote into homeserver.yaml before the
    space existed: both of its rooms are decided under its one guild, with its policy and lists;
    a room outside keeps its own."""
    alice, bob, outside = room
    world.client.put_guild(SPACE_GUILD, policy=POLICY, lists={"keywords": {"violence": ["zzspaceword"]}})
    space = alice.create_space(alias_localpart=SPACE_ALIAS)
    rooms = [alice.create_room(), alice.create_room()]
    for room_id in rooms:
        alice.add_to_space(space, room_id)
        bob.join(room_id)
    sent = [bob.send_text(room_id, f"hello from room {i} of the space") for i, room_id in enumerate(rooms)]
    assert [guild_of(world, r) for r in sent] == [SPACE_GUILD, SPACE_GUILD]
    listed = {d.message_id for d in world.client.list_decisions(guild_id=SPACE_GUILD).items}
    assert {r.json()["event_id"][1:] for r in sent} <= listed

    # The space guild's own word list applies in every room of the space, and only there.
    for room_id in rooms:
        r = bob.send_text(room_id, "zzspaceword in the space")
        assert r.status_code == 403 and r.json()["org.heron.action"] == "block", r.text
    outside_sent = bob.send_text(outside, "zzspaceword outside the space")
    assert guild_of(world, outside_sent) == outside[1:]


def test_map_spaces_and_a_room_added_later(world: World, room: tuple[MatrixUser, MatrixUser, str]) -> None:
    """`map_spaces: true`: a space nobody listed still makes one guild (its id without `!`). The
    mapping is read from room state on every message, so a room added to a space later moves to
    the space's guild from its next message, without a restart; a room that names a space which
    does not list it as a child stays on its own."""
    alice, bob, _ = room
    space = alice.create_space()
    later = alice.create_room()
    bob.join(later)
    assert guild_of(world, bob.send_text(later, "before the room joined the space")) == later[1:]

    # Bob's own room claims Alice's space; the space does not confirm it, and Bob has no power there.
    claimed = bob.create_room()
    bob.put_state(claimed, "m.space.parent", space, {"via": ["localhost"], "canonical": True}).raise_for_status()
    assert guild_of(world, bob.send_text(claimed, "am I in her space?")) == claimed[1:]

    alice.add_to_space(space, later)
    assert guild_of(world, bob.send_text(later, "after the room joined the space")) == space[1:]


# What a Megolm message looks like on the wire; the server can neither read nor check the ciphertext.
FAKE_MEGOLM = {
    "algorithm": "m.megolm.v1.aes-sha2",
    "ciphertext": (
        "AwgAEnACgAkLmt6qF84IK++J7UDH2Za1YVchHyprqTqsg2yyOwAtHaZTwyNg37afzg8f3r9IsN9r4RNFg7MaZencUJe4q"
        "vELiDiopUjy5wYVDAtqdBzer5bWRD9ldxp1FLgbQvBcjkkywYjCsmsq6+hArLd9oAQZnGKn/qLsK+5uNX3PaWzDRC9w"
    ),
    "device_id": "RJYKSTBOIE",
    "sender_key": "IlRMeOPX2e0MurIyfWEucYBRVOEEUMrOHqn/8mLqMjA",
    "session_id": "X3lUlvLELLYxeTx4yOVu6UDpasGEVO0Jbu+QFnm0cKQ",
}
ENCRYPTION = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


@pytest.fixture(scope="module")
def encrypted_room(world: World, room: tuple[MatrixUser, MatrixUser, str]) -> str:
    """An end-to-end encrypted room, made while the module allows encryption (the default)."""
    alice, bob, _ = room
    room_id = alice.create_room(initial_state=[ENCRYPTION])
    bob.join(room_id)
    return room_id


def test_encrypted_message_delivered_unchecked_and_counted(
    world: World, room: tuple[MatrixUser, MatrixUser, str], encrypted_room: str
) -> None:
    alice, bob, _ = room
    before = world.counts().get("encrypted_unchecked", 0)
    sent = bob.send(encrypted_room, FAKE_MEGOLM, event_type="m.room.encrypted")
    assert sent.status_code == 200, sent.text
    event_id = sent.json()["event_id"]
    seen = alice.event(encrypted_room, event_id)
    assert seen["type"] == "m.room.encrypted" and seen["content"]["ciphertext"] == FAKE_MEGOLM["ciphertext"]
    assert world.counts()["encrypted_unchecked"] == before + 1
    with pytest.raises(HeronAPIError) as missing:  # Heron was told nothing about it
        world.client.get_decision(event_id[1:])
    assert missing.value.status_code == 404
    assert encrypted_room in (world.tmp / "synapse" / "synapse.log").read_text()


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

    # A newer revision that also removes the message: recorded, not redacted a second time.
    applied = world.counts()
    world.client.revise(decision.id, "block", "a moderator escalated it", actor="mod-1")
    wait_for(
        lambda: world.counts().get("webhook_already_redacted", 0) > applied.get("webhook_already_redacted", 0),
        what="revision 2 to reach the module",
    )

    # A late copy of revision 1 (a retry that lost the race), signed exactly as Heron signs it,
    # changes nothing: the module keeps the highest revision applied.
    from pipeline.signing import signed_headers
    from pipeline.sinks.webhook import webhook_body

    first = next(r for r in world.client.request("GET", f"/v1/decisions/{decision.id}/revisions") if r["revision"] == 1)
    body = webhook_body(first["decision"])
    assert world.synapse is not None
    late = httpx.post(
        world.synapse.url + "/_heron/webhook",
        content=body,
        headers=signed_headers(world.secret, body, decision.id, attempt=2, revision=1),
        timeout=30,
    )
    assert late.status_code == 200 and late.json() == {"done": "stale"}, late.text

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


class SilentHeron:
    """A Heron that accepts connections and never answers (hung, not down). It notes when each
    connection arrives: that is when the module starts waiting on it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.connected: list[float] = []
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connected.append(time.monotonic())
            self._conns.append(conn)  # kept open, never read, never answered

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        for conn in self._conns:
            conn.close()


def served_while_sending(user: MatrixUser, room_id: str, text: str) -> tuple[httpx.Response, list[float]]:
    """Send from a thread while polling the same Synapse with another client; returns the send's
    answer and the (monotonic) times at which polls were answered while it was in flight."""
    answer: dict[str, httpx.Response] = {}
    sender = threading.Thread(target=lambda: answer.update(r=user.send_text(room_id, text)))
    sender.start()
    polls: list[float] = []
    with httpx.Client(base_url=user.server.url, timeout=60) as probe:
        while sender.is_alive():
            probe.get("/_matrix/client/versions").raise_for_status()
            polls.append(time.monotonic())
    sender.join()
    return answer["r"], polls


def test_heron_down_fail_open_then_fail_closed(world: World, room: tuple[MatrixUser, MatrixUser, str]) -> None:
    alice, bob, room_id = room
    world.heron.stop()
    try:
        # Heron hung: the check waits out its whole budget (2 s here) on the module's own thread,
        # and meanwhile Synapse's reactor keeps answering other requests. Had the module blocked
        # the reactor, no poll could be answered while it waited.
        silent = SilentHeron(world.heron.port)
        try:
            before = world.counts().get("failed_open", 0)
            r, polls = served_while_sending(bob, room_id, "sent while Heron hangs")
        finally:
            silent.close()
        assert r.status_code == 200, r.text
        assert world.counts()["failed_open"] == before + 1
        assert "no answer within 2000 ms" in (world.tmp / "synapse" / "synapse.log").read_text()
        assert silent.connected, "the module never reached the hung Heron"
        waiting = (silent.connected[0] + 0.2, silent.connected[0] + 1.8)  # inside the 2 s wait
        answered_meanwhile = [t for t in polls if waiting[0] < t < waiting[1]]
        assert len(answered_meanwhile) >= 3, [round(t - silent.connected[0], 3) for t in polls]

        r = bob.send_text(room_id, "sent while Heron is down")
        assert r.status_code == 200, r.text
        assert "sent while Heron is down" in bodies(alice, room_id)
        # (encrypted: reject too, for test_encrypted_rejected_when_configured: one restart for both)
        world.start_synapse("closed", fail_open=False, encrypted="reject")
        r = bob.send_text(room_id, "rejected while Heron is down")
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
        assert "rejected while Heron is down" not in bodies(alice, room_id)
        log = (world.tmp / "synapse" / "synapse.log").read_text()
        assert "failed_open" in log and "failed_closed" in log
    finally:
        world.heron.start()


def test_encrypted_rejected_when_configured(
    world: World, room: tuple[MatrixUser, MatrixUser, str], encrypted_room: str
) -> None:
    """`encrypted: reject`: an encrypted message is refused like a blocked one, and so is making
    a room encrypted; plain messages are still moderated as before."""
    alice, bob, room_id = room
    if world.mode != (False, "reject"):  # run on its own: the previous test restarted it so
        world.start_synapse("closed", fail_open=False, encrypted="reject")
    before = world.counts().get("encrypted_rejected", 0)

    def encrypted_events() -> int:
        return sum(e["type"] == "m.room.encrypted" for e in alice.messages(encrypted_room))

    delivered = encrypted_events()  # the one test_encrypted_message_delivered_... sent, if it ran
    r = bob.send(encrypted_room, FAKE_MEGOLM, event_type="m.room.encrypted")
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN", r.text
    assert "encrypted" in r.json()["org.heron.error"]
    assert encrypted_events() == delivered

    created = alice.try_create_room(initial_state=[ENCRYPTION])
    assert created.status_code == 403, created.text
    turned_on = alice.put_state(room_id, "m.room.encryption", "", ENCRYPTION["content"])
    assert turned_on.status_code == 403, turned_on.text
    assert "m.room.encryption" not in {e["type"] for e in alice.messages(room_id)}
    assert world.counts()["encrypted_rejected"] == before + 3

    plain = bob.send_text(room_id, "plain text still goes through Heron")
    assert plain.status_code == 200, plain.text
    assert world.client.get_decision(plain.json()["event_id"][1:]).action == "allow"
