"""`heron moderate --input` on worker processes: the service's decisions, in input order, streamed.

The worker processes are real (spawned, each loading the committed text model single-threaded), as
a user's run is. Nothing here is timed: streaming is shown by feeding the input through a pipe and
reading decisions back before the rest of the input has even been written.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from models.text.model import CONFIG_FILE, DEFAULT_ARTIFACT_DIR
from pipeline.guilds import GuildConfig, lists_from_json
from pipeline.policy import PLATFORM_DEFAULT
from pipeline.service import ModerationService
from pipeline.settings import Settings
from pipeline.types import Message

pytestmark = pytest.mark.skipif(not (DEFAULT_ARTIFACT_DIR / CONFIG_FILE).is_file(), reason="no committed text artifact")

HERON = str(Path(sys.executable).parent / "heron")
LISTS = {"keywords": {"toxicity": ["idiot"]}}
TEXTS = [
    "you are a complete idiot, nobody wants you here",
    "thanks for the help with the raid yesterday!",
    "grab free nitro at https://discord-nitro.gift/abc",
    "WINNER!! You have won a £1000 prize. Call 09061701461 now to claim",
    "go back to where you came from, nobody wants your kind here",
    "see you at the match tonight",
    "shut up you dumb 1d1ot",
    "lol that was so funny",
    "I hate mondays",
    "my two dads are coming to the game tonight",
    "you people are disgusting animals",
    "can someone pin the rules message?",
]


def messages(n: int) -> list[dict[str, str]]:
    return [{"id": f"m{i}", "text": f"{TEXTS[i % len(TEXTS)]} #{i}"} for i in range(n)]


def env(**extra: str) -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": root, **extra}


def comparable(d: dict) -> dict:
    """A decision without what differs between two runs of the same pipeline (ids, times, latency)."""
    return {
        "action": d["action"],
        "scores": d["scores"],
        "reasons": [(r["category"], r["action"], r["source"]) for r in d["reasons"]],
        "missing_signals": d["missing_signals"],
        "model_versions": d["model_versions"],
    }


def test_parallel_batch_path_gives_the_service_decisions_in_input_order(tmp_path: Path) -> None:
    """fp32 so that scores do not depend on batch-mates (dynamic int8 quantises per batch)."""
    rows = messages(40)
    src = tmp_path / "in.jsonl"
    src.write_text(
        "\n".join(json.dumps(r) for r in rows[:20])
        + '\n\n{"text": 5}\n'
        + "\n".join(json.dumps(r) for r in rows[20:])
        + "\n"
    )
    (tmp_path / "lists.json").write_text(json.dumps(LISTS))
    dst = tmp_path / "out.jsonl"
    out = subprocess.run(
        [
            HERON,
            "moderate",
            "--input",
            str(src),
            "--output",
            str(dst),
            "--lists",
            str(tmp_path / "lists.json"),
            "--scorers",
            "rules,links,text",
            "--workers",
            "2",
            "--batch-size",
            "6",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env(HERON_TEXT_QUANTIZE="fp32"),
    )
    assert out.returncode == 1, out.stderr  # the invalid line is reported, in its place
    got = [json.loads(x) for x in dst.read_text().splitlines()]
    assert [g.get("id") for g in got] == [r["id"] for r in rows[:20]] + [None] + [r["id"] for r in rows[20:]]
    assert got[20]["line"] == 22 and got[20]["error"]["code"] == "invalid_message"
    del got[20]

    service = ModerationService.from_names(["rules", "links", "text"], settings=Settings(text_quantize="fp32"))
    try:
        guild = GuildConfig("cli", PLATFORM_DEFAULT, 0, lists_from_json(LISTS, 1))
        want = service.decide_batch("cli", [(Message(**r), guild) for r in rows])
    finally:
        service.close()
    for g, w in zip(got, want, strict=True):
        w_ = comparable(w.model_dump(mode="json"))
        g_ = comparable(g)
        for cat, score in w_.pop("scores").items():
            assert g_["scores"][cat] == pytest.approx(score, abs=2e-4), (g["id"], cat)
        g_.pop("scores")
        assert g_ == w_, g["id"]
    assert {g["action"] for g in got} >= {"allow", "block"}
    assert all("text" in g["model_versions"] for g in got)


def test_decisions_stream_out_before_the_input_ends() -> None:
    """Input through a pipe: the first decisions come back while most of the input is still unwritten."""
    proc = subprocess.Popen(
        [HERON, "moderate", "--input", "-", "--workers", "2", "--batch-size", "4", "--no-progress"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    rows = messages(30)
    assert proc.stdin is not None
    try:
        for r in rows[:10]:
            proc.stdin.write(json.dumps(r) + "\n")
        proc.stdin.flush()
        first = [json.loads(lines.get(timeout=600)) for _ in range(8)]  # the input is still open
        assert [d["id"] for d in first] == [r["id"] for r in rows[:8]]
        assert proc.poll() is None
        for r in rows[10:]:
            proc.stdin.write(json.dumps(r) + "\n")
        proc.stdin.close()
        rest = []
        while (line := lines.get(timeout=600)) is not None:
            rest.append(json.loads(line))
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [d["id"] for d in first + rest] == [r["id"] for r in rows]


def test_a_text_model_that_cannot_load_is_a_missing_signal_with_a_warning(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in messages(5)) + "\n")
    out = subprocess.run(
        [HERON, "moderate", "--input", str(src), "--workers", "1", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env(HERON_TEXT_QUANTIZE="no-such-path"),
    )
    assert out.returncode == 0, out.stderr
    got = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(got) == 5
    assert all("text" in d["missing_signals"] for d in got)
    assert "scorer text unavailable" in out.stderr and "no-such-path" in out.stderr
