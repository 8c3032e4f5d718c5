"""Flood bench: one tenant floods `POST /v1/moderate` far past what the machine can score, another
tenant sends a quiet trickle; how long do callers wait, compared with the sync budget?

Issue #17 measured, before load shedding: sync p99 3.7 s with a 250 ms budget and not one 202,
and another tenant's p99 at 2.6-5.4 s. This bench prints, in one run on one machine:

1. the quiet tenant alone (p50/p99, one request at a time, 20 a second);
2. a flood of `--flood` distinct messages from `--concurrency` connections, with the quiet tenant
   continuing beside it: the flood's answers by status, its arrival-to-answer p50/p99 as the
   clients saw them and as a ratio to the budget, the server's own arrival-to-answer count by
   outcome (`heron_sync_answer_seconds`), and the quiet tenant's p99 during the flood against
   alone (a ratio);
3. with `--per-key 100/second`, the same with a per-key rate limit: the flood's excess is refused
   (429) before it costs a stored message;
4. with `--compare`, the same flood against a server whose budget is 60 s, where nothing is shed:
   the queueing that shedding replaces.

Every 202 is checked to end up decided. The server is a real `heron serve` with the text model
(embedded worker on SQLite by default: one process does everything, so shed messages compete with
the flood for the same cores, the hardest case). The rate limits are switched off in the server
(`HERON_RATE_LIMIT_PER_KEY=""`): this measures shedding, and a per-key limit would hide it.

The load generator is a few lines of asyncio over raw HTTP/1.1 keep-alive connections, not httpx:
httpx's pool at a few hundred connections spent more CPU than the server (clients saw minute-long
waits the server never had). It shares the machine's cores with the server; a run on a busy machine
says so in its figures.

    python bench/bench_flood.py [--flood 2000] [--concurrency 256] [--budget-ms 250] [--per-key 100/second]
                                [--compare]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results" / "flood.json"


@dataclass
class Answers:
    """(message id, status, seconds from sending to the end of the answer) per request."""

    rows: list[tuple[str, int, float]] = field(default_factory=list)

    def by_status(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for mid, status, _ in self.rows:
            out.setdefault(status, []).append(mid)
        return out

    def quantile_ms(self, q: float) -> float:
        values = sorted(s for _, _, s in self.rows)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def _post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes,
                body: bytes) -> int:
    writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


def _head(key: str) -> bytes:
    return (f"POST /v1/moderate HTTP/1.1\r\nHost: heron\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nContent-Length: ").encode()


async def flood(port: int, key: str, messages: list[tuple[str, str]], concurrency: int) -> Answers:
    """Send every (id, text) as fast as `concurrency` keep-alive connections allow."""
    answers = Answers()
    todo = iter(messages)
    head = _head(key)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for mid, text in todo:
                body = json.dumps({"id": mid, "text": text}).encode()
                started = time.perf_counter()
                status = await _post(reader, writer, head, body)
                answers.rows.append((mid, status, time.perf_counter() - started))
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return answers


async def trickle(port: int, key: str, stop: asyncio.Event, count: int | None = None,
                  interval_s: float = 0.05) -> Answers:
    """A quiet tenant: one request at a time, `1 / interval_s` a second, on one connection."""
    answers = Answers()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = _head(key)
    try:
        while not stop.is_set() and (count is None or len(answers.rows) < count):
            mid = "quiet-" + uuid.uuid4().hex[:12]
            body = json.dumps({"id": mid, "text": f"good morning everyone, see you at {uuid.uuid4().hex[:6]}"})
            started = time.perf_counter()
            status = await _post(reader, writer, head, body.encode())
            answers.rows.append((mid, status, time.perf_counter() - started))
            await asyncio.sleep(interval_s)
    finally:
        writer.close()
    return answers


async def flood_with_trickle(port: int, flood_key: str, quiet_key: str, messages: list[tuple[str, str]],
                             concurrency: int) -> tuple[Answers, Answers]:
    stop = asyncio.Event()
    quiet = asyncio.ensure_future(trickle(port, quiet_key, stop))
    try:
        loud = await flood(port, flood_key, messages, concurrency)
    finally:
        stop.set()
    return loud, await quiet


def flood_messages(n: int, tag: str) -> list[tuple[str, str]]:
    """Distinct texts (the repeat cache never answers), chat-like lengths."""
    words = ("hey", "anyone", "selling", "cheap", "nitro", "click", "this", "link", "now", "idiot", "free",
             "server", "raid", "join", "lol", "spam", "everyone", "tonight", "game", "stream")
    out = []
    for i in range(n):
        k = 4 + (i * 7) % 24
        text = " ".join(words[(i * 13 + j * 5) % len(words)] for j in range(k)) + f" {tag}{i}"
        out.append((f"{tag}-{i}", text))
    return out


def server_buckets(port: int) -> dict[str, dict[float, float]]:
    """`heron_sync_answer_seconds` cumulative bucket counts by outcome, from the server's /metrics."""
    import httpx

    out: dict[str, dict[float, float]] = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        if line.startswith("heron_sync_answer_seconds_bucket"):
            outcome = line.split('outcome="')[1].split('"')[0]
            le = line.split('le="')[1].split('"')[0]
            out.setdefault(outcome, {})[float(le)] = float(line.split()[-1])
    return out


def server_view(before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]) -> dict[str, Any]:
    """Per outcome, what the server measured from arrival to answer during the phase: the count, and
    the histogram bucket holding the p50 and the p99 (an upper bound, in ms)."""
    view: dict[str, Any] = {}
    for outcome, buckets in after.items():
        delta = {le: n - before.get(outcome, {}).get(le, 0.0) for le, n in sorted(buckets.items())}
        total = delta.get(float("inf"), 0.0)
        if total <= 0:
            continue

        def bound(q: float, delta: dict[float, float] = delta, total: float = total) -> float:
            return next(le for le, n in delta.items() if n >= q * total) * 1000

        view[outcome] = {"count": int(total), "p50_le_ms": bound(0.5), "p99_le_ms": bound(0.99)}
    return view


def run_phase(env: dict[str, str], tmp: Path, name: str, args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_service import Server, free_port  # the same server start-up as the service bench

    db = tmp / f"{name}.db"
    env = {**env, "HERON_DATABASE_URL": f"sqlite:///{db}"}
    subprocess.run([str(BIN / "heron"), "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
    keys = {}
    for tenant in ("flood", "quiet"):
        out = subprocess.run([str(BIN / "heron"), "keys", "create", "--tenant", tenant], env=env, cwd=ROOT,
                             check=True, capture_output=True, text=True)
        keys[tenant] = out.stdout.strip()
    port = free_port()
    server = Server(env, port, 1, tmp / f"{name}.log")
    try:
        alone = asyncio.run(trickle(port, keys["quiet"], asyncio.Event(), count=args.quiet_alone))
        before = server_buckets(port)
        started = time.perf_counter()
        loud, quiet = asyncio.run(flood_with_trickle(port, keys["flood"], keys["quiet"],
                                                     flood_messages(args.flood, name), args.concurrency))
        seconds = time.perf_counter() - started
        after = server_buckets(port)
        accepted = set(loud.by_status().get(200, [])) | set(loud.by_status().get(202, []))
        decided = wait_decided(db, accepted, timeout=args.decide_timeout)
    finally:
        server.stop()
    return {
        "budget_ms": float(env["HERON_SYNC_BUDGET_MS"]),
        "flood": {"requests": len(loud.rows), "seconds": round(seconds, 2),
                  "by_status": {str(k): len(v) for k, v in sorted(loud.by_status().items())},
                  "p50_ms": loud.quantile_ms(0.5), "p99_ms": loud.quantile_ms(0.99),
                  "server_side": server_view(before, after),
                  "accepted_decided": f"{len(decided & accepted)}/{len(accepted)}"},
        "quiet_alone": {"requests": len(alone.rows), "p50_ms": alone.quantile_ms(0.5),
                        "p99_ms": alone.quantile_ms(0.99)},
        "quiet_during": {"requests": len(quiet.rows), "p50_ms": quiet.quantile_ms(0.5),
                         "p99_ms": quiet.quantile_ms(0.99),
                         "by_status": {str(k): len(v) for k, v in sorted(quiet.by_status().items())}},
    }


def wait_decided(db: Path, ids: set[str], timeout: float) -> set[str]:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{db}")
    deadline = time.monotonic() + timeout
    decided: set[str] = set()
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                decided = {r[0] for r in conn.execute(sa.text("SELECT message_id FROM decisions"))}
            if ids <= decided:
                break
            time.sleep(0.5)
    finally:
        engine.dispose()
    return decided


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flood", type=int, default=2000, help="flood requests")
    parser.add_argument("--concurrency", type=int, default=256, help="flood connections")
    parser.add_argument("--budget-ms", type=float, default=250.0)
    parser.add_argument("--quiet-alone", type=int, default=200, help="quiet-tenant requests before the flood")
    parser.add_argument("--decide-timeout", type=float, default=300.0)
    parser.add_argument("--compare", action="store_true", help="also run the flood with a 60 s budget (no shedding)")
    parser.add_argument("--per-key", default="", help="also run the flood with this per-key limit, e.g. 100/second")
    args = parser.parse_args()

    env = {**os.environ, "HERON_SCORERS": '["rules","links","text"]', "HERON_TEXT_THREADS": "1",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           # shedding is measured here; the rate limits would refuse the flood before it mattered
           "HERON_RATE_LIMIT_PER_KEY": "", "HERON_RATE_LIMIT_PER_GUILD": ""}
    env.pop("HERON_REDIS_URL", None)
    phases: dict[str, dict[str, str]] = {"shedding": {"HERON_SYNC_BUDGET_MS": str(args.budget_ms)}}
    if args.per_key:
        phases["shedding_and_per_key_limit"] = {"HERON_SYNC_BUDGET_MS": str(args.budget_ms),
                                                "HERON_RATE_LIMIT_PER_KEY": args.per_key}
    if args.compare:
        phases["no_shedding"] = {"HERON_SYNC_BUDGET_MS": "60000"}
    results = {}
    with tempfile.TemporaryDirectory(prefix="heron-flood-") as tmpdir:
        for name, overrides in phases.items():
            results[name] = run_phase({**env, **overrides}, Path(tmpdir), name, args)
            results[name]["settings"] = overrides
    load = os.getloadavg()
    for name, r in results.items():
        f, qa, qd = r["flood"], r["quiet_alone"], r["quiet_during"]
        print(f"\n{name} ({', '.join(f'{k}={v}' for k, v in r['settings'].items())}): {f['requests']} flood "
              f"requests from {args.concurrency} connections in {f['seconds']} s")
        print(f"  flood answers {f['by_status']}; accepted and decided {f['accepted_decided']}")
        print("  server side, arrival to answer (histogram bucket bounds): " + "; ".join(
            f"{k} {v['count']} (p50 ≤ {v['p50_le_ms']:.0f} ms, p99 ≤ {v['p99_le_ms']:.0f} ms)"
            for k, v in f["server_side"].items()))
        print(f"  flood arrival-to-answer p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms "
              f"= {f['p99_ms'] / args.budget_ms:.2f} x the {args.budget_ms:.0f} ms budget")
        print(f"  quiet tenant p99 alone {qa['p99_ms']:.1f} ms, during the flood {qd['p99_ms']:.1f} ms "
              f"({qd['p99_ms'] / qa['p99_ms']:.1f} x; p50 {qa['p50_ms']:.1f} vs {qd['p50_ms']:.1f} ms; "
              f"answers {qd['by_status']})")
    print(f"\nload average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "results": results,
                                   "loadavg": load, "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())},
                                  indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
