"""The model registry (pipeline/models_registry.py): versions, the gate verdict, promotion and
rollback written to serving.json and the audit log (a real SQLite store), and the text scorer
loading whatever serving.json names."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pipeline.models_registry import (
    BUNDLED,
    BUNDLED_DIRS,
    REPORT_SCHEMA,
    GateRefused,
    Registry,
    RegistryError,
    artifact_digest,
    gate_verdict,
)

BUNDLED_TEXT = BUNDLED_DIRS["text"]


def test_the_bundled_folder_is_the_text_models_default() -> None:
    from models.text.model import DEFAULT_ARTIFACT_DIR

    assert BUNDLED_TEXT == DEFAULT_ARTIFACT_DIR


def variant(tmp_path: Path, tag: str) -> Path:
    """A copy of the bundled artifact whose heads carry another version: another model by digest."""
    d = tmp_path / f"art-{tag}"
    d.mkdir()
    for f in BUNDLED_TEXT.iterdir():
        if f.name not in ("eval_predictions.npz", "MODEL_CARD.md"):
            shutil.copy(f, d / f.name)
    heads = json.loads((d / "heads.json").read_text())
    (d / "heads.json").write_text(json.dumps({**heads, "version": f"heads-{tag}"}, indent=2))
    return d


def cat_row(serving: float | None, candidate: float | None, gated: bool = True) -> dict[str, Any]:
    return {"n": 100, "positives": 20, "gated": gated,
            "serving": None if serving is None else {"f1": serving},
            "candidate": None if candidate is None else {"f1": candidate}}


def report_for(registry: Registry, cand: str, serving: str = BUNDLED, **cats: dict[str, Any]) -> dict[str, Any]:
    return {"schema": REPORT_SCHEMA, "kind": "text", "created_at": "now",
            "candidate": {"version": cand, "digest": artifact_digest("text", registry.path("text", cand))},
            "serving": {"version": serving, "digest": artifact_digest("text", registry.path("text", serving))},
            "settings": {"tolerance": 0.02, "tolerances": {}},
            "slices": {"test": {"categories": cats or {"toxicity": cat_row(0.80, 0.81)}}}}


def test_gate_refuses_a_regression_beyond_tolerance_and_passes_within_it() -> None:
    rep = {"settings": {"tolerance": 0.02}, "slices": {
        "test": {"categories": {"toxicity": cat_row(0.80, 0.79), "violence": cat_row(0.60, 0.50),
                                "sexual": cat_row(0.70, 0.20, gated=False)}},
        "review_labels": {"categories": {"spam": cat_row(0.90, 0.95)}}}}
    v = gate_verdict(rep)
    assert not v["pass"] and [(r["slice"], r["category"]) for r in v["regressions"]] == [("test", "violence")]
    assert "test/violence: F1 0.600 -> 0.500 (-0.100, tolerance 0.020)" in v["reasons"]
    assert gate_verdict(rep, tolerance=0.15)["pass"]  # a stated, looser tolerance
    assert gate_verdict(rep, tolerances={"violence": 0.2})["pass"]  # per category
    assert not gate_verdict(rep, tolerances={"toxicity": 0.0, "violence": 0.2})["pass"]  # -0.01 with none allowed
    # a category serving scores and the candidate does not is a regression, gated or not
    rep["slices"]["test"]["categories"]["scam"] = cat_row(0.5, None, gated=False)
    assert {r["category"] for r in gate_verdict(rep, tolerance=0.5)["regressions"]} == {"scam"}
    thin = gate_verdict({"slices": {"test": {"categories": {"spam": cat_row(0.1, 0.9, gated=False)}}}})
    assert not thin["pass"] and thin["reasons"] == ["no category had enough examples to gate on"]


def test_versions_are_named_by_content_and_registering_twice_is_one_version(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    a = variant(tmp_path, "a")
    v = reg.add("text", a)
    assert v.endswith(artifact_digest("text", a)[:8]) and reg.versions("text") == [v]
    (a / "metrics.json").write_text("{}")  # figures about a model are not the model
    assert reg.add("text", a) == v and reg.find("text", a) == v
    assert reg.add("text", BUNDLED_TEXT) == BUNDLED  # the bundled artifact is never copied in
    assert reg.resolve("text", v) == (v, reg.path("text", v)) and reg.resolve("text", str(a))[0] == v
    with pytest.raises(RegistryError, match="neither a text version"):
        reg.resolve("text", "20990101-deadbeef")
    with pytest.raises(RegistryError, match="unknown model kind 'image'"):
        reg.versions("image")
    assert reg.serving("text") == BUNDLED and reg.serving_dir("text") == BUNDLED_TEXT


@pytest.fixture
def audited(tmp_path: Path) -> Iterator[tuple[Any, sa.engine.Engine]]:
    """The CLI's audit hook on a real (migrated) SQLite store."""
    from pipeline.cli import _audit_hook
    from pipeline.settings import override_settings, reset_settings

    url = f"sqlite:///{tmp_path}/heron.db"
    override_settings(database_url=url)
    engine = sa.create_engine(url)
    try:
        yield _audit_hook("cli:tester"), engine
    finally:
        engine.dispose()
        reset_settings()


def audit_rows(engine: sa.engine.Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT tenant_id, actor, event, subject, details FROM audit_log "
                                    "ORDER BY id")).all()
    return [(r[0], r[1], r[2], r[3], json.loads(r[4]) if isinstance(r[4], str) else r[4]) for r in rows]


def test_promote_and_rollback_switch_the_serving_file_and_write_the_audit_log(tmp_path: Path, audited: Any) -> None:
    hook, engine = audited
    reg = Registry(tmp_path / "models")
    v1, v2 = reg.add("text", variant(tmp_path, "a")), reg.add("text", variant(tmp_path, "b"))
    entry = reg.promote("text", v1, report=report_for(reg, v1), report_path="r1.json", actor="cli:tester", audit=hook)
    assert entry["from"] == BUNDLED and entry["to"] == v1 and not entry["forced"]
    assert entry["heads_version"] == "heads-a"
    assert reg.serving("text") == v1 and reg.serving_dir("text") == tmp_path / "models" / "text" / v1
    reg.promote("text", v2, report=report_for(reg, v2, serving=v1), report_path="r2.json", actor="cli:tester",
                audit=hook)
    assert reg.rollback("text", reason="v2 overblocks", actor="cli:tester", audit=hook)["to"] == v1
    assert reg.rollback("text", actor="cli:tester", audit=hook)["to"] == BUNDLED
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        reg.rollback("text", actor="cli:tester", audit=hook)
    state = json.loads(reg.serving_file.read_text())
    assert state["models"]["text"]["version"] == BUNDLED
    assert [(h["action"], h["from"], h["to"]) for h in state["models"]["text"]["history"]] == [
        ("promote", BUNDLED, v1), ("promote", v1, v2), ("rollback", v2, v1), ("rollback", v1, BUNDLED)]
    rows = audit_rows(engine)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (None, "cli:tester", "model_promote", "text"), (None, "cli:tester", "model_promote", "text"),
        (None, "cli:tester", "model_rollback", "text"), (None, "cli:tester", "model_rollback", "text")]
    assert rows[0][4]["report"] == "r1.json" and rows[0][4]["verdict"]["pass"] is True
    assert rows[2][4]["reason"] == "v2 overblocks"


def test_promotion_is_refused_by_a_failed_gate_or_a_report_about_other_models(tmp_path: Path, audited: Any) -> None:
    hook, engine = audited
    reg = Registry(tmp_path / "models")
    v1, v2 = reg.add("text", variant(tmp_path, "a")), reg.add("text", variant(tmp_path, "b"))
    failing = report_for(reg, v1, toxicity=cat_row(0.80, 0.81), violence=cat_row(0.60, 0.55),
                         self_harm=cat_row(0.50, 0.40))
    with pytest.raises(GateRefused, match="regressed beyond tolerance: self_harm, violence") as err:
        reg.promote("text", v1, report=failing, audit=hook)
    assert {r["category"] for r in err.value.regressions} == {"violence", "self_harm"}
    with pytest.raises(RegistryError, match="the report is for candidate"):
        reg.promote("text", v2, report=report_for(reg, v1), audit=hook)
    with pytest.raises(RegistryError, match="no gate report"):
        reg.promote("text", v1, audit=hook)
    with pytest.raises(RegistryError, match="--force needs --reason"):
        reg.promote("text", v1, report=failing, force=True, audit=hook)
    with pytest.raises(RegistryError, match="not a text gate report"):
        reg.promote("text", v1, report={"schema": "something/1"}, audit=hook)
    assert not reg.serving_file.exists() and audit_rows(engine) == []  # nothing switched, nothing recorded
    # a promotion with a stated looser tolerance passes, and says which tolerance it used
    assert reg.promote("text", v1, report=failing, tolerance=0.2, audit=hook)["verdict"]["tolerance"] == 0.2
    # the serving model changed since this report: it no longer describes the switch
    with pytest.raises(RegistryError, match="serves now; re-run `heron eval candidate`"):
        reg.promote("text", v2, report=report_for(reg, v2, serving=BUNDLED), audit=hook)
    forced = reg.promote("text", v2, report=report_for(reg, v2, serving=BUNDLED), force=True,
                         reason="hotfix for a false-positive wave", audit=hook)
    assert forced["forced"] and "serves now" in forced["overridden"][0]
    assert audit_rows(engine)[-1][4]["reason"] == "hotfix for a false-positive wave"
    with pytest.raises(RegistryError, match="already serving"):
        reg.promote("text", v2, report=report_for(reg, v2, serving=v2), audit=hook)


def test_a_switch_whose_audit_row_does_not_commit_leaves_the_serving_file_as_it_was(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    v1 = reg.add("text", variant(tmp_path, "a"))

    @contextlib.contextmanager
    def failing_commit(event: str, subject: str, details: dict[str, Any]) -> Iterator[None]:
        yield
        raise sa.exc.OperationalError("COMMIT", {}, Exception("database is locked"))

    with pytest.raises(sa.exc.OperationalError):
        reg.promote("text", v1, report=report_for(reg, v1), audit=failing_commit)
    assert not reg.serving_file.exists() and reg.serving("text") == BUNDLED


def test_an_unreadable_serving_file_is_an_error_not_a_silent_fallback(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    reg.root.mkdir(parents=True)
    reg.serving_file.write_text("{oops")
    with pytest.raises(RegistryError, match="not valid JSON"):
        reg.serving("text")
    reg.serving_file.write_text(json.dumps({"schema": "heron.model-serving/1", "models": {"text": {"version": "x"}}}))
    with pytest.raises(RegistryError, match="no text version 'x'"):
        reg.serving_dir("text")


def test_the_text_scorer_loads_the_version_serving_json_names(tmp_path: Path) -> None:
    from pipeline.scorers.base import ScoringItem
    from pipeline.scorers.text import TextScorer
    from pipeline.settings import Settings
    from pipeline.types import Message

    models = tmp_path / "models"
    reg = Registry(models)
    v1 = reg.add("text", variant(tmp_path, "a"))
    settings = Settings(models_dir=models, text_quantize="torch-int8", text_workers=1, text_threads=1)

    def loaded() -> tuple[str, dict[str, Any], list[float]]:
        s = TextScorer(settings=settings).load()
        try:
            (sig,) = s.score([ScoringItem(Message(text="I will find you and hurt you"))])
            return s.version, s.status(), [sig.scores[c] for c in sorted(sig.scores)]
        finally:
            s.close()

    before, status, scores = loaded()
    assert status["registry_version"] == BUNDLED and status["artifact"] == str(BUNDLED_TEXT)
    encoder, mode = before.split("/")[0].split("+")[0], before.rpartition("+")[2]
    reg.promote("text", v1, report=report_for(reg, v1))
    after, status, scores_after = loaded()
    # the decision names the promoted heads, whatever version the bundled heads carry (a refit names its own)
    assert after == f"{encoder}/heads-a+{mode}" and status["registry_version"] == v1
    assert scores_after == scores  # the same weights under another name: the same scores
    explicit = TextScorer(settings=settings, artifact_dir=BUNDLED_TEXT).load()  # a shadow or a bench
    try:
        assert explicit.version == before and explicit.status()["registry_version"] == "explicit"
    finally:
        explicit.close()


def test_models_commands_list_and_refuse_with_a_reason(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.settings import reset_settings

    env = {"HERON_MODELS_DIR": str(tmp_path / "models"), "HERON_DATABASE_URL": f"sqlite:///{tmp_path}/heron.db"}
    reset_settings()
    try:
        runner = CliRunner()
        r = runner.invoke(app, ["models", "list", "text"], env=env)
        assert r.exit_code == 0 and r.output.startswith("* bundled ") and "absent: bundled serves" in r.output
        r = runner.invoke(app, ["models", "promote", "text", "bundled", "--report", str(tmp_path / "none.json")],
                          env=env)
        assert r.exit_code == 2 and "cannot read the report" in r.output
        r = runner.invoke(app, ["models", "promote", "text", "20990101-deadbeef"], env=env)
        assert r.exit_code == 2 and "no text version '20990101-deadbeef'" in r.output
        r = runner.invoke(app, ["models", "rollback", "text"], env=env)
        assert r.exit_code == 2 and "nothing to roll back to: text serves bundled" in r.output
    finally:
        reset_settings()
