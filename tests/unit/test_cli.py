"""`heron moderate` runs the pipeline in-process, as an engineer would from a shell."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERON = str(Path(sys.executable).parent / "heron")
CATEGORIES = {"toxicity", "harassment", "hate", "sexual", "violence", "self_harm", "spam", "scam"}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HERON, "moderate", "--scorers", "rules,links", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_one_text_prints_a_decision_with_every_category() -> None:
    out = run("hello there")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["action"] == "allow" and set(d["scores"]) == CATEGORIES
    assert {"id", "action", "reasons", "scores"} <= set(d)


def test_jsonl_in_jsonl_out_with_lists_and_a_bad_line(tmp_path: Path) -> None:
    lists = tmp_path / "lists.json"
    lists.write_text(json.dumps({"keywords": {"toxicity": ["idiot"]}}))
    src = tmp_path / "messages.jsonl"
    src.write_text(
        "\n".join(
            [
                json.dumps({"text": "you 1d10t"}),
                json.dumps({"id": "m2", "guild_id": "g", "text": "lovely weather", "author": {"roles": ["member"]}}),
                '{"text": 42}',
                json.dumps({"text": "grab free nitro at https://discord-nitro.gift/abc"}),
            ]
        )
        + "\n"
    )
    dst = tmp_path / "decisions.jsonl"
    out = run("--input", str(src), "--output", str(dst), "--lists", str(lists))
    assert out.returncode == 1  # one invalid line is reported, not dropped
    assert "moderating" in out.stderr and "1 invalid" in out.stderr
    lines = [json.loads(x) for x in dst.read_text().splitlines()]
    assert len(lines) == 4
    assert lines[0]["action"] == "block" and set(lines[0]["scores"]) == CATEGORIES
    assert lines[1]["id"] == "m2" and lines[1]["action"] == "allow"
    assert lines[2]["line"] == 3 and lines[2]["error"]["code"] == "invalid_message"
    assert "text" in lines[2]["error"]["message"]
    assert isinstance(lines[3]["reasons"], list)
