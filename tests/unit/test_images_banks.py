"""Hash banks: the store, CSV exchange, the image_hash scorer through the service, forced actions,
re-encoded images caught again, retroactive revisions and the `heron banks` CLI.

Pictures are the staged public-domain photos (read in place) and images generated here.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.errors import Conflict, InvalidInput, NotFound
from pipeline.images.pdq import hash_frame
from pipeline.migrate import upgrade
from pipeline.service import ModerationService
from pipeline.settings import override_settings, reset_settings
from pipeline.store import Store
from pipeline.store.banks import normalise_entry, parse_csv, to_csv
from pipeline.types import Action, Attachment, DecisionStatus, Message

PHOTOS = Path("/work/shared/data/images_public_domain")


def photo(name: str) -> np.ndarray:
    img = cv2.imread(str(PHOTOS / name), cv2.IMREAD_COLOR)
    assert img is not None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def jpeg(rgb: np.ndarray, quality: int = 90, scale: float = 1.0) -> bytes:
    if scale != 1.0:
        h, w = rgb.shape[:2]
        rgb = cv2.resize(rgb, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def image_message(data: bytes, text: str = "", mid: str | None = None) -> Message:
    extra = {"id": mid} if mid else {}
    return Message(
        text=text,
        attachments=[Attachment(content_base64=base64.b64encode(data).decode(), content_type="image/jpeg")],
        **extra,
    )


@pytest.fixture
def store(database_url: str) -> Any:
    override_settings(database_url=database_url, scorers=["rules", "image_hash"])
    upgrade(database_url)
    s = Store.from_url(database_url)
    yield s
    s.dispose()
    reset_settings()


def test_bank_crud_and_csv_round_trip(store: Any) -> None:
    t = store.tenants.ensure("acme")
    store.banks.create(t, "known-bad", "sexual", "block")
    with pytest.raises(Conflict):
        store.banks.create(t, "known-bad", "sexual")
    with pytest.raises(InvalidInput):
        store.banks.create(t, "x", "not_a_category")
    with pytest.raises(InvalidInput):
        store.banks.create(t, "y", "scam", "explode")
    h1 = hash_frame(photo("coffee.png"))[0]
    h2 = hash_frame(photo("horse.png"))[0]
    added = store.banks.add(t, "known-bad", [normalise_entry(h1, "coffee"), normalise_entry(h2.upper())])
    assert len(added) == 2
    assert store.banks.add(t, "known-bad", [normalise_entry(h1)]) == []  # already there
    assert {b.name: b.size for b in store.banks.list(t)} == {"known-bad": 2}
    text = to_csv(store.banks.content(t, "known-bad"))
    assert text.splitlines()[0] == "signal_type,hash,label"
    assert [(e.hash, e.label) for e in parse_csv(text)] == [(h1, "coffee"), (h2, None)]
    assert [e.hash for e in parse_csv(f"{h1},a label\n{h2}\n")] == [h1, h2]  # headerless
    with pytest.raises(InvalidInput, match="row 2"):
        parse_csv(f"hash,label\n{h1[:-1]}z,x\n")
    with pytest.raises(InvalidInput, match="not pdq"):
        parse_csv(f"signal_type,signal,label\nmd5,{h1},x\n")
    assert store.banks.remove(t, "known-bad", [h2]) == 1
    other = store.tenants.ensure("other")
    with pytest.raises(NotFound):
        store.banks.content(other, "known-bad")  # banks are per tenant
    store.banks.delete(t, "known-bad")
    assert store.banks.list(t) == []


def test_banked_image_is_caught_after_reencoding_with_forced_action(store: Any) -> None:
    t = store.tenants.ensure("acme")
    # self_harm at 1.0 is only hold_for_review under the default policy: block comes from the bank
    store.banks.create(t, "campaign", "self_harm", "block")
    original = photo("chelsea.png")
    store.banks.add(t, "campaign", [normalise_entry(hash_frame(original)[0], "cat-scam-42")])
    service = ModerationService.from_names(["rules", "image_hash"])

    reposted = jpeg(original, quality=70, scale=0.5)  # re-encoded and resized
    d = service.decide_one(t, image_message(reposted, "look at this"))
    assert d.action is Action.BLOCK and d.scores["self_harm"] == 1.0
    text = " ".join(r.text for r in d.reasons)
    assert "hash bank forces block" in text
    assert "bank 'campaign'" in text and "cat-scam-42" in text and "distance" in text and "(original)" in text
    assert d.model_versions.get("image_hash") == "pdq-1" and d.media[0].format == "jpeg"

    mirrored = jpeg(np.ascontiguousarray(original[:, ::-1]), quality=80)
    d = service.decide_one(t, image_message(mirrored))
    assert d.action is Action.BLOCK and "(flip_left_right)" in " ".join(r.text for r in d.reasons)

    unrelated = service.decide_one(t, image_message(jpeg(photo("rocket.jpg"))))
    # no model scores self_harm here and the bank found no match: null with the reason, never 0.0
    assert unrelated.action is Action.ALLOW and unrelated.scores["self_harm"] is None
    assert "image_hash" in unrelated.unscored["self_harm"], unrelated.unscored
    # another tenant's banks do not apply
    assert service.decide_one(store.tenants.ensure("other"), image_message(reposted)).action is Action.ALLOW


def test_unreadable_image_is_never_a_silent_allow(store: Any) -> None:
    t = store.tenants.ensure("acme")
    service = ModerationService.from_names(["rules", "image_hash"])
    d = service.decide_one(t, image_message(jpeg(photo("coins.png"))[:-500]))
    assert "image_hash" in d.missing_signals and d.action is Action.HOLD_FOR_REVIEW
    assert "truncated jpeg" in (d.media[0].error or "")
    # no image scorer configured at all: the attachment is reported missing, not passed
    d = ModerationService.from_names(["rules"]).decide_one(t, image_message(jpeg(photo("coins.png"))))
    assert "image" in d.missing_signals and d.action is Action.HOLD_FOR_REVIEW


def test_a_readable_picture_does_not_cover_an_unreadable_one(store: Any) -> None:
    """A harmless picture next to a hostile file: the file was not checked, so the bank signal is
    missing (held under the default fail-closed policy) unless the readable one matched."""
    t = store.tenants.ensure("acme")
    store.banks.create(t, "known", "violence", "block")
    banked = photo("chelsea.png")
    store.banks.add(t, "known", [normalise_entry(hash_frame(banked)[0], "x")])
    service = ModerationService.from_names(["rules", "image_hash"])
    broken = Attachment(content_base64=base64.b64encode(b"PK\x03\x04 not an image").decode(), content_type="image/png")

    def two(good: bytes) -> Message:
        ok = Attachment(content_base64=base64.b64encode(good).decode(), content_type="image/jpeg")
        return Message(text="", attachments=[broken, ok])

    d = service.decide_one(t, two(jpeg(photo("rocket.jpg"))))
    assert "image_hash" in d.missing_signals and d.action is Action.HOLD_FOR_REVIEW
    assert "unsupported format: zip" in (d.media[0].error or "") and d.media[1].format == "jpeg"
    d = service.decide_one(t, two(jpeg(banked, 70, 0.5)))
    assert d.action is Action.BLOCK and d.missing_signals == []
    assert "not checked: attachment 0: unsupported format: zip" in " ".join(r.text for r in d.reasons)


def test_sync_path_defers_images_as_pending(store: Any) -> None:
    import asyncio

    t = store.tenants.ensure("acme")
    service = ModerationService.from_names(["rules", "image_hash"])
    d = asyncio.run(service.decide_one_async(t, image_message(jpeg(photo("coins.png")), "hi"), defer_media=True))
    assert d.status is DecisionStatus.PARTIAL and d.pending_signals == ["image_hash"]
    assert d.missing_signals == [] and d.action is Action.ALLOW and d.media[0].format is None
    full = asyncio.run(service.decide_one_async(t, image_message(jpeg(photo("coins.png")), "hi")))
    assert full.status is DecisionStatus.COMPLETE and "image_hash" in full.model_versions


def test_retroactive_match_revises_earlier_decisions(store: Any) -> None:
    from pipeline.images.keeper import MediaKeeper
    from pipeline.images.retro import recheck_after_add
    from pipeline.queue.processing import decide_stored_messages

    t = store.tenants.ensure("acme")
    store.webhooks.set(t, "https://chat.example/hooks/heron")
    service = ModerationService.from_names(["rules", "image_hash"])
    service.on_media = MediaKeeper(store.banks)
    cat = photo("chelsea.png")
    rows = [
        store.messages.insert(t, image_message(jpeg(cat, 80, 0.75), mid="m-early"))[0],
        store.messages.insert(t, image_message(jpeg(photo("camera.png")), mid="m-other"))[0],
    ]
    decided = decide_stored_messages(store, service, rows)
    assert {d.message_id: d.action for d in decided} == {"m-early": Action.ALLOW, "m-other": Action.ALLOW}
    with store.engine.connect() as conn:
        import sqlalchemy as sa

        from pipeline import db

        assert conn.execute(sa.select(sa.func.count()).select_from(db.media_inline)).scalar() == 0  # bytes dropped
        payload = conn.execute(sa.select(db.messages.c.payload).where(db.messages.c.message_id == "m-early")).scalar()
        assert payload["attachments"][0]["content_base64"] is None  # never in the messages table

    store.banks.create(t, "late", "violence", "timeout_author")
    added = store.banks.add(t, "late", [normalise_entry(hash_frame(np.ascontiguousarray(cat[::-1]))[0], "found")])
    revised = recheck_after_add(store, t, "late", added, days=30)
    assert [d.message_id for d in revised] == ["m-early"]
    now = store.decisions.get(t, "m-early")
    assert now.revision == 2 and now.action is Action.TIMEOUT_AUTHOR and now.scores["violence"] == 1.0
    assert "(flip_top_bottom)" in " ".join(r.text for r in now.reasons)
    assert [r.cause for r in store.decisions.revisions(t, "m-early")] == ["initial", "bank_match"]
    assert [e.revision for e in store.outbox.for_decision(t, now.id)] == [1, 2]  # one webhook event each
    assert recheck_after_add(store, t, "late", added, days=30) == []  # idempotent


def test_thumbnails_only_for_review(store: Any) -> None:
    from pipeline.images.keeper import MediaKeeper

    t = store.tenants.ensure("acme")
    store.banks.create(t, "review-me", "sexual")  # no forced action: sexual 1.0 -> block by default policy
    service = ModerationService.from_names(["rules", "image_hash"])
    service.on_media = MediaKeeper(store.banks)
    bad = image_message(jpeg(photo("coins.png"))[:-400], mid="m-broken")  # unreadable -> fails closed -> review
    ok = image_message(jpeg(photo("coffee.png")), mid="m-fine")
    service.decide_batch(t, [(bad, None), (ok, None)])
    assert store.banks.thumbnails(t, "m-fine") == []
    assert store.banks.thumbnails(t, "m-broken") == []  # nothing decoded, nothing to show
    held = image_message(jpeg(photo("astronaut.png")), text="", mid="m-held")
    service = ModerationService.from_names(["image_hash", "rules"])
    service.on_media = MediaKeeper(store.banks)
    service.unavailable["text"] = "not loaded in this test"  # fail closed -> hold_for_review
    d = service.decide_one(t, held)
    assert d.action is Action.HOLD_FOR_REVIEW
    thumbs = store.banks.thumbnails(t, "m-held")
    assert len(thumbs) == 1 and thumbs[0]["mime"] == "image/webp" and len(thumbs[0]["data"]) < 30_000


def test_cli_banks_and_moderate_with_tenant(database_url: str, tmp_path: Path) -> None:
    from pipeline.cli import app

    settings = override_settings(database_url=database_url, scorers=["rules", "image_hash"])
    upgrade(settings.database_url)
    Store.from_url(database_url).tenants.ensure("acme")
    runner = CliRunner()
    src = tmp_path / "bad.png"
    cv2.imwrite(str(src), cv2.cvtColor(photo("chelsea.png"), cv2.COLOR_RGB2BGR))
    flat = tmp_path / "flat.png"
    cv2.imwrite(str(flat), np.zeros((64, 64, 3), dtype=np.uint8))
    create = ["banks", "create", "cats", "--category", "violence", "--action", "block", "--tenant", "acme"]
    r = runner.invoke(app, create)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["banks", "add", "cats", str(src), str(flat), "--tenant", "acme", "--label", "L1"])
    assert r.exit_code == 1 and '"added": 1' in r.output and "quality" in r.output  # the flat one is refused
    r = runner.invoke(app, ["banks", "export", "cats", "--tenant", "acme"])
    assert r.exit_code == 0 and r.output.count("\n") == 2 and ",L1" in r.output
    csv_file = tmp_path / "h.csv"
    csv_file.write_text("hash,label\n" + "ab" * 32 + ",imported\n")
    r = runner.invoke(app, ["banks", "import", "cats", str(csv_file), "--tenant", "acme"])
    assert r.exit_code == 0 and '"added": 1' in r.output
    r = runner.invoke(app, ["banks", "create", "cats", "--category", "scam", "--tenant", "acme"])
    assert r.exit_code == 2 and "bank_exists" in r.output
    r = runner.invoke(app, ["banks", "list", "--tenant", "nobody"])
    assert r.exit_code == 2

    msgs = tmp_path / "in.jsonl"
    msgs.write_text(
        image_message(jpeg(photo("chelsea.png"), 70, 0.5), mid="a").model_dump_json()
        + "\n"
        + Message(id="b", text="hello", guild_id="unregistered").model_dump_json()
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    r = runner.invoke(
        app,
        [
            "moderate",
            "--tenant",
            "acme",
            "--input",
            str(msgs),
            "--output",
            str(out),
            "--scorers",
            "rules,image_hash",
            "--no-progress",
        ],
    )
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["action"] == "block" and "cats" in json.dumps(lines[0]["reasons"])
    # a guild the tenant never registered (a replayed log) gets the platform default policy
    assert lines[1]["action"] == "allow" and r.exit_code == 0, r.output
    # without --tenant the banks of no tenant apply
    r = runner.invoke(
        app, ["moderate", "--input", str(msgs), "--output", str(out), "--scorers", "rules,image_hash", "--no-progress"]
    )
    assert json.loads(out.read_text().splitlines()[0])["action"] == "allow"
    reset_settings()
