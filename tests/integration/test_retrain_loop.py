"""The retraining loop end to end, as an operator runs it (docs/retraining.md):

a held message is resolved by a moderator through the review API -> `heron labels export` ->
`heron train text-heads --with-labels` (a tiny run) registers a candidate trained on that verdict ->
`heron eval candidate` writes the gate report -> `heron models promote` follows the gate (refused
with the regressing categories named, or done), `--force --reason` overrides and says so -> a
freshly built service loads the promoted version and names it in its decisions -> `heron models
rollback` goes back -> the same report under a stated looser tolerance promotes without --force;
every switch is in serving.json and the audit log.

Tiny on purpose (every category capped at 40 rows): 56-101 s on the 2 shared build
cores, most of it the encoder embedding the capped head data and both models scoring ~470 test
texts; the commands are the full-size ones without --max-examples.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

import tests.api.test_review_queue as rq

pytestmark = pytest.mark.slow

HERON = str(Path(sys.executable).parent / "heron")
TRAINED = "you absolute idiot, nobody wants you here"  # upheld as harassment; its text hash puts it in training
HARD = "I felt like an idiot at the quiz tonight haha"  # overturned: a hard example, also in training
HELD_OUT = "the idiot box is on again, movie night"  # overturned, in the held-out slice
PASSWORD = "correct horse battery"


def heron(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HERON, *args], capture_output=True, text=True, env=env, timeout=timeout)


def review_three_messages(db_url: str, models_dir: Path) -> None:
    """The review desk part, in process: three held messages, each resolved by a moderator."""
    from api.main import create_app
    from pipeline.migrate import upgrade
    from pipeline.runtime import Runtime
    from pipeline.settings import override_settings, reset_settings

    settings = override_settings(database_url=db_url, redis_url=None, scorers=["rules", "links"],
                                 models_dir=models_dir, sync_budget_ms=10_000, rate_limit_per_key="",
                                 rate_limit_per_guild="", rate_limit_other="", review_double_share=0.0)
    upgrade(settings.database_url)
    rt = Runtime.build("api", settings)
    try:
        with TestClient(create_app(rt)) as client:
            tenant, key = rt.store.tenants.create_api_key("acme")
            client.headers["Authorization"] = f"Bearer {key}"
            rq.setup_guild(client)  # the guild's word list holds "idiot" for review
            rt.store.reviewers.create(tenant, "mod-a", PASSWORD, "moderator", ["g1"])
            for mid, text in (("m1", TRAINED), ("m2", HARD), ("m3", HELD_OUT)):
                r = client.post("/v1/moderate", json={"id": mid, "guild_id": "g1", "text": text})
                assert r.json()["action"] == "hold_for_review", r.text
            queued = rq.wait(lambda: (q := rq.queue(client)) and len(q) == 3 and q)
            items = {i["message_id"]: i for i in queued}
            mod = rq.login_client(client, "mod-a")
            verdicts = {"m1": {"verdict": "uphold", "categories": {"toxicity": True, "harassment": True}},
                        "m2": {"verdict": "overturn"}, "m3": {"verdict": "overturn"}}
            for mid, body in verdicts.items():
                assert mod.post(f"/v1/review/items/{items[mid]['id']}/claim", headers=mod.csrf).status_code == 200
                r = mod.post(f"/v1/review/items/{items[mid]['id']}/resolve", headers=mod.csrf, json=body)
                assert r.status_code == 200, r.text
    finally:
        reset_settings()


def decide_with_fresh_service(models_dir: Path, text: str) -> tuple[str, Any]:
    """A newly built service, as `heron serve` builds one at start-up: (text model version, scorer status)."""
    from pipeline.guilds import PLATFORM_GUILD
    from pipeline.service import ModerationService
    from pipeline.settings import Settings
    from pipeline.types import Message

    settings = Settings(models_dir=models_dir, text_quantize="torch-int8", text_workers=1, text_threads=1)
    service = ModerationService.from_names(["text"], settings=settings)
    try:
        assert not service.unavailable, service.unavailable
        decision = service.decide_one("acme", Message(text=text), PLATFORM_GUILD)
        (status,) = [s for s in service.status() if s.name == "text"]
        return decision.model_versions["text"], status.detail
    finally:
        service.close()


def test_a_verdict_is_exported_trained_on_gated_and_promoted_or_refused(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path}/heron.db"
    models_dir = tmp_path / "models"
    review_three_messages(db_url, models_dir)
    env = {**os.environ, "HERON_DATABASE_URL": db_url, "HERON_MODELS_DIR": str(models_dir), "OMP_NUM_THREADS": "1"}

    # 1. the verdicts are labels
    labels = tmp_path / "labels.jsonl"
    out = heron(env, "labels", "export", "--tenant", "acme", "--output", str(labels))
    assert out.returncode == 0, out.stderr
    rows = {r["text"]: r for r in map(json.loads, labels.read_text().splitlines())}
    assert rows[TRAINED]["verdict"] == "uphold" and rows[TRAINED]["categories"] == {"harassment": True,
                                                                                     "toxicity": True}
    assert rows[HARD]["hard_example"] and rows[HELD_OUT]["hard_example"]
    manifest = json.loads(Path(f"{labels}.manifest.json").read_text())

    # 2. a candidate trained with them, registered in the registry
    out = heron(env, "train", "text-heads", "--with-labels", str(labels), "--max-examples", "40", "--seeds", "0",
                "--no-probes", "--num-threads", "1", "--cache-dir", str(tmp_path / "cache"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    version = out.stdout.split("candidate text version ")[1].split()[0]
    cand = models_dir / "text" / version
    heads = json.loads((cand / "heads.json").read_text())
    seen = heads["review_labels"]
    assert seen["version"] == manifest["version"]
    # m1 and m2 trained (m2, overturned, three times), m3 held out; harassment saw 1 + 3 rows
    assert (seen["train_rows"], seen["holdout_rows"], seen["hard_examples_train"]) == (2, 1, 1)
    assert seen["head_rows"]["harassment"] == 4 and seen["train_per_category"]["harassment"] == {
        "positives": 1, "negatives": 1}
    bundled = Path(__file__).resolve().parents[2] / "models" / "text" / "artifact"
    # heads only: the encoder is the bundled one, byte for byte
    assert (cand / "text_model.safetensors").read_bytes() == (bundled / "text_model.safetensors").read_bytes()

    # 3. the gate report
    report = tmp_path / "gate.json"
    out = heron(env, "eval", "candidate", version, "--labels", str(labels), "--report", str(report),
                "--max-examples", "40", "--quantize", "torch-int8", "--num-threads", "1")
    gate = json.loads(report.read_text())
    assert out.returncode == (0 if gate["verdict"]["pass"] else 1), out.stderr[-3000:]
    assert gate["candidate"]["version"] == version and gate["serving"]["version"] == "bundled"
    assert set(gate["slices"]["test"]["categories"]) == {"toxicity", "hate", "spam", "violence", "self_harm", "sexual",
                                                         "harassment", "scam"}
    held = gate["slices"]["review_labels"]["categories"]
    assert held["toxicity"]["n"] == 1 and not held["toxicity"]["gated"]  # one held-out row: reported, not gated
    assert gate["review_labels"]["overturned_holdout_rows"] == 1
    assert (tmp_path / "gate.md").read_text().startswith(f"# Gate report: text candidate {version} vs serving bundled")

    # 4. promotion follows the gate
    out = heron(env, "models", "promote", "text", version, "--report", str(report))
    regressed = sorted({r["category"] for r in gate["verdict"]["regressions"]})
    if gate["verdict"]["pass"]:
        assert out.returncode == 0, out.stderr
        forced = False
    else:
        assert out.returncode == 1 and "regressed beyond tolerance: " + ", ".join(regressed) in out.stderr
        assert not (models_dir / "serving.json").exists()
        out = heron(env, "models", "promote", "text", version, "--report", str(report), "--force",
                    "--reason", "tiny e2e run")
        assert out.returncode == 0 and "FORCED past" in out.stderr, out.stderr
        forced = True
    serving = json.loads((models_dir / "serving.json").read_text())["models"]["text"]
    assert serving["version"] == version and serving["history"][-1]["forced"] is forced

    # 5. a fresh service serves it and says so
    model_version, status = decide_with_fresh_service(models_dir, TRAINED)
    assert model_version.startswith(f"{heads['encoder_version']}/{heads['version']}+")
    assert status["registry_version"] == version

    # 6. rollback; then the same report under a stated, looser tolerance promotes without --force
    out = heron(env, "models", "rollback", "text", "--reason", "checking rollback")
    assert out.returncode == 0 and "rolled back to bundled" in out.stdout, out.stderr
    model_version, status = decide_with_fresh_service(models_dir, TRAINED)
    # the bundled artifact again: its encoder, and its own heads' version when a refit named one
    bundled_heads = json.loads((Path(__file__).resolve().parents[2] / "models" / "text" / "artifact" / "heads.json")
                               .read_text("utf-8")).get("version")
    bundled = f"{heads['encoder_version']}/{bundled_heads}+" if bundled_heads else f"{heads['encoder_version']}+"
    assert model_version.startswith(bundled) and status["registry_version"] == "bundled"
    out = heron(env, "models", "promote", "text", version, "--report", str(report), "--tolerance", "1.0")
    assert out.returncode == 0 and "FORCED" not in out.stderr, out.stderr
    last = json.loads((models_dir / "serving.json").read_text())["models"]["text"]["history"][-1]
    assert last["to"] == version and not last["forced"] and last["verdict"] == {
        "pass": True, "tolerance": 1.0, "tolerances": {}, "regressions": []}

    # every switch is in the audit log, as a platform row
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        audit = conn.execute(sa.text("SELECT tenant_id, event, subject, details FROM audit_log "
                                     "WHERE event LIKE 'model_%' ORDER BY id")).all()
    engine.dispose()
    assert [(a.tenant_id, a.event, a.subject) for a in audit] == [
        (None, "model_promote", "text"), (None, "model_rollback", "text"), (None, "model_promote", "text")]
    promoted = json.loads(audit[0].details) if isinstance(audit[0].details, str) else audit[0].details
    assert promoted["to"] == version and promoted["forced"] is forced
    assert promoted["reason"] == ("tiny e2e run" if forced else None)
