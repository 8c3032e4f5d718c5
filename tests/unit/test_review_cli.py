"""`heron users create`: the first reviewer accounts, from a shell, with the password never on the
command line and only its argon2 hash stored."""

from __future__ import annotations

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
