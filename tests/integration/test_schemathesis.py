"""The whole HTTP API under schemathesis: generated requests against a real `heron serve`.

Embedded mode (SQLite in a temp dir, the in-process worker) with the real scorers, an API key and
a registered guild, so generated requests reach the routes instead of stopping at 401/404.
`st run` (the CLI, as CI would run it) generates valid and invalid requests from /openapi.json
and checks every answer: never a 5xx, and the status, content type, headers and body match what
the schema declares. The run must pass with 0 failures after at least 2,000 cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import BIN, REPO, SCORERS, Proc, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MIN_CASES = 2000
# Per operation and phase; 17 operations over the examples, coverage, fuzzing and stateful phases give
# well over MIN_CASES while the run stays within a few minutes on two cores.
MAX_EXAMPLES = 100
# Every check but positive_data_acceptance: some valid-looking input is refused on purpose by
# rules a JSON schema cannot state (an RE2 regex that could backtrack, a policy whose higher
# threshold maps to a milder action, a webhook host that resolves to a private address), and
# each of those answers a documented 422 code that tests/api pins.
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "unsupported_method",
        "allow_header_conformance",
    ]
)
# 413 is how this API rejects a schema-violating body that is also over HERON_MAX_BODY_BYTES
# (e.g. 10,001 blocked links): a rejection, so negative_data_rejection must accept it.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
"""


def _start_api(tmp: Path) -> tuple[Proc, str, str]:
    port = free_port()
    env = {
        **os.environ,
        "HERON_DATABASE_URL": f"sqlite:///{tmp}/heron.db",
        "HERON_SCORERS": os.environ.get("HERON_IT_SCORERS", SCORERS),
        "HERON_SYNC_BUDGET_MS": "250",
        # Thousands of requests from one key: with the default limits most would be answered 429
        # (a valid, documented answer) and never reach the routes being fuzzed.
        "HERON_RATE_LIMIT_PER_KEY": "",
        "HERON_RATE_LIMIT_PER_GUILD": "",
        "HERON_RATE_LIMIT_OTHER": "",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("HERON_REDIS_URL", None)
    subprocess.run([str(BIN / "heron"), "migrate"], env=env, cwd=REPO, check=True, capture_output=True)
    key = subprocess.run(
        [str(BIN / "heron"), "keys", "create", "--tenant", "fuzz"],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    api = Proc(
        [str(BIN / "heron"), "serve", "--port", str(port), "--no-migrate", "--log-level", "warning"],
        env,
        tmp / "api.log",
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return api, base, key
        except httpx.HTTPError:
            pass
        assert api.proc.poll() is None, api.output()
        time.sleep(0.2)
    api.stop()
    raise AssertionError("API did not start:\n" + api.output())


def _cases(ndjson: Path) -> int:
    """Test cases schemathesis ran, from its NDJSON event stream (one ScenarioFinished per case
    group, each carrying the recorded cases)."""
    total = 0
    for line in ndjson.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if finished:
            total += len(finished.get("recorder", {}).get("cases", {}))
    return total


def test_schemathesis_finds_no_server_errors_and_no_schema_violations(tmp_path: Path) -> None:
    api, base, key = _start_api(tmp_path)
    try:
        auth = {"Authorization": f"Bearer {key}"}
        r = httpx.put(f"{base}/v1/guilds/guild-1", json={}, headers=auth, timeout=30)
        assert r.status_code == 200, r.text
        ndjson = tmp_path / "events.ndjson"
        config = tmp_path / "schemathesis.toml"
        config.write_text(CONFIG)
        st = subprocess.run(
            [
                str(BIN / "st"),
                "--config-file",
                str(config),
                "run",
                f"{base}/openapi.json",
                "--header",
                f"Authorization: Bearer {key}",
                "--checks",
                CHECKS,
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--workers",
                "2",
                "--seed",
                "17",
                "--request-timeout",
                "30",
                "--suppress-health-check",
                "all",
                "--report",
                "ndjson",
                "--report-ndjson-path",
                str(ndjson),
                "--no-color",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
        )
        (tmp_path / "st.txt").write_text(st.stdout + st.stderr)
        failures = st.stdout.find("FAILURES")
        output = (
            (st.stdout[failures : failures + 12000] if failures >= 0 else "") + st.stdout[-3000:] + st.stderr[-3000:]
        )
        assert st.returncode == 0, f"schemathesis failed:\n{output}\n--- API log ---\n{api.output()[-6000:]}"
        assert "Traceback" not in api.output(), api.output()[-6000:]
        cases = _cases(ndjson)
        assert cases >= MIN_CASES, f"only {cases} cases ran\n{output}"
    finally:
        api.stop()
