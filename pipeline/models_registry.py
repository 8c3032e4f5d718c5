"""The model registry: candidate versions in a folder, the serving one named in ONE file.

Layout (root = `HERON_MODELS_DIR`, default `var/models` in the repository):

    <root>/serving.json           which version of each kind serves, the stack to roll back to,
                                  and every switch (who, when, why, the gate report)
    <root>/text/<version>/        one complete artifact per version, the format of models/text/artifact

Why one file: every process that loads a model (`heron serve`, `heron worker`, `heron moderate`)
reads the same small file at start-up and loads what it names, so "what serves" has one answer
and a switch is one atomic `os.replace`. With no file, or no entry for a kind, the artifact
bundled in the repository serves (`bundled`), exactly as before the registry existed.

Versions are named `<YYYYMMDD>-<digest[:8]>`, the digest being a sha256 over the files that
decide what the model outputs (weights, config, heads): adding the same artifact twice gives the
same version, and a gate report names the exact bytes it measured (`artifact_digest`), so a
report cannot be used to promote anything else.

Promotion is gated (`gate_verdict`): a report from `heron eval candidate` for exactly this
candidate against exactly the version serving now, with no category regressing beyond the
tolerance; `force` with a reason overrides and says so in the history and the audit log. A
switch takes effect in a process when it (re)starts; nothing reloads a running server.

This module must stay light (no torch, no training imports): `heron models ...` and the text
scorer's start-up read it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVING_FILE = "serving.json"
SERVING_SCHEMA = "heron.model-serving/1"
REPORT_SCHEMA = "heron.gate-report/1"
BUNDLED = "bundled"
# The artifact each kind serves when the registry names none (models/text/model.DEFAULT_ARTIFACT_DIR,
# spelled out here so that reading the registry does not import torch; a unit test keeps them equal).
BUNDLED_DIRS: dict[str, Path] = {"text": REPO_ROOT / "models" / "text" / "artifact"}
KINDS: tuple[str, ...] = tuple(BUNDLED_DIRS)
# The files whose bytes decide a model's outputs; metrics, cards and predictions do not.
IDENTITY_FILES: dict[str, tuple[str, ...]] = {
    "text": ("config.json", "text_model.safetensors", "ffn_act_max.safetensors", "heads.json", "heads.safetensors",
             "heads_lexical.safetensors"),
}
DEFAULT_TOLERANCE = 0.02

# (event, subject, details) -> a context manager that records the switch (the audit row) and
# commits only if the body (the serving-file write) succeeds.
AuditHook = Callable[[str, str, dict[str, Any]], AbstractContextManager[None]]


class RegistryError(Exception):
    """A registry operation that cannot be done, with the reason and usually the fix."""


class GateRefused(RegistryError):
    """Promotion refused by the gate; `regressions` names the categories that regressed."""

    def __init__(self, message: str, regressions: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.regressions = regressions


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def artifact_digest(kind: str, directory: Path) -> str:
    """sha256 over the identity files present in `directory` (name and content of each)."""
    _check_kind(kind)
    if not (directory / "config.json").is_file():
        raise RegistryError(f"{directory} is not a {kind} artifact (no config.json)")
    h = hashlib.sha256()
    for name in IDENTITY_FILES[kind]:
        f = directory / name
        if f.is_file():
            h.update(f"{name}\0{_sha256(f)}\n".encode())
    return h.hexdigest()


def describe_artifact(directory: Path) -> dict[str, Any]:
    """What an artifact says about itself: its model version, its heads' version and the review
    labels each saw (read from config.json / heads.json; no model is loaded)."""
    out: dict[str, Any] = {}
    try:
        cfg = json.loads((directory / "config.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{directory}/config.json cannot be read: {exc}") from None
    out["artifact_version"] = cfg.get("version")
    labels = (cfg.get("training") or {}).get("report", {}).get("review_labels")
    if labels:
        out["encoder_labels_version"] = labels.get("version")
    heads = directory / "heads.json"
    if heads.is_file():
        try:
            h = json.loads(heads.read_text("utf-8"))
        except ValueError as exc:
            raise RegistryError(f"{heads} cannot be read: {exc}") from None
        out["heads_version"] = h.get("version")
        if h.get("review_labels"):
            out["heads_labels_version"] = h["review_labels"].get("version")
    return out


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise RegistryError(f"unknown model kind {kind!r}; the registry knows {', '.join(KINDS)}")


def gate_verdict(report: dict[str, Any], tolerance: float | None = None,
                 tolerances: dict[str, float] | None = None) -> dict[str, Any]:
    """Pass/fail of a gate report: every gated category's candidate F1 must be at least the serving
    model's minus its tolerance, and the candidate must score every category serving scores.

    `tolerance`/`tolerances` (per category) override the report's own (a promotion may state
    its own); the verdict is recomputed from the report's figures, never read from it."""
    settings = report.get("settings", {})
    tol = float(settings.get("tolerance", DEFAULT_TOLERANCE) if tolerance is None else tolerance)
    per_cat = {**settings.get("tolerances", {}), **(tolerances or {})} if tolerance is None else dict(tolerances or {})
    regressions: list[dict[str, Any]] = []
    reasons: list[str] = []
    for slice_name, sl in report.get("slices", {}).items():
        for cat, row in sl.get("categories", {}).items():
            serv, cand = row.get("serving"), row.get("candidate")
            if serv is not None and cand is None:
                regressions.append({"slice": slice_name, "category": cat, "why": "candidate does not score it"})
                reasons.append(f"{slice_name}/{cat}: serving scores it, the candidate does not")
                continue
            if not row.get("gated") or serv is None or cand is None:
                continue
            t = float(per_cat.get(cat, tol))
            delta = float(cand["f1"]) - float(serv["f1"])
            if delta < -t - 1e-12:
                regressions.append({"slice": slice_name, "category": cat, "serving_f1": serv["f1"],
                                    "candidate_f1": cand["f1"], "delta": delta, "tolerance": t})
                reasons.append(f"{slice_name}/{cat}: F1 {serv['f1']:.3f} -> {cand['f1']:.3f} "
                               f"({delta:+.3f}, tolerance {t:.3f})")
    gated = sum(1 for sl in report.get("slices", {}).values() for r in sl.get("categories", {}).values()
                if r.get("gated"))
    if gated == 0:
        reasons.append("no category had enough examples to gate on")
    ok = not regressions and gated > 0
    return {"pass": ok, "tolerance": tol, "tolerances": per_cat, "regressions": regressions, "reasons": reasons,
            "gated_rows": gated}


@dataclass
class Registry:
    """Versions under `root/<kind>/` and the serving file `root/serving.json`."""

    root: Path

    @classmethod
    def from_settings(cls, settings: Any = None) -> Registry:
        if settings is None:
            from pipeline.settings import get_settings

            settings = get_settings()
        return cls(Path(settings.models_dir) if settings.models_dir else REPO_ROOT / "var" / "models")

    # -- versions ---------------------------------------------------------------------------------
    def kind_dir(self, kind: str) -> Path:
        _check_kind(kind)
        return self.root / kind

    def versions(self, kind: str) -> list[str]:
        """Registered versions of `kind`, oldest first (names sort by date)."""
        d = self.kind_dir(kind)
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")
                      and (p / "config.json").is_file())

    def path(self, kind: str, version: str) -> Path:
        """The artifact folder of a version (`bundled`: the repository's own)."""
        if version == BUNDLED:
            _check_kind(kind)
            return BUNDLED_DIRS[kind]
        if not version or "/" in version or version.startswith("."):
            raise RegistryError(f"{version!r} is not a version name")
        p = self.kind_dir(kind) / version
        if not (p / "config.json").is_file():
            raise RegistryError(f"no {kind} version {version!r} in {self.kind_dir(kind)} (see `heron models list`)")
        return p

    def find(self, kind: str, directory: Path) -> str | None:
        """The version whose files are `directory`'s (by digest), or None when unregistered."""
        digest = artifact_digest(kind, directory)
        if digest == artifact_digest(kind, BUNDLED_DIRS[kind]):
            return BUNDLED
        for v in self.versions(kind):
            if v.endswith(digest[:8]) and artifact_digest(kind, self.kind_dir(kind) / v) == digest:
                return v
        return None

    def resolve(self, kind: str, ref: str) -> tuple[str | None, Path]:
        """A version name or an artifact folder -> (version, or None when unregistered; folder)."""
        if ref == BUNDLED or ("/" not in ref and not ref.startswith(".") and (self.kind_dir(kind) / ref).is_dir()):
            return ref, self.path(kind, ref)
        p = Path(ref)
        if p.is_dir():
            return self.find(kind, p), p
        raise RegistryError(f"{ref!r} is neither a {kind} version (see `heron models list`) nor an artifact folder")

    def staging(self, kind: str) -> Path:
        """A fresh folder inside the registry for a training run to write a candidate into."""
        d = self.kind_dir(kind) / f".staging-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        d.mkdir(parents=True, exist_ok=False)
        return d

    def add(self, kind: str, src: Path, move: bool = False) -> str:
        """Register the artifact in `src` (copied, or moved when it is a staging folder); returns
        its version. The same artifact twice is the same version."""
        digest = artifact_digest(kind, src)
        existing = self.find(kind, src)
        if existing is not None:
            if move:
                shutil.rmtree(src, ignore_errors=True)
            return existing
        version = f"{time.strftime('%Y%m%d')}-{digest[:8]}"
        dst = self.kind_dir(kind) / version
        if dst.exists():  # the same digest prefix on the same day, other content: never overwrite
            version = f"{version}-{digest[8:12]}"
            dst = self.kind_dir(kind) / version
        dst.parent.mkdir(parents=True, exist_ok=True)
        if move:
            os.replace(src, dst)
        else:
            tmp = self.kind_dir(kind) / f".adding-{version}-{os.getpid()}"
            shutil.copytree(src, tmp)
            os.replace(tmp, dst)
        return version

    def info(self, kind: str, version: str) -> dict[str, Any]:
        p = self.path(kind, version)
        return {"version": version, "path": str(p), "digest": artifact_digest(kind, p), **describe_artifact(p)}

    # -- the serving file -----------------------------------------------------------------------------
    @property
    def serving_file(self) -> Path:
        return self.root / SERVING_FILE

    def read_state(self) -> dict[str, Any]:
        f = self.serving_file
        if not f.is_file():
            return {"schema": SERVING_SCHEMA, "models": {}}
        try:
            state = json.loads(f.read_text("utf-8"))
        except ValueError as exc:
            raise RegistryError(f"{f} is not valid JSON ({exc}); fix or remove it (no file: bundled models "
                                "serve)") from None
        if not isinstance(state, dict) or state.get("schema") != SERVING_SCHEMA:
            raise RegistryError(f"{f}: schema {state.get('schema') if isinstance(state, dict) else None!r}, "
                                f"expected {SERVING_SCHEMA!r}")
        return state

    def serving(self, kind: str) -> str:
        """The version of `kind` that serves (`bundled` when the file names none)."""
        _check_kind(kind)
        entry = self.read_state().get("models", {}).get(kind)
        return str(entry["version"]) if entry else BUNDLED

    def serving_dir(self, kind: str) -> Path:
        return self.path(kind, self.serving(kind))

    def history(self, kind: str) -> list[dict[str, Any]]:
        _check_kind(kind)
        return list(self.read_state().get("models", {}).get(kind, {}).get("history", []))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One switch at a time, across processes (two admins promoting at once)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".serving.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self.serving_file.with_name(f".{SERVING_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n", "utf-8")
        os.replace(tmp, self.serving_file)

    def _switch(self, kind: str, state: dict[str, Any], entry: dict[str, Any], previous: list[str],
                audit: AuditHook | None) -> dict[str, Any]:
        old = self.serving_file.read_bytes() if self.serving_file.is_file() else None
        models = state.setdefault("models", {})
        cur = models.get(kind, {})
        models[kind] = {"version": entry["to"], "since": entry["at"], "previous": previous,
                        "history": [*cur.get("history", []), entry]}
        written = False
        try:
            if audit is None:
                self._write_state(state)
                written = True
            else:
                with audit(f"model_{entry['action']}", kind, entry):
                    self._write_state(state)
                    written = True
        except BaseException:
            if written:  # the audit row did not commit: put the old serving file back
                if old is None:
                    self.serving_file.unlink(missing_ok=True)
                else:
                    self.serving_file.write_bytes(old)
            raise
        return entry

    def promote(self, kind: str, version: str, *, report: dict[str, Any] | None = None, report_path: str | None = None,
                tolerance: float | None = None, tolerances: dict[str, float] | None = None, force: bool = False,
                reason: str | None = None, actor: str = "cli", audit: AuditHook | None = None) -> dict[str, Any]:
        """Make `version` serve, if its gate report allows it (see the module docstring)."""
        if force and not (reason and reason.strip()):
            raise RegistryError("--force needs --reason: say why the gate is overridden (it goes in the audit log)")
        with self._locked():
            state = self.read_state()
            entry_cur = state.get("models", {}).get(kind)
            current = str(entry_cur["version"]) if entry_cur else BUNDLED
            target = self.path(kind, version)
            if version == current:
                raise RegistryError(f"{kind} version {version} is already serving")
            cand_digest = artifact_digest(kind, target)
            serv_digest = artifact_digest(kind, self.path(kind, current))
            problems: list[str] = []
            verdict: dict[str, Any] | None = None
            if report is None:
                problems.append("no gate report (run `heron eval candidate` and pass --report)")
            else:
                if report.get("schema") != REPORT_SCHEMA or report.get("kind") != kind:
                    raise RegistryError(f"{report_path or 'the report'} is not a {kind} gate report "
                                        f"(schema {report.get('schema')!r}, kind {report.get('kind')!r})")
                if report.get("candidate", {}).get("digest") != cand_digest:
                    problems.append(f"the report is for candidate {report.get('candidate', {}).get('version')!r} "
                                    f"({str(report.get('candidate', {}).get('digest'))[:8]}), not {version} "
                                    f"({cand_digest[:8]})")
                if report.get("serving", {}).get("digest") != serv_digest:
                    problems.append(f"the report compared against {report.get('serving', {}).get('version')!r} "
                                    f"({str(report.get('serving', {}).get('digest'))[:8]}), but {current} "
                                    f"({serv_digest[:8]}) serves now; re-run `heron eval candidate`")
                verdict = gate_verdict(report, tolerance, tolerances)
            if problems and not force:
                raise RegistryError(f"refusing to promote {kind} {version}: " + "; ".join(problems))
            if verdict is not None and not verdict["pass"] and not force:
                cats = sorted({r["category"] for r in verdict["regressions"]})
                raise GateRefused(
                    f"refusing to promote {kind} {version}: the gate failed"
                    + (f"; regressed beyond tolerance: {', '.join(cats)}" if cats else "")
                    + (" (" + "; ".join(verdict["reasons"]) + ")" if verdict["reasons"] else ""),
                    verdict["regressions"])
            entry = {
                "action": "promote", "at": _now(), "actor": actor, "from": current, "to": version,
                "candidate_digest": cand_digest, "report": report_path,
                "report_created_at": report.get("created_at") if report else None,
                "verdict": None if verdict is None else {k: verdict[k] for k in ("pass", "tolerance", "tolerances",
                                                                                 "regressions")},
                "forced": bool(force and (problems or (verdict is not None and not verdict["pass"]))),
                "overridden": problems + ([] if verdict is None or verdict["pass"] else verdict["reasons"]),
                "reason": reason,
                **{k: v for k, v in describe_artifact(target).items() if v is not None},
            }
            previous = [*(entry_cur or {}).get("previous", []), current]
            return self._switch(kind, state, entry, previous, audit)

    def rollback(self, kind: str, *, reason: str | None = None, actor: str = "cli",
                 audit: AuditHook | None = None) -> dict[str, Any]:
        """Serve the version that served before the current one (repeatable: a stack)."""
        with self._locked():
            state = self.read_state()
            cur = state.get("models", {}).get(kind)
            stack = list((cur or {}).get("previous", []))
            if not cur or not stack:
                raise RegistryError(f"nothing to roll back to: {kind} serves {cur['version'] if cur else BUNDLED} "
                                    "and no earlier version is recorded")
            target = stack.pop()
            self.path(kind, target)  # it must still exist
            entry = {"action": "rollback", "at": _now(), "actor": actor, "from": cur["version"], "to": target,
                     "reason": reason}
            return self._switch(kind, state, entry, stack, audit)
