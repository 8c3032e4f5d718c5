"""Does the outbox cost throughput? The asynchronous path with and without a webhook, in one run.

Each round starts a fresh `heron serve` (embedded worker and drainer, SQLite, the real scorers),
offers N distinct messages to `POST /v1/messages` from 32 concurrent connections, and times until
all N are decided. With a webhook, every decision also writes its outbox event in the decision's
transaction and the drainer delivers it to a receiver in its own process (signature-checked);
that round also times until all N events are delivered. Rounds alternate (off, on, off, on, ...)
so machine noise hits both; the figure is the ratio of medians, in the same run.

    python bench/bench_outbox.py [--messages 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results" / "outbox.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer")


def count(db: Path, sql: str) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        return int(conn.execute(sql).fetchone()[0])


async def offer(base: str, key: str, n: int, tag: str) -> None:
    sem = asyncio.Semaphore(32)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:

        async def one(i: int) -> None:
            async with sem:
                r = await client.post("/v1/messages", json={"id": f"{tag}-{i}", "text": f"message {i} of {tag}: hello"})
                assert r.status_code == 202, r.text

        await asyncio.gather(*(one(i) for i in range(n)))


def run_round(n: int, webhook: bool, tag: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="heron-bench-outbox-"))
    db = tmp / "heron.db"
    port = free_port()
    env = {**os.environ, "HERON_DATABASE_URL": f"sqlite:///{db}", "HERON_SCORERS": '["rules","links","text"]',
           "HERON_RATE_LIMIT_PER_KEY": "", "HERON_RATE_LIMIT_PER_GUILD": "", "HERON_RATE_LIMIT_OTHER": "",
           "HERON_ALLOW_PRIVATE_WEBHOOKS": "true", "HERON_LOG_FORMAT": "text", "OMP_NUM_THREADS": "1"}
    env.pop("HERON_REDIS_URL", None)
    subprocess.run([str(BIN / "heron"), "migrate"], env=env, check=True, capture_output=True)
    key = subprocess.run([str(BIN / "heron"), "keys", "create", "--tenant", "bench"], env=env, check=True,
                         capture_output=True, text=True).stdout.strip()
    log = (tmp / "serve.log").open("wb")
    serve = subprocess.Popen([str(BIN / "heron"), "serve", "--port", str(port), "--no-migrate", "--log-level",
                              "warning"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    receiver = None
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz")
        received = tmp / "received.jsonl"
        if webhook:
            rport = free_port()
            receiver = subprocess.Popen([sys.executable, str(ROOT / "tests/integration/receiver_proc.py"), str(rport),
                                         str(tmp / "secret"), str(received)], env={**env, "PYTHONPATH": str(ROOT)},
                                        start_new_session=True)
            time.sleep(1.0)
            secret = httpx.put(base + "/v1/webhook", json={"url": f"http://127.0.0.1:{rport}/hook"},
                               headers={"Authorization": f"Bearer {key}"}).json()["secret"]
            (tmp / "secret").write_text(secret)
        started = time.monotonic()
        asyncio.run(offer(base, key, n, tag))
        accepted = time.monotonic() - started
        while count(db, "SELECT count(*) FROM decisions") < n:
            time.sleep(0.05)
        decided = time.monotonic() - started
        delivered = None
        if webhook:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                got = len(received.read_text().splitlines()) if received.exists() else 0
                if got >= n:
                    break
                time.sleep(0.05)
            delivered = time.monotonic() - started
        row = {"webhook": webhook, "messages": n, "accepted_s": round(accepted, 2), "decided_s": round(decided, 2),
               "decided_per_s": round(n / decided, 1)}
        if delivered is not None:
            row.update(delivered_s=round(delivered, 2), delivered_per_s=round(n / delivered, 1))
        return row
    finally:
        for p in (serve, receiver):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    rows = []
    for r in range(args.rounds):
        for webhook in (False, True):
            row = run_round(args.messages, webhook, f"r{r}-{'on' if webhook else 'off'}")
            rows.append(row)
            print(json.dumps(row), flush=True)
    off = statistics.median(x["decided_per_s"] for x in rows if not x["webhook"])
    on = statistics.median(x["decided_per_s"] for x in rows if x["webhook"])
    delivered = statistics.median(x["delivered_per_s"] for x in rows if x["webhook"])
    summary = {"decided_per_s_without_webhook": off, "decided_per_s_with_webhook": on,
               "ratio_with_over_without": round(on / off, 3), "delivered_per_s": delivered,
               "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(), "rounds": rows}
    print(f"async path, {args.messages} messages x {args.rounds} rounds: decided {off:.0f}/s without a webhook, "
          f"{on:.0f}/s with one (ratio {on / off:.2f}); all events delivered at {delivered:.0f}/s end to end")
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
