"""`heron users create`: the first reviewer accounts, from a shell, with the password never on the
command line and only its argon2 hash stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

HERON = str(Path(sys.executable).parent / "heron")


def heron(tmp_path: Path, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "HERON_DATABASE_URL": f"sqlite:///{tmp_path}/heron.db", **env}
    return subprocess.run([HERON, *args], capture_output=True, text=True, input=stdin, env=full, timeout=120)


def test_users_create_for_each_role_and_its_refusals(tmp_path: Path) -> None:
    assert heron(tmp_path, "keys", "create", "--tenant", "acme").returncode == 0
    out = heron(tmp_path, "users", "create", "--tenant", "acme", "--role", "moderator", "--guild", "g1",
                "--guild", "g2", "--username", "ana", HERON_USER_PASSWORD="correct horse battery")
    assert out.returncode == 0, out.stderr
    assert "moderator 'ana'" in out.stdout and "g1, g2" in out.stdout
    out = heron(tmp_path, "users", "create", "--tenant", "acme", "--role", "admin", "--username", "boss",
                "--password-stdin", stdin="another long password\n")
    assert out.returncode == 0, out.stderr
    refusals = [
        (["--tenant", "nope", "--role", "viewer", "--username", "v"], "no tenant 'nope'"),
        (["--tenant", "acme", "--role", "moderator", "--username", "m"], "at least one --guild"),
        (["--tenant", "acme", "--role", "owner", "--username", "m"], "role must be one of"),
        (["--tenant", "acme", "--role", "viewer", "--username", "ana"], "taken"),
    ]
    for args, why in refusals:
        out = heron(tmp_path, "users", "create", *args, HERON_USER_PASSWORD="correct horse battery")
        assert out.returncode == 2 and why in out.stderr, (args, out.stderr)
    out = heron(tmp_path, "users", "create", "--tenant", "acme", "--role", "viewer", "--username", "v",
                HERON_USER_PASSWORD="short")
    assert out.returncode == 2 and "at least 10 characters" in out.stderr
    engine = sa.create_engine(f"sqlite:///{tmp_path}/heron.db")
    with engine.connect() as conn:
        rows = {r.username: r for r in conn.execute(sa.text("SELECT username, password_hash, role, guilds "
                                                            "FROM reviewers"))}
    assert set(rows) == {"ana", "boss"}
    assert rows["ana"].password_hash.startswith("$argon2id$") and "correct horse" not in rows["ana"].password_hash
    from pipeline.store import Store

    store = Store.from_url(f"sqlite:///{tmp_path}/heron.db")
    assert store.reviewers.authenticate("ana", "correct horse battery") is not None
    assert store.reviewers.authenticate("ana", "wrong password!!") is None
    assert store.reviewers.authenticate("nobody", "correct horse battery") is None
    p = store.reviewers.authenticate("ana", "correct horse battery").principal()  # type: ignore[union-attr]
    assert p.role == "moderator" and p.guilds == frozenset({"g1", "g2"})


def test_labels_export_writes_a_versioned_labelled_dataset(tmp_path: Path) -> None:
    """Verdicts become labels with text, categories, agreement, versions and provenance; an overturn is
    a hard example; the same verdicts export to the same version."""
    from pipeline.labels import read
    from pipeline.migrate import upgrade
    from pipeline.review import Principal
    from pipeline.store import Store
    from pipeline.types import Action, Decision, Message, Reason, decision_id_for

    url = f"sqlite:///{tmp_path}/heron.db"
    upgrade(url)
    store = Store.from_url(url)
    store.review.double_share = 1.0
    t = store.tenants.ensure("acme")
    for mid, text in (("m1", "you are an idiot"), ("m2", "that film was sick")):
        store.messages.insert(t, Message(id=mid, guild_id="g1", text=text))
        d = Decision(id=decision_id_for(t, mid), message_id=mid, guild_id="g1", action=Action.HOLD_FOR_REVIEW,
                     scores={"toxicity": 0.9}, model_versions={"text": "v1"}, policy_version=3,
                     reasons=[Reason(category="toxicity", score=0.9, action=Action.HOLD_FOR_REVIEW, source="text",
                                     text="toxicity 0.90")])
        store.decisions.save_many([(t, d)])
        store.review.enqueue_decision(t, d)
    a = Principal(tenant_id=t, actor="reviewer:a", role="moderator", guilds=frozenset({"g1"}))
    b = Principal(tenant_id=t, actor="reviewer:b", role="moderator", guilds=frozenset({"g1"}))
    i1, i2 = sorted(store.review.list(a), key=lambda i: i.message_id)
    store.review.claim(a, i1.id)
    store.review.resolve(a, i1.id, verdict="uphold", reason_code="violates_policy", categories={"toxicity": True})
    store.review.claim(b, i1.id)
    store.review.resolve(b, i1.id, verdict="uphold", reason_code="violates_policy", categories={"toxicity": True})
    store.review.claim(a, i2.id)
    store.review.resolve(a, i2.id, verdict="overturn", reason_code="false_positive", categories={"toxicity": False})

    out = tmp_path / "labels.jsonl"
    run = heron(tmp_path, "labels", "export", "--tenant", "acme", "--output", str(out))
    assert run.returncode == 0, run.stderr
    rows = {r["message_id"]: r for r in read(out)}
    assert set(rows) == {"m1", "m2"}
    assert rows["m1"]["text"] == "you are an idiot" and rows["m1"]["categories"] == {"toxicity": True}
    assert rows["m1"]["agreement"] == {"reviews": 2, "verdict": True, "categories": {"toxicity": True}}
    assert rows["m1"]["decision"]["model_versions"] == {"text": "v1"} and rows["m1"]["decision"]["policy_version"] == 3
    assert rows["m1"]["provenance"]["reviewers"] == ["reviewer:a", "reviewer:b"]
    assert rows["m2"]["hard_example"] is True and rows["m2"]["verdict"] == "overturn"
    manifest = json.loads((tmp_path / "labels.jsonl.manifest.json").read_text())
    assert manifest["labels"] == 2 and manifest["hard_examples"] == 1
    again = heron(tmp_path, "labels", "export", "--tenant", "acme", "--output", str(tmp_path / "again.jsonl"))
    assert again.returncode == 0
    assert json.loads((tmp_path / "again.jsonl.manifest.json").read_text())["version"] == manifest["version"]
